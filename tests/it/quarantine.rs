//! Quarantine: a site a Caddy refuses, when nobody is changing it right now, is set aside on
//! the agents whose Caddy refuses it; every other site keeps deploying, the set-aside site
//! shows Caddy's message where people look, and saving it fixed brings it back everywhere.
//! Real Caddys (two, on 127.0.0.1 and 127.0.0.2: they share loopback ports, so each binds its
//! own address through `{$GH_BIND}`), real agents, the real `gatehouse import` binary.

use crate::common::api::{Api, make_token};
use crate::common::binary::gatehouse_in;
use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, agent_runs_db, eventually, hub, upstream};
use crate::common::{ADMIN_PASSWORD, Page, TestApp, location, signed_in_user};
use gatehouse::db::vhosts::{self, Vhost};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Two agents, edge-1 and edge-2, each before its own Caddy; the sites of a test listen on
/// `port`, edge-1's Caddy on 127.0.0.1 and edge-2's on 127.0.0.2.
struct Fleet {
    app: TestApp,
    _caddys: [Caddy; 2],
    edges: [AgentProc; 2],
    ids: [i64; 2],
    port: u16,
}

/// The fleet; each Caddy also gets `env` (its `{$VAR}`s) beside its bind address.
async fn fleet(env: [&[(&str, &str)]; 2]) -> Fleet {
    let caddy_1 = start(BINDS[0], env[0]).await;
    let caddy_2 = start(BINDS[1], env[1]).await;
    let (edge_1, edge_2) = (
        AgentProc::start(&caddy_1).await,
        AgentProc::start(&caddy_2).await,
    );
    let app = hub(|_| {}).await;
    let id_1 = add_agent(&app, "edge-1", &edge_1).await;
    let id_2 = add_agent(&app, "edge-2", &edge_2).await;
    let port = caddy_1.http_port;
    Fleet {
        app,
        _caddys: [caddy_1, caddy_2],
        edges: [edge_1, edge_2],
        ids: [id_1, id_2],
        port,
    }
}

/// A Caddy whose sites bind `ip`, with `env` as well.
async fn start(ip: &str, env: &[(&str, &str)]) -> Caddy {
    let mut all = vec![("GH_BIND", ip)];
    all.extend_from_slice(env);
    Caddy::start_with_env(&all).await
}

const BINDS: [&str; 2] = ["127.0.0.1", "127.0.0.2"];

/// What the Caddy bound to `ip` answers on `port` for `host`: (status, body); 0 when
/// nothing answers.
async fn served(ip: &str, port: u16, host: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client
        .get(format!("http://{ip}:{port}/"))
        .header(reqwest::header::HOST, format!("{host}:{port}"))
        .send()
        .await
    {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

/// Waits until every Caddy in `on` answers `reply` for `host`.
async fn both_serve(f: &Fleet, host: &str, reply: &str, on: &[usize]) {
    for &k in on {
        eventually(
            30,
            &format!("Caddy {} serves {host}", k + 1),
            || async move { served(BINDS[k], f.port, host).await == (200, reply.to_string()) },
        )
        .await;
    }
}

/// The raw site `name` on the fleet's port, with `body` (its first line binds the Caddy's
/// own address), as the site form posts it.
fn site_form(f: &Fleet, name: &str, body: &str) -> Vec<(String, String)> {
    vec![
        (
            "domain".into(),
            format!("http://{name}.localhost:{}", f.port),
        ),
        ("template".into(), "raw".into()),
        ("config".into(), format!("bind {{$GH_BIND}}\n{body}")),
        ("enabled".into(), "on".into()),
    ]
}

async fn post(app: &TestApp, path: &str, form: &[(String, String)]) -> Page {
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.post_form(path, &fields).await
}

async fn site(app: &TestApp, name: &str) -> Vhost {
    let name = format!("{name}.localhost:");
    app.state
        .db
        .run(move |c| vhosts::list(c, &Default::default()))
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.domain.contains(&name))
        .expect("the site is stored")
}

/// (agent name, Caddy's message) of each agent site `id` is set aside on.
async fn set_aside(app: &TestApp, id: i64) -> Vec<(String, String)> {
    app.state
        .db
        .run(move |c| gatehouse::db::quarantine::for_site(c, id))
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.agent, e.error))
        .collect()
}

/// The quarantine notes shown inside `scope` on `page`: (agent, message, line).
fn notes(page: &Page, scope: &str) -> Vec<(String, String, Option<String>)> {
    let doc = page.html();
    let css = crate::common::selector(&format!("{scope} .quarantine"));
    let error = crate::common::selector(".quarantine-error");
    doc.select(&css)
        .map(|p| {
            let message = p
                .select(&error)
                .next()
                .map(|e| e.text().collect::<String>())
                .unwrap_or_default();
            (
                p.value().attr("data-agent").unwrap_or_default().to_string(),
                message,
                p.value().attr("data-line").map(str::to_string),
            )
        })
        .collect()
}

