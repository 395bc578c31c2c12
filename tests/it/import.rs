//! Caddyfile import and export, end to end: the real `gatehouse` binary on a real SQLite
//! file, the real `caddy adapt` (Debian's 2.6.2) as the judge of what a Caddyfile means, and
//! a real hub with a real agent and Caddy for the deploy path and the downloads.

use crate::common;

use crate::common::binary;
use crate::common::caddy::{self, Caddy};
use crate::common::fleet::{AGENT_TOKEN, AgentProc, add_agent, eventually, hub};
use crate::common::{ADMIN_EMAIL, Page, TestApp};
use gatehouse::db::{Db, changelog, vhosts};
use gatehouse::sites::import::{self, Action, Target};
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/import")
        .join(name)
}

/// `gatehouse` with a clean GATEHOUSE_* environment and its data in `data`.
fn gatehouse(data: &Path) -> Command {
    let mut cmd = binary::gatehouse();
    cmd.env("GATEHOUSE_DATA_DIR", data).env("RUST_LOG", "warn");
    cmd
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run gatehouse");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh database with one admin (and, when named, one agent); returns the agent's id.
fn prepare(data: &Path, agent: Option<&str>) -> Option<i64> {
    run_ok(gatehouse(data).args(["user", "add", ADMIN_EMAIL, "--admin"]));
    let agent = agent?;
    let db = open(data);
    let name = agent.to_string();
    let id = futures_block(db.run(move |c| {
        Ok(gatehouse::db::agents::insert(
            c,
            &name,
            "http://127.0.0.1:9",
            &gatehouse::config::Secret::new(AGENT_TOKEN),
            false,
            &Default::default(),
        )
        .unwrap())
    }));
    // Leave the WAL empty: this pool's connections close in the background, and the last
    // one to close (here or in a later CLI run) folds the WAL into the database file, which
    // changes its bytes but not what it holds.
    futures_block(db.run(|c| {
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }));
    Some(id)
}

/// The hub's database with its secret key (agent tokens are sealed with it).
fn open(data: &Path) -> Db {
    let config = gatehouse::config::Config {
        data_dir: data.to_path_buf(),
        ..Default::default()
    };
    gatehouse::app::open_database(&config).expect("open the database")
}

/// Runs a future to completion on a small runtime of its own (for the sync tests).
fn futures_block<T>(f: impl std::future::Future<Output = Result<T, gatehouse::db::DbError>>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
        .unwrap()
}

/// (vhosts, changelog entries) in the database.
fn counts(db: &Db) -> (i64, i64) {
    futures_block(db.run(|c| {
        let v: i64 = c.query_row("SELECT count(*) FROM vhosts", [], |r| r.get(0))?;
        Ok((v, changelog::count(c)?))
    }))
}

/// `gatehouse import … --json`, parsed.
fn import_json(data: &Path, file: &Path, extra: &[&str]) -> Value {
    let out = run_ok(
        gatehouse(data)
            .arg("import")
            .arg(file)
            .arg("--json")
            .args(extra),
    );
    serde_json::from_slice(&out.stdout).expect("the import prints JSON")
}

/// What real Caddy makes of a Caddyfile.
fn caddy_adapt(file: &Path) -> Value {
    let out = caddy::adapt(file);
    assert!(
        out.status.success(),
        "caddy adapt {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Caddy's file server hides the Caddyfile it was adapted from: its path, which differs
    // between the two files compared, is replaced by a fixed name.
    let text = String::from_utf8(out.stdout)
        .unwrap()
        .replace(&*file.to_string_lossy(), "CADDYFILE");
    serde_json::from_str(&text).expect("caddy adapt prints JSON")
}

/// Caddy names the groups of mutually exclusive `handle` blocks group0, group1, … in the
/// order it meets them across the whole file, so the same site gets another number when
/// other sites come before it. Renamed here by first appearance within the route.
fn renumber_groups(route: &mut Value) {
    fn walk(v: &mut Value, seen: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(g)) = map.get_mut("group") {
                    let k = match seen.iter().position(|s| s == g) {
                        Some(k) => k,
                        None => {
                            seen.push(g.clone());
                            seen.len() - 1
                        }
                    };
                    *g = format!("group#{k}");
                }
                for child in map.values_mut() {
                    walk(child, seen);
                }
            }
            Value::Array(list) => list.iter_mut().for_each(|c| walk(c, seen)),
            _ => {}
        }
    }
    walk(route, &mut Vec::new());
}

