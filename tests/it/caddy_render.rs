//! The renderer against Debian's real Caddy: 1000 sites made from every template render to
//! a Caddyfile that `caddy fmt` leaves unchanged and `caddy adapt` accepts.

use crate::common::caddy::{self, Caddy};
use crate::common::fleet::upstream;
use gatehouse::config::CaddyConfig;
use gatehouse::db::vhosts::Vhost;
use gatehouse::domain::access_log::{ParsedLine, parse_line};
use gatehouse::domain::caddyfile::{BodyPolicy, CaddyfileBody};
use gatehouse::domain::vhost::{GenerateContext, SiteAddress, Template};
use gatehouse::fleet::site_config;
use std::collections::BTreeMap;
use std::process::Command;

fn values(t: Template, i: usize) -> BTreeMap<String, String> {
    let pairs: Vec<(&str, String)> = match t {
        Template::ReverseProxy => vec![
            ("upstream", format!("127.0.0.1:{}", 3000 + i % 1000)),
            (
                "upstream_host_header",
                if i % 2 == 0 {
                    "on".into()
                } else {
                    String::new()
                },
            ),
        ],
        Template::LoadBalancer => vec![
            (
                "upstreams",
                format!("10.0.{}.1:80\n10.0.{}.2:80", i % 250, i % 250),
            ),
            (
                "lb_policy",
                ["round_robin", "least_conn", "random", "ip_hash", "first"][i % 5].into(),
            ),
            (
                "health_uri",
                if i % 3 == 0 {
                    "/healthz".into()
                } else {
                    String::new()
                },
            ),
            ("health_interval", "15s".into()),
        ],
        Template::StaticFiles => vec![
            ("root", format!("/srv/www/site {i}")),
            (
                "browse",
                if i % 2 == 0 {
                    "on".into()
                } else {
                    String::new()
                },
            ),
        ],
        Template::Redirect => vec![
            ("target", format!("https://new{i}.example.com")),
            (
                "redirect_kind",
                if i % 2 == 0 {
                    "permanent".into()
                } else {
                    "temporary".into()
                },
            ),
            (
                "keep_path",
                if i % 3 == 0 {
                    String::new()
                } else {
                    "on".into()
                },
            ),
        ],
        Template::PhpFastcgi => vec![
            ("php_root", format!("/srv/www/php{i}")),
            ("php_upstream", "127.0.0.1:9000".into()),
        ],
        Template::Raw => vec![(
            "config",
            format!(
                "@api path /api/*\nhandle @api {{\n\treverse_proxy 127.0.0.1:{}\n}}\nhandle {{\n\trespond \"site {i} {{uri}}\" 200\n}}\nheader X-Site \"{i}\"",
                4000 + i % 1000
            ),
        )],
    };
    pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

#[test]
fn a_thousand_sites_from_every_template_are_fmt_clean_and_adapt() {
    let ctx = GenerateContext {
        admin: true,
        user_root_base: "/srv/www".into(),
    };
    let mut vhosts = Vec::new();
    for i in 0..1000 {
        let t = Template::ALL[i % Template::ALL.len()];
        let domain = match i % 4 {
            0 => format!("site{i}.example.com"),
            1 => format!("*.wild{i}.example.com"),
            2 => format!("http://app{i}.localhost:8080"),
            _ => format!("bücher{i}.example"),
        };
        let address = SiteAddress::parse(&domain).unwrap_or_else(|e| panic!("{domain}: {e}"));
        let text = t
            .generate(&values(t, i), &ctx)
            .unwrap_or_else(|e| panic!("{t:?} #{i}: {e:?}"));
        let body = CaddyfileBody::parse(&text, &BodyPolicy::admin())
            .unwrap_or_else(|e| panic!("{t:?} #{i}: {e}"));
        vhosts.push(Vhost {
            id: i as i64,
            domain: address.as_str().to_string(),
            template: t.slug().into(),
            params: "{}".into(),
            config: body.as_str().to_string(),
            enabled: i % 10 != 9,
            owner_id: None,
            all_agents: true,
            agent_ids: Vec::new(),
            labels: Vec::new(),
            created_at: 0,
            updated_at: 0,
        });
    }
    let caddy = CaddyConfig {
        acme_email: "ops@example.com".into(),
        log: "/var/log/caddy/caddy.log".into(),
        admin: "127.0.0.1:2999".into(),
        ..CaddyConfig::default()
    };
    let (text, hash) = site_config::whole(&caddy, &vhosts);
    assert_eq!(
        site_config::whole(&caddy, &vhosts).1,
        hash,
        "rendering is deterministic"
    );
    assert!(
        text.starts_with("{\n\tadmin 127.0.0.1:2999\n"),
        "{}",
        &text[..200]
    );
    let access = format!("output file {}", caddy.access_log);
    assert_eq!(text.matches(&access).count(), 1, "one shared access logger");
    assert_eq!(
        text.lines().filter(|l| *l == "\tlog").count(),
        900,
        "every enabled site switches access logging on"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Caddyfile");
    std::fs::write(&file, &text).unwrap();

    let fmt = Command::new("caddy")
        .arg("fmt")
        .arg(&file)
        .output()
        .expect("caddy is installed (bash .ci/run installs it)");
    assert!(
        fmt.status.success(),
        "caddy fmt: {}",
        String::from_utf8_lossy(&fmt.stderr)
    );
    let formatted = String::from_utf8(fmt.stdout).unwrap();
    if formatted != text {
        let first = formatted
            .lines()
            .zip(text.lines())
            .position(|(a, b)| a != b);
        panic!("caddy fmt changes the output; first differing line {first:?}");
    }

    let adapt = caddy::adapt(&file);
    assert!(
        adapt.status.success(),
        "caddy adapt: {}",
        String::from_utf8_lossy(&adapt.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&adapt.stdout).unwrap();
    assert_eq!(json["admin"]["listen"], "127.0.0.1:2999");
    let stderr = String::from_utf8_lossy(&adapt.stderr);
    assert!(!stderr.contains("WARN"), "adapt warns: {stderr}");
}

/// The renderer's access-log form against real Caddy: sites of every kind write through one
/// shared logger, and each request reaches the access log file under its own host, while
/// Caddy's own log stays free of access lines.
#[tokio::test]
async fn every_sites_requests_reach_the_shared_access_log_under_its_host() {
    let caddy = Caddy::start().await;
    let port = caddy.http_port;
    let backend = upstream("from upstream").await;
    let access_log = caddy.dir().join("access.log");
    let own_log = caddy.dir().join("caddy-own.log");
    let config = CaddyConfig {
        admin: caddy.admin_addr().to_string(),
        access_log: access_log.display().to_string(),
        log: own_log.display().to_string(),
        ..CaddyConfig::default()
    };
    let body = |i: usize| {
        match i % 4 {
        0 => format!("bind 127.0.0.1\nrespond \"site {i}\" 200"),
        1 => format!("bind 127.0.0.1\nreverse_proxy {backend}"),
        2 => "bind 127.0.0.1\nredir https://elsewhere.example{uri} 302".to_string(),
        _ => "bind 127.0.0.1\n@api path /api/*\nhandle @api {\n\trespond 404\n}\nhandle {\n\trespond 204\n}"
            .to_string(),
    }
    };
    let mut vhosts = Vec::new();
    for i in 0..40 {
        let domain = if i == 39 {
            format!("http://*.wild.localhost:{port}")
        } else {
            format!("http://s{i}.localhost:{port}")
        };
        let parsed = CaddyfileBody::parse(&body(i), &BodyPolicy::admin())
            .unwrap_or_else(|e| panic!("site {i}: {e}"));
        vhosts.push(Vhost {
            id: i as i64,
            domain,
            template: "raw".into(),
            params: "{}".into(),
            config: parsed.as_str().to_string(),
            enabled: true,
            owner_id: None,
            all_agents: true,
            agent_ids: Vec::new(),
            labels: Vec::new(),
            created_at: 0,
            updated_at: 0,
        });
    }
    let (text, _) = site_config::whole(&config, &vhosts);
    let load = reqwest::Client::new()
        .post(format!("{}/load", caddy.admin_url()))
        .header("Content-Type", "text/caddyfile")
        .header("Origin", caddy.admin_url())
        .body(text.clone())
        .send()
        .await
        .expect("POST /load");
    let status = load.status();
    let answer = load.text().await.unwrap_or_default();
    assert!(
        status.is_success() && answer.is_empty(),
        "{status} {answer}\n{text}"
    );

    // One request per site, each with a path no other request uses.
    let mut expected = BTreeMap::new();
    for i in 0..40 {
        let host = if i == 39 {
            format!("deep.wild.localhost:{port}")
        } else {
            format!("s{i}.localhost:{port}")
        };
        let uri = format!("/probe/{i}?n={i}");
        let (status, _) = caddy.get(&host, &uri).await;
        assert_ne!(status, 0, "site {i} answers");
        expected.insert(uri, host);
    }

    // Caddy writes the access log asynchronously; wait (bounded) until every line is there.
    let mut seen = BTreeMap::new();
    for _ in 0..100 {
        seen.clear();
        let text = std::fs::read_to_string(&access_log).unwrap_or_default();
        for line in text.lines() {
            match parse_line(line) {
                Ok(ParsedLine::Access(entry)) => {
                    assert!(
                        seen.insert(entry.uri.clone(), entry.host.clone()).is_none(),
                        "{} logged twice",
                        entry.uri
                    );
                }
                other => panic!("not an access line in the access log: {other:?}: {line}"),
            }
        }
        if seen.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen, expected, "every request, under its own host");

    let own = std::fs::read_to_string(&own_log).unwrap_or_default();
    assert!(
        own.lines()
            .all(|l| !matches!(parse_line(l), Ok(ParsedLine::Access(_)))),
        "Caddy's own log carries no access lines"
    );
    assert!(
        !own.is_empty(),
        "Caddy's own log is written: {}",
        caddy.log()
    );
}