/// `gatehouse import FILE --json` against the running hub's database.
fn cli_import(app: &TestApp, file: &Path) -> Value {
    let out = gatehouse_in(app.dir.path())
        .arg("import")
        .arg(file)
        .arg("--json")
        .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
        .output()
        .expect("run gatehouse import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the import prints JSON")
}

fn item<'a>(out: &'a Value, name: &str) -> &'a Value {
    out["plan"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["address"].as_str().unwrap().contains(name))
        .unwrap_or_else(|| panic!("{name} in {out}"))
}

async fn in_sync(f: &Fleet) {
    for (k, edge) in f.edges.iter().enumerate() {
        let (app, id) = (&f.app, f.ids[k]);
        eventually(
            30,
            &format!("edge-{} runs the database", k + 1),
            || async move { agent_runs_db(app, id, edge).await },
        )
        .await;
    }
}

/// Creates the good sites `names` on the portal, proxying to `good`, and waits until both
/// agents run them.
async fn good_sites(f: &Fleet, good: std::net::SocketAddr, names: &[&str]) {
    for name in names {
        let body = format!("reverse_proxy {good}");
        let created = post(&f.app, "/vhosts", &site_form(f, name, &body)).await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    }
    in_sync(f).await;
}

/// Gives site `id` to `user`, as an admin choosing its owner on the form would.
async fn hand_over(app: &TestApp, id: i64, user: i64) {
    app.state
        .db
        .run(move |c| {
            c.execute("UPDATE vhosts SET owner_id = ?1 WHERE id = ?2", [user, id])?;
            Ok(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_site_caddy_refuses_imported_by_the_cli_is_set_aside_and_comes_back_once_fixed() {
    let f = fleet([&[], &[]]).await;
    let app = &f.app;
    let good = upstream("good backend").await;
    good_sites(&f, good, &["alpha", "beta"]).await;
    let (user, user_id) = signed_in_user(app, "tenant@example.com").await;

    // A Caddyfile from Caddy 1: `gzip` is a directive Caddy 2.6 no longer knows.
    let file = app.dir.path().join("old.Caddyfile");
    let port = f.port;
    std::fs::write(
        &file,
        format!(
            "http://imported.localhost:{port} {{\n\tbind {{$GH_BIND}}\n\treverse_proxy {good}\n}}\n\n\
             http://legacy.localhost:{port} {{\n\tbind {{$GH_BIND}}\n\tgzip\n\treverse_proxy {good}\n}}\n"
        ),
    )
    .unwrap();
    let dry = gatehouse_in(app.dir.path())
        .args(["import", "--dry-run"])
        .arg(&file)
        .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{said}");
    assert!(
        said.lines().any(|l| l.contains("Caddy (edge-")
            && l.contains("refuses it:")
            && l.contains("line 2: unrecognized directive: gzip")),
        "the report names Caddy's refusal beside the site:\n{said}"
    );
    let out = cli_import(app, &file);
    assert_eq!(
        out["applied"]["created"], 2,
        "the import is not refused: {out}"
    );
    let legacy = &item(&out, "legacy")["caddy"];
    assert_eq!(legacy["status"], "refused", "{out}");
    assert_eq!(legacy["line"], 2, "gzip is the body's second line: {out}");
    assert!(
        legacy["error"]
            .as_str()
            .unwrap()
            .contains("line 2: unrecognized directive: gzip"),
        "Caddy's own words, its line in the body: {out}"
    );
    assert_eq!(
        item(&out, "imported")["caddy"]["status"],
        "accepted",
        "{out}"
    );

    // The reconciler pushes: each Caddy refuses the whole file, so the culprit is set aside
    // on each agent, and everything else deploys everywhere.
    for name in ["alpha", "beta", "imported"] {
        both_serve(&f, &format!("{name}.localhost"), "good backend", &[0, 1]).await;
    }
    let legacy = site(app, "legacy").await;
    let aside = set_aside(app, legacy.id).await;
    assert_eq!(
        aside.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        ["edge-1", "edge-2"]
    );
    in_sync(&f).await;
    for ip in BINDS {
        assert_ne!(served(ip, port, "legacy.localhost").await.1, "good backend");
    }
    let audited = app.audit_actions().await;
    assert_eq!(
        audited.iter().filter(|a| *a == "site_quarantined").count(),
        2,
        "{audited:?}"
    );

    // Shown on its row, its edit page and the dashboard, with Caddy's message and line.
    let row = format!("article.vhost-row[data-domain='{}']", legacy.domain);
    let listed = app.get("/vhosts").await;
    let shown = notes(&listed, &row);
    assert_eq!(shown.len(), 2, "{}", listed.body);
    for (agent, message, line) in &shown {
        assert!(agent.starts_with("edge-"));
        assert!(
            message.contains("line 2: unrecognized directive: gzip"),
            "{message}"
        );
        assert_eq!(line.as_deref(), Some("2"));
    }
    let alpha_row = format!(
        "article.vhost-row[data-domain='{}']",
        site(app, "alpha").await.domain
    );
    assert!(notes(&listed, &alpha_row).is_empty(), "only the culprit");
    let editor = app.get(&format!("/vhosts/{}/edit", legacy.id)).await;
    assert_eq!(notes(&editor, "#quarantine").len(), 2, "{}", editor.body);
    let home = app.get("/").await;
    let listed_home = home.texts(&format!(
        "#quarantined li.quarantined-site[data-domain='{}'] .quarantine-error",
        legacy.domain
    ));
    assert_eq!(listed_home.len(), 2, "{}", home.body);
    assert!(listed_home[0].contains("unrecognized directive: gzip"));

    // A user sees nothing of another owner's site; once it is theirs, they see why.
    let theirs = user.get("/").await;
    assert_eq!(theirs.count("#quarantined"), 0, "{}", theirs.body);
    let legacy_id = legacy.id;
    hand_over(app, legacy_id, user_id).await;
    let theirs = user.get("/vhosts").await;
    let shown = notes(&theirs, &row);
    assert_eq!(shown.len(), 2, "{}", theirs.body);
    assert!(shown[0].1.contains("unrecognized directive: gzip"));
    assert_eq!(theirs.count("article.vhost-row"), 1, "their own site only");

    // Saving it fixed (as the admin) brings it back on both.
    let fixed = post(
        app,
        &format!("/vhosts/{}", legacy.id),
        &site_form(&f, "legacy", &format!("reverse_proxy {good}")),
    )
    .await;
    assert_eq!(fixed.status, StatusCode::SEE_OTHER, "{}", fixed.body);
    assert!(location(&fixed).starts_with("/vhosts"));
    both_serve(&f, "legacy.localhost", "good backend", &[0, 1]).await;
    assert!(set_aside(app, legacy.id).await.is_empty());
    assert!(notes(&app.get("/vhosts").await, &row).is_empty());
    assert_eq!(app.get("/").await.count("#quarantined"), 0);
    assert!(
        app.audit_actions()
            .await
            .contains(&"site_released".to_string())
    );
    in_sync(&f).await;
}

#[tokio::test]
async fn without_an_agent_to_ask_the_import_marks_each_body_unchecked() {
    let app = hub(|_| {}).await;
    let file = app.dir.path().join("old.Caddyfile");
    std::fs::write(&file, "legacy.example.com {\n\tgzip\n}\n").unwrap();
    let out = cli_import(&app, &file);
    assert_eq!(out["applied"]["created"], 1, "{out}");
    let checked = &item(&out, "legacy")["caddy"];
    assert_eq!(checked["status"], "unchecked", "{out}");
    assert!(
        checked["why"].as_str().unwrap().contains("no agent"),
        "{out}"
    );
}

#[tokio::test]
async fn a_site_one_agents_caddy_alone_refuses_is_set_aside_there_only() {
    // The snippet stands for what one Caddy has and another lacks, as a Caddy built without
    // a plugin lacks its directive: the site imports it from each Caddy's own directory,
    // and edge-2's host loses it.
    let (snippets_1, snippets_2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [&snippets_1, &snippets_2] {
        std::fs::write(dir.path().join("extra.caddy"), "header X-Extra yes\n").unwrap();
    }
    let (dir_1, dir_2) = (
        snippets_1.path().to_str().unwrap(),
        snippets_2.path().to_str().unwrap(),
    );
    let f = fleet([&[("SNIPPETS", dir_1)], &[("SNIPPETS", dir_2)]]).await;
    let app = &f.app;
    let good = upstream("good backend").await;
    let body = format!("import {{$SNIPPETS}}/extra.caddy\nreverse_proxy {good}");
    let created = post(app, "/vhosts", &site_form(&f, "plugged", &body)).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    both_serve(&f, "plugged.localhost", "good backend", &[0, 1]).await;

    std::fs::remove_file(snippets_2.path().join("extra.caddy")).unwrap();

    // Someone else's change: edge-2's Caddy now refuses the whole file because of a site the
    // change does not touch. That site is set aside on edge-2; the change lands everywhere.
    let other = post(
        app,
        "/vhosts",
        &site_form(&f, "other", &format!("reverse_proxy {good}")),
    )
    .await;
    assert_eq!(other.status, StatusCode::SEE_OTHER, "{}", other.body);
    both_serve(&f, "other.localhost", "good backend", &[0, 1]).await;
    let plugged = site(app, "plugged").await;
    let aside = set_aside(app, plugged.id).await;
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].0, "edge-2");
    assert!(
        aside[0].1.contains("File to import not found"),
        "{}",
        aside[0].1
    );
    both_serve(&f, "plugged.localhost", "good backend", &[0]).await;
    assert_ne!(
        served(BINDS[1], f.port, "plugged.localhost").await.1,
        "good backend"
    );
    in_sync(&f).await;

    let row = format!("article.vhost-row[data-domain='{}']", plugged.domain);
    let shown = notes(&app.get("/vhosts").await, &row);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0].0, "edge-2");
    assert_eq!(
        shown[0].2.as_deref(),
        Some("2"),
        "the import is the body's second line"
    );
    let editor = app.get(&format!("/vhosts/{}/edit", plugged.id)).await;
    assert_eq!(notes(&editor, "#quarantine").len(), 1, "{}", editor.body);
    let token = make_token(app, ADMIN_PASSWORD, "ci", "read").await;
    let api = Api::new(app.addr, Some(&token));
    let got = api.get(&format!("/api/v1/vhosts/{}", plugged.id)).await;
    assert_eq!(got.json["set_aside"][0]["agent"], "edge-2", "{}", got.body);
    assert_eq!(got.json["set_aside"][0]["line"], 2, "{}", got.body);
    assert_eq!(got.json["set_aside"].as_array().unwrap().len(), 1);
    let home = app.get("/").await;
    assert_eq!(
        home.count(&format!(
            "#quarantined li.quarantined-site[data-domain='{}'][data-agent='edge-2']",
            plugged.domain
        )),
        1,
        "{}",
        home.body
    );

    // Fixed without the snippet and saved: served by both again.
    let fixed = post(
        app,
        &format!("/vhosts/{}", plugged.id),
        &site_form(&f, "plugged", &format!("reverse_proxy {good}")),
    )
    .await;
    assert_eq!(fixed.status, StatusCode::SEE_OTHER, "{}", fixed.body);
    both_serve(&f, "plugged.localhost", "good backend", &[0, 1]).await;
    assert!(set_aside(app, plugged.id).await.is_empty());
    let got = api.get(&format!("/api/v1/vhosts/{}", plugged.id)).await;
    assert!(got.json.get("set_aside").is_none(), "{}", got.body);
    in_sync(&f).await;
}

#[tokio::test]
async fn a_refusal_only_loading_reveals_is_found_by_bisecting_and_its_details_kept_for_admins() {
    let f = fleet([&[], &[]]).await;
    let app = &f.app;
    let good = upstream("good backend").await;
    good_sites(&f, good, &["alpha", "beta", "gamma"]).await;

    // Certificate files that are not there: Caddy adapts the site, and refuses it only when
    // it loads it, so the import's own check with Caddy cannot see it.
    let file = app.dir.path().join("tls.Caddyfile");
    let tls_port = crate::common::free_port();
    std::fs::write(
        &file,
        format!(
            "https://secure.localhost:{tls_port} {{\n\tbind {{$GH_BIND}}\n\ttls /nonexistent/cert.pem /nonexistent/key.pem\n\trespond \"secure\"\n}}\n"
        ),
    )
    .unwrap();
    let out = cli_import(app, &file);
    assert_eq!(item(&out, "secure")["caddy"]["status"], "accepted", "{out}");

    let secure = site(app, "secure").await;
    let (db, id) = (&app.state.db, secure.id);
    eventually(30, "the site is set aside on both agents", || async move {
        let n = db
            .run(move |c| gatehouse::db::quarantine::for_site(c, id))
            .await
            .unwrap()
            .len();
        n == 2
    })
    .await;
    in_sync(&f).await;
    for name in ["alpha", "beta", "gamma"] {
        both_serve(&f, &format!("{name}.localhost"), "good backend", &[0, 1]).await;
    }
    let aside = set_aside(app, secure.id).await;
    assert!(
        aside[0].1.contains("loading certificates"),
        "Caddy's message from the load: {}",
        aside[0].1
    );

    // Its owner reads that it was refused, not a message that may name other sites.
    let row = format!("article.vhost-row[data-domain='{}']", secure.domain);
    assert!(
        notes(&app.get("/vhosts").await, &row)[0]
            .1
            .contains("/nonexistent/cert.pem")
    );
    let (user, user_id) = signed_in_user(app, "tenant@example.com").await;
    hand_over(app, id, user_id).await;
    let theirs = notes(&user.get("/vhosts").await, &row);
    assert_eq!(theirs.len(), 2);
    assert!(
        theirs[0].1.contains("an admin can see Caddy's message"),
        "{}",
        theirs[0].1
    );
    assert!(!theirs[0].1.contains("nonexistent"), "{}", theirs[0].1);
}