/// Normalises adapted JSON to what a site means: for every server (named by its sorted
/// listen addresses, since Caddy numbers servers srv0, srv1, … by order of appearance) and
/// every host, the route(s) serving that host, with the host matcher taken out.
///
/// Why this is the fair comparison: an import splits a block with several addresses into one
/// site per address, so one route with `host: [a, b]` becomes two routes (or, where Caddy
/// consolidates identical routes, one again); and the order of routes between hosts is
/// Caddy's own sorting. Per host, the handlers, their order and every other matcher must be
/// identical. Everything outside `apps.http.servers.*.routes` is left out on purpose: the
/// hub adds its access log (`servers.*.logs`, the logging app) and its own global options.
fn routes_by_host(adapted: &Value) -> BTreeMap<(String, String), Vec<Value>> {
    let mut out: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    let servers = adapted["apps"]["http"]["servers"]
        .as_object()
        .expect("an http app with servers");
    for server in servers.values() {
        let mut listen: Vec<String> = server["listen"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect();
        listen.sort();
        let listen = listen.join(",");
        for route in server["routes"].as_array().into_iter().flatten() {
            let mut route = route.clone();
            renumber_groups(&mut route);
            let mut hosts: Vec<String> = Vec::new();
            if let Some(sets) = route.get_mut("match").and_then(Value::as_array_mut) {
                for set in sets.iter_mut() {
                    if let Some(h) = set.as_object_mut().and_then(|s| s.remove("host")) {
                        hosts.extend(
                            h.as_array()
                                .unwrap()
                                .iter()
                                .map(|h| h.as_str().unwrap().to_string()),
                        );
                    }
                }
                sets.retain(|s| s.as_object().is_some_and(|o| !o.is_empty()));
                if sets.is_empty() {
                    route.as_object_mut().unwrap().remove("match");
                }
            }
            if hosts.is_empty() {
                hosts.push(String::new());
            }
            for host in hosts {
                out.entry((listen.clone(), host))
                    .or_default()
                    .push(route.clone());
            }
        }
    }
    out
}

/// A Caddyfile of `n` sites of ten kinds, with two snippets (one taking arguments, in
/// Caddy 2.6's `{args.N}` spelling, since that is the Caddy that judges).
fn generated_caddyfile(n: usize) -> (String, usize) {
    let mut out = String::from(
        "(proxy) {\n\treverse_proxy {args.0} {args.1} {\n\t\tlb_policy round_robin\n\t\theader_up X-Real-IP {remote_host}\n\t\theader_down -Server\n\t}\n}\n\n\
         (security) {\n\theader {\n\t\tX-Frame-Options DENY\n\t\tX-Content-Type-Options nosniff\n\t\t-Server\n\t}\n}\n",
    );
    let mut addresses = 0;
    for i in 0..n {
        let (a, b) = (i / 256, i % 256);
        out.push('\n');
        let block = match i % 10 {
            0 => format!(
                "rp{i}.example.com {{\n\timport proxy 10.0.{a}.{b}:8080 10.1.{a}.{b}:8080\n\theader X-Served-By \"gatehouse {i}\"\n}}\n"
            ),
            1 => format!(
                "static{i}.example.com {{\n\troot * /srv/static{i}\n\tencode gzip zstd\n\ttry_files {{path}} /index.html\n\tfile_server browse\n}}\n"
            ),
            2 => format!(
                "old{i}.example.com {{\n\theader X-Quote \"say \\\"{i}\\\" # not a comment\"\n\tredir https://new{i}.example.org{{uri}} permanent\n}}\n"
            ),
            3 => format!(
                "match{i}.example.com {{\n\t@api {{\n\t\tpath /api/*\n\t\tmethod GET POST\n\t}}\n\treverse_proxy @api 127.0.0.1:{}\n\t@static path *.css *.js *.png\n\theader @static Cache-Control \"public, max-age=3600\"\n\trespond \"site {i}\" 200\n}}\n",
                9000 + i % 1000
            ),
            4 => format!(
                "handle{i}.example.com {{\n\thandle /api/* {{\n\t\treverse_proxy 10.2.{a}.{b}:3000\n\t}}\n\thandle_path /static/* {{\n\t\troot * /srv/assets{i}\n\t\tfile_server\n\t}}\n\thandle {{\n\t\trespond \"fallback {i}\" 404\n\t}}\n}}\n"
            ),
            5 => format!(
                "route{i}.example.com {{\n\troute {{\n\t\theader X-Route {i}\n\t\trewrite /old /new\n\t\trespond /new \"moved {i}\"\n\t\treverse_proxy 10.3.{a}.{b}:80\n\t}}\n}}\n"
            ),
            6 => format!(
                "m{i}.example.com, www.m{i}.example.com {{\n\timport security\n\trespond \"multi {i}\" 200\n}}\n"
            ),
            7 => format!(
                "http://p{i}.example.com:8080 {{\n\treverse_proxy localhost:{}\n}}\n",
                3000 + i % 100
            ),
            8 => format!(
                "*.w{i}.example.com {{\n\timport security\n\trespond `{{\"wild\": \"{{http.request.host}}\"}}` 200\n}}\n"
            ),
            _ => format!("10.9.{a}.{b}:8443 {{\n\ttls internal\n\trespond \"ip {i}\"\n}}\n"),
        };
        addresses += if i % 10 == 6 { 2 } else { 1 };
        out.push_str(&block);
    }
    (out, addresses)
}

#[test]
fn a_thousand_mixed_sites_survive_import_and_export_as_caddy_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, Some("edge"));
    let (text, addresses) = generated_caddyfile(1000);
    let original = dir.path().join("generated.Caddyfile");
    std::fs::write(&original, &text).unwrap();

    let report = import_json(&data, &original, &["--agent", "edge"]);
    let items = report["plan"]["items"].as_array().unwrap();
    assert_eq!(items.len(), addresses);
    let skipped: Vec<&Value> = items.iter().filter(|i| i["action"] != "create").collect();
    assert!(skipped.is_empty(), "every site is created: {skipped:?}");
    assert_eq!(report["applied"]["created"], addresses);
    assert_eq!(counts(&open(&data)), (addresses as i64, addresses as i64));

    let exported = dir.path().join("exported.Caddyfile");
    run_ok(
        gatehouse(&data)
            .args(["export", "--format", "caddyfile", "--agent", "edge", "-o"])
            .arg(&exported),
    );
    let before = routes_by_host(&caddy_adapt(&original));
    let after = routes_by_host(&caddy_adapt(&exported));
    // 1,100 addresses, of which the wildcard and the IP sites have hosts too.
    assert_eq!(before.len(), addresses);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (key, routes) in &before {
        assert_eq!(
            Some(routes),
            after.get(key),
            "the site {key:?} changed meaning"
        );
    }
}

/// Lines of `text` from `line` (1-based, an opening line) to its closing `}`.
fn block_range(lines: &[&str], line: usize) -> (usize, usize) {
    let mut depth = 0i32;
    for (k, l) in lines.iter().enumerate().skip(line - 1) {
        let t = l.trim();
        if t.ends_with('{') {
            depth += 1;
        }
        if t == "}" {
            depth -= 1;
        }
        if depth <= 0 && k + 1 > line {
            return (line, k + 1);
        }
    }
    (line, lines.len())
}

fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Imports a fixture for real and checks that every line of it is accounted for: kept in a
/// stored site, inside a skipped block (with its reason), covered by a note, or pure
/// structure (braces, addresses of imported blocks, `import` of an inlined snippet).
fn assert_nothing_silently_dropped(name: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let path = fixture(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let report = import_json(&data, &path, &[]);
    let plan = &report["plan"];
    let db = open(&data);
    let configs: Vec<String> = futures_block(db.run(|c| vhosts::list(c, &Default::default())))
        .into_iter()
        .map(|v| squash(&v.config))
        .collect();
    let snippets: Vec<String> = lines
        .iter()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('(')?
                .strip_suffix(") {")
                .map(str::to_string)
        })
        .collect();
    let mut covered = vec![false; lines.len() + 1];
    for note in plan["notes"].as_array().unwrap() {
        let (a, b) = (
            note["line"].as_u64().unwrap(),
            note["last_line"].as_u64().unwrap(),
        );
        covered[a as usize..=b as usize].fill(true);
    }
    for item in plan["items"].as_array().unwrap() {
        let line = item["line"].as_u64().unwrap() as usize;
        let (a, b) = block_range(&lines, line);
        covered[line] = true;
        if item["action"] == "skip" {
            assert!(item["reason"].as_str().is_some_and(|r| !r.is_empty()));
            covered[a..=b].fill(true);
        }
    }
    for (k, line) in lines.iter().enumerate() {
        let t = line.trim();
        let n = k + 1;
        let structure = t.is_empty()
            || t.starts_with('#')
            || t == "{"
            || t == "}"
            || t.strip_prefix("import ")
                .is_some_and(|rest| snippets.iter().any(|s| rest.split(' ').next() == Some(s)));
        let kept = configs.iter().any(|c| c.contains(&squash(t)));
        assert!(
            covered[n] || structure || kept,
            "{name} line {n} ({t:?}) was neither imported nor reported"
        );
    }
    plan.clone()
}

fn notes_of(plan: &Value) -> Vec<(u64, u64, String)> {
    plan["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["line"].as_u64().unwrap(),
                n["last_line"].as_u64().unwrap(),
                n["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn actions_of(plan: &Value) -> Vec<(String, String)> {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["address"].as_str().unwrap().to_string(),
                i["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn owned(list: &[(u64, u64, &str)]) -> Vec<(u64, u64, String)> {
    list.iter()
        .map(|(a, b, k)| (*a, *b, k.to_string()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn an_agency_caddyfile_imports_with_every_unmapped_line_reported() {
    let plan = assert_nothing_silently_dropped("agency.Caddyfile");
    assert_eq!(
        actions_of(&plan),
        pairs(&[
            ("shop.agency.test", "create"),
            ("www.shop.agency.test", "create"),
            ("blog.agency.test", "create"),
            ("http://old.agency.test", "create"),
            ("status.agency.test", "create"),
            ("api.agency.test/v1", "skip"),
        ])
    );
    assert_eq!(
        notes_of(&plan),
        owned(&[
            (3, 3, "config"),     // email → [caddy] acme_email
            (4, 4, "config"),     // admin → [caddy] admin
            (5, 7, "unmapped"),   // servers { … }
            (8, 8, "unmapped"),   // order
            (11, 17, "kept"),     // (hardening), inlined
            (19, 24, "kept"),     // (backend), inlined with arguments
            (26, 28, "unmapped"), // (unused_cors), used nowhere
            (47, 47, "unmapped"), // import of a file
            (56, 56, "kept"),     // {$REGION:eu} stays for the agents' Caddy
        ])
    );
    let skipped = &plan["items"][5];
    assert!(skipped["reason"].as_str().unwrap().contains("path"));
}

#[test]
fn a_caddy_2_7_style_file_reports_named_routes_heredocs_and_bare_ports() {
    let plan = assert_nothing_silently_dropped("modern.Caddyfile");
    assert_eq!(
        actions_of(&plan),
        pairs(&[
            ("maintenance.example.net", "create"),
            ("docs.example.net", "create"),
            ("docs.example.org:8443", "create"),
            ("*.preview.example.net", "create"),
            (":9000", "skip"),
        ])
    );
    assert_eq!(
        notes_of(&plan),
        owned(&[
            (2, 2, "unmapped"),   // debug
            (5, 9, "unmapped"),   // &(shared-auth)
            (11, 11, "unmapped"), // top-level import
            (14, 18, "kept"),     // the heredoc, kept whole
            (28, 28, "kept"),     // invoke of the route that is not imported
        ])
    );
    assert_eq!(
        plan["items"][1]["same_block_as"][0],
        "docs.example.org:8443"
    );
}

#[test]
fn nested_snippets_are_inlined_and_a_snippet_loop_skips_its_site() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let report = import_json(&data, &fixture("nested-snippets.Caddyfile"), &[]);
    let plan = &report["plan"];
    assert_eq!(
        actions_of(plan),
        pairs(&[
            ("crm.internal.test", "create"),
            ("wiki.internal.test", "skip")
        ])
    );
    assert!(
        plan["items"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("loop")
    );
    let crm =
        futures_block(open(&data).run(|c| vhosts::find_by_domain(c, "crm.internal.test"))).unwrap();
    assert_eq!(
        crm.config,
        "log {\n\toutput file /var/log/caddy/crm.log\n}\nreverse_proxy 10.2.0.5:8069\n"
    );
    assert_eq!(crm.template, "raw");
    let params: Value = serde_json::from_str(&crm.params).unwrap();
    assert_eq!(
        params["config"],
        crm.config.trim_end(),
        "the raw editor opens with the body"
    );
    assert_nothing_silently_dropped("nested-snippets.Caddyfile");
    assert_nothing_silently_dropped("single-site.Caddyfile");
}

#[test]
fn a_dry_run_writes_nothing_and_a_second_import_changes_only_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let file = fixture("agency.Caddyfile");
    let dry = import_json(&data, &file, &["--dry-run"]);
    assert_eq!(dry["applied"], Value::Null);
    assert_eq!(dry["plan"]["items"][0]["action"], "create");
    assert_eq!(counts(&open(&data)), (0, 0), "a dry run writes nothing");

    let first = import_json(&data, &file, &[]);
    assert_eq!(first["applied"]["created"], 5);
    assert_eq!(
        counts(&open(&data)),
        (5, 5),
        "one changelog entry per vhost"
    );

    let again = import_json(&data, &file, &[]);
    assert_eq!(again["applied"], Value::Null, "nothing to write");
    let unchanged = again["plan"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == "unchanged")
        .count();
    assert_eq!(unchanged, 5);

    let edited = dir.path().join("edited.Caddyfile");
    std::fs::write(
        &edited,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("127.0.0.1:2368", "127.0.0.1:2369"),
    )
    .unwrap();
    let third = import_json(&data, &edited, &[]);
    assert_eq!(third["applied"]["updated"], 1);
    assert_eq!(third["plan"]["items"][2]["action"], "update");
    assert_eq!(counts(&open(&data)), (5, 6));
    let log = futures_block(open(&data).run(|c| changelog::list(c, &Default::default())));
    assert_eq!(log[0].action, "update");
    assert_eq!(log[0].domain, "blog.agency.test");
    assert_eq!(
        log[0].user_email,
        format!("{ADMIN_EMAIL} (gatehouse import)")
    );
    assert!(log[0].old.as_ref().unwrap().config.contains("2368"));
}

#[test]
fn a_failure_half_way_through_an_import_leaves_the_database_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let db = open(&data);
    let parsed = import::parse(
        "one.example {\n\trespond 1\n}\ntwo.example {\n\trespond 2\n}\nthree.example {\n\trespond 3\n}\n",
    )
    .unwrap();
    let result = futures_block(db.run(move |c| {
        let plan = import::plan(c, &parsed, &Target::default())?;
        assert!(plan.items.iter().all(|i| i.action == Action::Create));
        // Someone takes the last domain after the plan was made (as a concurrent writer
        // would); the third create then fails inside the import's transaction.
        let other = gatehouse::db::vhosts::Snapshot {
            domain: "three.example".into(),
            template: "raw".into(),
            params: "{}".into(),
            config: "respond taken\n".into(),
            enabled: true,
            owner_id: None,
            all_agents: true,
            agent_ids: Vec::new(),
            labels: Vec::new(),
        };
        gatehouse::db::vhosts::insert(c, &other).unwrap();
        let tx = c.transaction()?;
        let author = changelog::Author {
            user_id: 1,
            email: ADMIN_EMAIL,
        };
        let outcome = import::apply(&tx, &author, &plan);
        drop(tx);
        Ok(outcome.map(|_| ()).map_err(|e| e.to_string()))
    }));
    assert_eq!(result, Err("another site already uses this domain".into()));
    // Only the site written outside the import exists; no changelog entry at all.
    assert_eq!(counts(&db), (1, 0));
}

#[test]
fn a_file_that_cannot_be_read_is_refused_whole_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let bad = dir.path().join("bad.Caddyfile");
    std::fs::write(
        &bad,
        "a.example {\n\trespond ok\n\nb.example {\n\trespond \"unterminated\n}\n",
    )
    .unwrap();
    let out = gatehouse(&data).arg("import").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 5"), "{err}");
    assert_eq!(counts(&open(&data)), (0, 0));
}

/// Whether real Caddy refuses a Caddyfile, and its message.
fn caddy_refuses(file: &Path) -> Option<String> {
    let out = caddy::adapt(file);
    (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_block_without_an_address_or_a_stray_site_without_braces_is_refused_as_caddy_does() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let cases = [
        // An address-less block after a site: Caddy takes it for misplaced global options.
        (
            "a.example {\n\trespond ok\n}\n\n{\n\trespond lost\n}\n",
            "line 5",
            "without an address",
        ),
        // A stray line before a site: it would take the next site as its body.
        (
            "a.example {\n\trespond 1\n}\nstray.example\nb.example {\n\trespond 2\n}\n",
            "line 4",
            "without braces after other sites",
        ),
        (
            "a.example\nrespond 1\nb.example {\n\trespond 2\n}\n",
            "line 3",
            "site without braces at line 1",
        ),
    ];
    for (k, (text, line, message)) in cases.into_iter().enumerate() {
        let file = dir.path().join(format!("case{k}.Caddyfile"));
        std::fs::write(&file, text).unwrap();
        assert!(caddy_refuses(&file).is_some(), "Caddy refuses {text:?} too");
        let out = gatehouse(&data).arg("import").arg(&file).output().unwrap();
        assert!(!out.status.success(), "{text:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(line) && err.contains(message),
            "{text:?}: {err}"
        );
    }
    assert_eq!(counts(&open(&data)), (0, 0));
    // The one shape without braces Caddy reads: a single site, snippets before it.
    let single = dir.path().join("single.Caddyfile");
    std::fs::write(
        &single,
        "(s) {\n\theader X-A b\n}\na.example\nimport s\nrespond ok\n",
    )
    .unwrap();
    assert!(caddy_refuses(&single).is_none());
    let plan = import_json(&data, &single, &["--dry-run"]);
    assert_eq!(actions_of(&plan["plan"]), pairs(&[("a.example", "create")]));
}

/// Every file in the data directory with its size and a hash of its bytes: what "writes
/// nothing" is checked against.
fn data_files(data: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut files: Vec<(String, usize, u64)> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            (
                e.file_name().to_string_lossy().into_owned(),
                bytes.len(),
                h.finish(),
            )
        })
        // SQLite's own companions of a WAL database: a reader makes them, and the last
        // connection to close removes them again, which a process exiting can beat. An
        // empty WAL holds no change; the shared-memory index is never part of the data.
        .filter(|(name, len, _)| !(name.ends_with("-shm") || (name.ends_with("-wal") && *len == 0)))
        .collect();
    files.sort();
    files
}

/// Runs `gatehouse` expecting it to fail; its stderr.
fn run_refused(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run gatehouse");
    assert!(!out.status.success(), "{cmd:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_dry_run_and_an_export_leave_every_file_of_the_data_directory_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture("agency.Caddyfile");
    let out = dir.path().join("export.json");
    let reads = |data: &Path| -> Vec<Command> {
        let mut dry = gatehouse(data);
        dry.arg("import").arg(&file).arg("--dry-run");
        let mut json = gatehouse(data);
        json.args(["export", "-o"]).arg(&out);
        let mut caddyfile = gatehouse(data);
        caddyfile.args(["export", "--format", "caddyfile"]);
        vec![dry, json, caddyfile]
    };

    // Made by `gatehouse user add`: migrated, no secret key yet (the hub makes it).
    let data = dir.path().join("fresh");
    prepare(&data, None);
    let before = data_files(&data);
    assert!(!data.join("secret.key").exists());
    for mut cmd in reads(&data) {
        run_ok(&mut cmd);
        assert_eq!(
            data_files(&data),
            before,
            "{cmd:?} wrote nothing, made no key"
        );
    }

    // With a key and an agent whose token is sealed: read (the export names the agent).
    let data = dir.path().join("keyed");
    prepare(&data, Some("edge-1"));
    let before = data_files(&data);
    for mut cmd in reads(&data) {
        run_ok(&mut cmd);
        assert_eq!(data_files(&data), before, "{cmd:?} wrote nothing");
    }
    let export: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(export["agents"][0]["name"], "edge-1");

    // A database an older version left, plaintext token and all, while (say) the old hub
    // still runs on it: refused with what to do, and not migrated or sealed meanwhile.
    let data = dir.path().join("legacy");
    std::fs::create_dir_all(&data).unwrap();
    let conn = rusqlite::Connection::open(data.join("gatehouse.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for m in gatehouse::db::MIGRATIONS.iter().filter(|m| m.version <= 5) {
        conn.execute_batch(m.sql).unwrap();
        conn.pragma_update(None, "user_version", m.version).unwrap();
    }
    conn.execute(
        "INSERT INTO agents (name, url, token) VALUES ('edge-1', 'http://127.0.0.1:9', ?1)",
        [AGENT_TOKEN],
    )
    .unwrap();
    drop(conn);
    let before = data_files(&data);
    for mut cmd in reads(&data) {
        let err = run_refused(&mut cmd);
        assert!(
            err.contains("schema version 5") && err.contains("start the hub once"),
            "{cmd:?}: {err}"
        );
        assert_eq!(data_files(&data), before, "{cmd:?} changed nothing");
    }

    // Migrated by a command that has no key (as `gatehouse user add` does), its plaintext
    // still listed for sealing: refused too, rather than read half-sealed.
    let db = Db::open_and_migrate(&data.join("gatehouse.db")).unwrap();
    // Its WAL emptied now, as in `prepare`: the pool closes its connections in the background.
    futures_block(db.run(|c| {
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }));
    drop(db);
    let before = data_files(&data);
    for mut cmd in reads(&data) {
        let err = run_refused(&mut cmd);
        assert!(
            err.contains("in plaintext") && err.contains("start the hub once"),
            "{cmd:?}: {err}"
        );
        assert_eq!(data_files(&data), before, "{cmd:?} changed nothing");
    }
}

// ---- The admin page, the deploy pipeline and the downloads, with a real fleet ----

async fn db_counts(app: &TestApp) -> (i64, i64) {
    app.state
        .db
        .run(|c| {
            let v: i64 = c.query_row("SELECT count(*) FROM vhosts", [], |r| r.get(0))?;
            Ok((v, changelog::count(c)?))
        })
        .await
        .unwrap()
}

/// The import textarea's exact content.
fn textarea(page: &Page) -> String {
    let doc = page.html();
    let area = doc
        .select(&common::selector("textarea#caddyfile"))
        .next()
        .expect("the Caddyfile textarea");
    area.text().collect()
}

async fn preview(app: &TestApp, text: &str, agent: &str) -> Page {
    app.post_form("/import/preview", &[("caddyfile", text), ("agent", agent)])
        .await
}

async fn confirm(app: &TestApp, page: &Page) -> Page {
    let text = page
        .attr("#import-apply input[name=caddyfile]", "value")
        .expect("a confirm form");
    let agent = page
        .attr("#import-apply input[name=agent]", "value")
        .unwrap();
    let fingerprint = page
        .attr("#import-apply input[name=fingerprint]", "value")
        .unwrap();
    app.post_form(
        "/import",
        &[
            ("caddyfile", &text),
            ("agent", &agent),
            ("fingerprint", &fingerprint),
        ],
    )
    .await
}

#[tokio::test]
async fn the_import_page_previews_without_writing_and_lists_unmapped_lines() {
    let app = hub(|_| {}).await;
    let text = std::fs::read_to_string(fixture("agency.Caddyfile")).unwrap();
    let page = preview(&app, &text, "").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(db_counts(&app).await, (0, 0), "a preview writes nothing");
    assert_eq!(page.count("tr.import-item[data-action=create]"), 5);
    assert_eq!(
        page.text("tr.import-item[data-action=skip] .item-address"),
        "api.agency.test/v1"
    );
    assert_eq!(
        page.count("tr.import-item[data-domain='www.shop.agency.test'][data-line='30']"),
        1
    );
    assert_eq!(
        page.text("li.import-note[data-line='47'][data-kind=unmapped] .note-source"),
        "import /etc/caddy/blog-extras.caddy"
    );
    assert_eq!(
        page.count("li.import-note[data-line='3'][data-kind=config]"),
        1,
        "email is a setting of the config file"
    );
    assert!(
        page.text("li.import-note[data-line='3'] .note-message")
            .contains("acme_email")
    );
    assert_eq!(
        page.attr("li.import-note[data-line='5']", "data-last-line")
            .as_deref(),
        Some("7")
    );
    assert_eq!(page.count("#import-apply #confirm-import"), 1);
    // The pasted text stays in the textarea for another try.
    assert_eq!(textarea(&page), text);

    // A Caddy 2.7-style file: named route, top-level import, heredoc, bare port.
    let modern = std::fs::read_to_string(fixture("modern.Caddyfile")).unwrap();
    let page = preview(&app, &modern, "").await;
    assert_eq!(
        page.attr(
            "li.import-note[data-line='5'][data-kind=unmapped]",
            "data-last-line"
        )
        .as_deref(),
        Some("9"),
        "the named route, whole"
    );
    assert_eq!(
        page.text("li.import-note[data-line='11'][data-kind=unmapped] .note-source"),
        "import sites-enabled/*"
    );
    assert_eq!(
        page.attr(
            "li.import-note[data-line='14'][data-kind=kept]",
            "data-last-line"
        )
        .as_deref(),
        Some("18"),
        "the heredoc is kept and noted"
    );
    assert!(
        page.text("tr.import-item[data-action=skip][data-line='40'] .item-reason")
            .contains("no host name")
    );
    assert_eq!(
        page.text("tr.import-item[data-domain='docs.example.org:8443'] .same-block"),
        "same block as docs.example.net"
    );
    assert_eq!(db_counts(&app).await, (0, 0), "still nothing written");
    let agents = app.get("/agents").await;
    assert_eq!(
        agents.attr("#import-link", "href").as_deref(),
        Some("/import")
    );

    // A file that is not a Caddyfile comes back as typed, with the reason by the field.
    let broken = preview(&app, "a.example {\n\trespond ok\n", "").await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(broken.text("#caddyfile-error").contains("line 1"));
    assert_eq!(textarea(&broken), "a.example {\n\trespond ok\n");
    assert_eq!(broken.count("#import-apply"), 0);
}

/// Snippets s0..s9 each importing the next twenty times, the last empty (or only importing
/// a file): some 20^9 expansions from a paste of about 2 KB, writing no byte of body.
fn fan_out(last: &str) -> String {
    let mut file = String::new();
    for k in 0..9 {
        file.push_str(&format!("(s{k}) {{\n"));
        for _ in 0..20 {
            file.push_str(&format!("\timport s{}\n", k + 1));
        }
        file.push_str("}\n");
    }
    file.push_str(&format!("(s9) {{\n{last}}}\n"));
    file.push_str("a.example {\n\timport s0\n\trespond ok\n}\n");
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pasted_snippet_fan_out_is_refused_with_the_paste_kept() {
    let app = hub(|_| {}).await;
    for last in ["", "\timport missing.conf\n"] {
        let text = fan_out(last);
        let page = preview(&app, &text, "").await;
        assert_eq!(
            page.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            page.body
        );
        let why = page.text("#caddyfile-error");
        assert!(why.contains("expand more than 10000 times"), "{why}");
        assert!(why.contains("line "), "{why}");
        assert_eq!(textarea(&page), text, "the paste comes back as typed");
        assert_eq!(page.count("#import-apply"), 0);
        // Confirming the same text directly is refused the same way, and writes nothing.
        let applied = app
            .post_form(
                "/import",
                &[("caddyfile", &text), ("agent", ""), ("fingerprint", "x")],
            )
            .await;
        assert_eq!(applied.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            applied
                .text("#caddyfile-error")
                .contains("expand more than 10000 times")
        );
    }
    assert_eq!(db_counts(&app).await, (0, 0));
    let form = app.get("/import").await;
    assert_eq!(form.status, StatusCode::OK);
}

#[tokio::test]
async fn an_import_confirmed_in_the_portal_is_served_by_caddy_and_a_rejected_one_changes_nothing() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    let port = caddy.http_port;
    let text = format!(
        "(local) {{\n\tbind 127.0.0.1\n}}\n\n\
         http://one.localhost:{port}, http://two.localhost:{port} {{\n\timport local\n\trespond \"imported {{host}}\" 200\n}}\n"
    );
    let page = preview(&app, &text, &id.to_string()).await;
    assert_eq!(page.count("tr.import-item[data-action=create]"), 2);
    let done = confirm(&app, &page).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(
        done.attr("#import-result", "data-created").as_deref(),
        Some("2")
    );
    assert_eq!(
        db_counts(&app).await,
        (2, 2),
        "one changelog entry per vhost"
    );
    let (status, body) = caddy.get(&format!("one.localhost:{port}"), "/").await;
    assert_eq!((status, body.as_str()), (200, "imported one.localhost"));
    let served: Vec<bool> = app
        .state
        .db
        .run(|c| vhosts::list(c, &Default::default()))
        .await
        .unwrap()
        .iter()
        .map(|v| !v.all_agents && v.agent_ids == [id])
        .collect();
    assert_eq!(served, [true, true], "served by the chosen agent only");

    // Caddy refuses a directive it does not know: nothing of the import is kept.
    let rejected_text = format!(
        "http://three.localhost:{port} {{\n\tbind 127.0.0.1\n\trespond three\n}}\n\n\
         http://four.localhost:{port} {{\n\tbind 127.0.0.1\n\tfrobnicate now\n}}\n"
    );
    let page = preview(&app, &rejected_text, "").await;
    assert_eq!(page.count("tr.import-item[data-action=create]"), 2);
    let refused = confirm(&app, &page).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.text("#form-error").contains("refused"),
        "{}",
        refused.text("#form-error")
    );
    assert_eq!(db_counts(&app).await, (2, 2));
    let (_, body) = caddy.get(&format!("three.localhost:{port}"), "/").await;
    assert_ne!(body, "three", "the refused import is not served");

    // A preview gone stale (a site appeared meanwhile) is not applied.
    let stale_text =
        format!("http://five.localhost:{port} {{\n\tbind 127.0.0.1\n\trespond five\n}}\n");
    let page = preview(&app, &stale_text, "").await;
    let five = format!("http://five.localhost:{port}");
    let made = app
        .post_form(
            "/vhosts",
            &[
                ("domain", five.as_str()),
                ("template", "raw"),
                ("config", "bind 127.0.0.1\nrespond other"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let stale = confirm(&app, &page).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert!(stale.text("#form-error").contains("changed since"));
    assert_eq!(
        stale.attr("tr.import-item", "data-action").as_deref(),
        Some("update"),
        "the new preview shows what a confirmation would now do"
    );
    assert_eq!(db_counts(&app).await, (3, 3));

    // The agent's Caddyfile, as a download.
    let download = app.get(&format!("/agents/{id}/caddyfile")).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(
        download.header("content-type"),
        Some("text/caddyfile; charset=utf-8")
    );
    assert_eq!(
        download.header("content-disposition"),
        Some("attachment; filename=\"edge-1.Caddyfile\"")
    );
    let expected = {
        let config = app.state.config.clone();
        app.state
            .db
            .run(move |c| gatehouse::export::agent_caddyfile(c, &config, id))
            .await
            .unwrap()
            .unwrap()
            .1
    };
    assert_eq!(download.body, expected);
    assert!(
        download
            .body
            .contains(&format!("http://two.localhost:{port} {{"))
    );
    assert_eq!(
        app.get("/agents/999999/caddyfile").await.status,
        StatusCode::NOT_FOUND
    );
    let agents_page = app.get("/agents").await;
    assert_eq!(
        agents_page.attr(&format!("#agent-{id} a.agent-caddyfile"), "href"),
        Some(format!("/agents/{id}/caddyfile"))
    );
    assert_eq!(
        agents_page.attr("#export-json", "href").as_deref(),
        Some("/export.json")
    );

    // The JSON export: every vhost, the agents and settings, and no agent token.
    let export = app.get("/export.json").await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.header("content-type"), Some("application/json"));
    assert!(
        !export.body.contains(AGENT_TOKEN),
        "the agent token is a secret"
    );
    let json: Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(json["vhosts"].as_array().unwrap().len(), 3);
    assert_eq!(json["agents"][0]["name"], "edge-1");
    assert!(json["agents"][0].get("token").is_none());
    let one = json["vhosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["domain"] == format!("http://one.localhost:{port}"))
        .expect("the imported site is exported");
    assert_eq!(one["agents"], serde_json::json!(["edge-1"]));
    assert_eq!(one["all_agents"], false);
    assert_eq!(one["owner_email"], ADMIN_EMAIL);
    assert_eq!(one["template"], "raw");
    assert_eq!(
        json["settings"]["caddy"]["access_log"],
        app.state.config.caddy.access_log
    );

    // The same from the command line, on the hub's database while it runs.
    let data = app.state.config.data_dir.clone();
    let out = run_ok(gatehouse(&data).args(["export", "--format", "json"]));
    let cli = String::from_utf8(out.stdout).unwrap();
    assert!(!cli.contains(AGENT_TOKEN));
    let cli: Value = serde_json::from_str(&cli).unwrap();
    assert_eq!(cli["vhosts"], json["vhosts"]);
    drop(agent);
}

#[tokio::test]
async fn a_command_line_import_is_pushed_by_the_running_hub() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    add_agent(&app, "edge-1", &agent).await;
    let port = caddy.http_port;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Caddyfile");
    std::fs::write(
        &file,
        format!(
            "http://cli.localhost:{port} {{\n\tbind 127.0.0.1\n\trespond \"from the cli\"\n}}\n"
        ),
    )
    .unwrap();
    let data = app.state.config.data_dir.clone();
    let report = import_json(&data, &file, &["--agent", "edge-1"]);
    assert_eq!(report["applied"]["created"], 1);
    let host = format!("cli.localhost:{port}");
    eventually(20, "the reconciler pushes the imported site", || async {
        caddy.get(&host, "/").await == (200, "from the cli".to_string())
    })
    .await;
    drop(agent);
}

#[test]
fn an_import_skips_a_site_over_another_owners_site_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    prepare(&data, None);
    let db = open(&data);
    futures_block(db.run(|c| {
        c.execute(
            "INSERT INTO users (id, name, email, password_hash, role) VALUES (50, 'Bob', 'bob@example.com', 'h', 'user')",
            [],
        )?;
        let bobs = vhosts::Snapshot {
            domain: "*.example.com".into(),
            template: "raw".into(),
            params: "{}".into(),
            config: "respond bob\n".into(),
            enabled: true,
            owner_id: Some(50),
            all_agents: true,
            agent_ids: Vec::new(),
            labels: Vec::new(),
        };
        vhosts::insert(c, &bobs).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }));
    drop(db);
    let file = dir.path().join("Caddyfile");
    std::fs::write(
        &file,
        "a.example.com {\n\trespond 1\n}\nhttp://b.example.com:8080 {\n\trespond 2\n}\n\
         a.b.example.com {\n\trespond 3\n}\n",
    )
    .unwrap();
    let out = import_json(&data, &file, &[]);
    assert_eq!(
        actions_of(&out["plan"]),
        pairs(&[
            ("a.example.com", "skip"),
            ("http://b.example.com:8080", "skip"),
            ("a.b.example.com", "create"),
        ])
    );
    assert_eq!(
        out["plan"]["items"][0]["reason"],
        "it overlaps *.example.com (owner: bob@example.com); create it on the site form to \
         override"
    );
    assert_eq!(out["applied"]["created"], 1);
    assert_eq!(counts(&open(&data)), (2, 1));
}
