//! Property: no body accepted for a `user` makes Caddy dial outside the open networks.
//!
//! Bodies are generated from pieces that reach for addresses every way the Caddyfile allows
//! (upstream lists, `to`, schemes, health check ports, FastCGI, `forward_auth`, matchers,
//! nested `handle`/`route`/`handle_response` blocks, placeholders, unix sockets, names). Each
//! goes through the same gates as the portal: the token-level body policy, then a real Caddy
//! 2.6 adapts it and the tenant judge reads the JSON. For every body accepted, an oracle
//! written independently of the judge walks Caddy's adapted JSON and checks every address
//! Caddy would connect to.

use crate::common::caddy::Caddy;
use gatehouse::domain::caddyfile::{BodyPolicy, CaddyfileBody};
use gatehouse::domain::tenant::{
    NamePattern, Reserved, ReservedHost, TenantPolicy, judge, parse_network,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::Value;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

const ADMIN_PORT: u16 = 2019;

fn addresses() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "127.0.0.1:2019",
        "127.9.9.9:2019",
        "[::1]:2019",
        "[::ffff:127.0.0.1]:2019",
        "localhost:2019",
        "127.0.0.1:9000",
        "10.9.1.2:80",
        "10.9.200.7:8080",
        "10.10.0.1:80",
        "192.168.0.1:80",
        "169.254.169.254:80",
        "0.0.0.0:80",
        "api.svc.test:80",
        "svc.test:80",
        "evil.test:80",
        "unix//var/run/docker.sock",
        "unix//run/ok.sock",
        "{http.request.header.X-Target}",
        "10.9.0.1:{http.request.uri.query.p}",
        "h2c://10.9.0.3:80",
        "https://127.0.0.1:2019",
        "http://[::ffff:10.9.0.1]:80",
        "2130706433:2019",
    ])
    .prop_map(str::to_string)
}

fn subdirective() -> impl Strategy<Value = String> {
    prop_oneof![
        addresses().prop_map(|a| format!("to {a}")),
        prop::sample::select(vec![ADMIN_PORT, 80, 9999]).prop_map(|p| format!("health_port {p}")),
        Just("health_uri /health".to_string()),
        Just("lb_policy first".to_string()),
        Just("header_up Host {upstream_hostport}".to_string()),
        Just("transport http {\n\ttls\n\ttls_server_name internal\n}".to_string()),
        Just("transport http {\n\ttls_client_auth /etc/a.pem /etc/a.key\n}".to_string()),
        prop::sample::select(vec!["/", "/srv/www/a", "/srv/www/../etc"])
            .prop_map(|r| format!("transport fastcgi {{\n\troot {r}\n}}")),
        Just("@bad status 5xx\nhandle_response @bad {\n\trespond \"sorry\"\n}".to_string()),
        addresses().prop_map(|a| format!(
            "@bad status 5xx\nhandle_response @bad {{\n\treverse_proxy {a}\n}}"
        )),
    ]
}

fn proxy() -> impl Strategy<Value = String> {
    (
        prop::option::of(Just("/api/*")),
        prop::collection::vec(addresses(), 0..3),
        prop::collection::vec(subdirective(), 0..3),
    )
        .prop_map(|(matcher, upstreams, subs)| {
            let mut head = vec!["reverse_proxy".to_string()];
            head.extend(matcher.map(str::to_string));
            head.extend(upstreams);
            if subs.is_empty() {
                head.join(" ")
            } else {
                format!("{} {{\n{}\n}}", head.join(" "), subs.join("\n"))
            }
        })
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proxy(),
        1 => addresses().prop_map(|a| format!("forward_auth {a} {{\n\turi /verify\n}}")),
        1 => Just("respond \"hello {http.request.host}\" 200".to_string()),
        1 => Just("@e file {\n\troot /\n\ttry_files {path}\n}\nrespond @e \"exists\"".to_string()),
        1 => Just("header X-Served-By gatehouse".to_string()),
    ]
}

fn body() -> impl Strategy<Value = String> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        (
            prop::sample::select(vec!["handle", "route", "handle_path /p/*", "handle_errors"]),
            prop::collection::vec(inner, 1..3),
        )
            .prop_map(|(wrapper, inner)| format!("{wrapper} {{\n{}\n}}", inner.join("\n")))
    })
}

fn policy() -> TenantPolicy {
    TenantPolicy {
        networks: vec![
            parse_network("10.9.0.0/16").unwrap(),
            parse_network("127.0.0.1/32").unwrap(),
        ],
        upstream_hosts: vec![NamePattern::parse("*.svc.test").unwrap()],
        unix_sockets: vec!["/run/ok.sock".into()],
        ports: vec![80, 443],
        root_base: "/srv/www".into(),
        reserved: vec![Reserved {
            host: ReservedHost::Loopback,
            port: ADMIN_PORT,
            what: "Caddy's admin endpoint".into(),
        }],
    }
}

/// The oracle, written without the judge: may Caddy connect to `host:port`?
fn allowed(host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                v4 => v4,
            };
            let ten_nine = matches!(ip, IpAddr::V4(v4) if v4.octets()[..2] == [10, 9]);
            let loopback_one = ip == IpAddr::from([127, 0, 0, 1]);
            (ten_nine || loopback_one) && !(ip.is_loopback() && port == ADMIN_PORT)
        }
        Err(_) => host.ends_with(".svc.test") && host.len() > ".svc.test".len(),
    }
}

/// Every address Caddy would connect to for this JSON, and whether each is allowed.
fn every_dial_is_allowed(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            if map.get("handler").and_then(Value::as_str) == Some("reverse_proxy") {
                let health_port = map
                    .get("health_checks")
                    .and_then(|h| h.get("active"))
                    .and_then(|a| a.get("port"))
                    .and_then(Value::as_u64);
                for u in map
                    .get("upstreams")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let dial = u.get("dial").and_then(Value::as_str).unwrap_or_default();
                    if dial.contains('{') {
                        return Err(format!("placeholder dial {dial}"));
                    }
                    if let Some(path) = dial.strip_prefix("unix/") {
                        if path != "/run/ok.sock" {
                            return Err(format!("socket {dial}"));
                        }
                        continue;
                    }
                    let (host, port) = dial.rsplit_once(':').ok_or(format!("dial {dial}"))?;
                    let port: u16 = port.parse().map_err(|_| format!("port in {dial}"))?;
                    for port in std::iter::once(port).chain(health_port.map(|p| p as u16)) {
                        if !allowed(host, port) {
                            return Err(format!("dial {host}:{port}"));
                        }
                    }
                }
                if map.contains_key("dynamic_upstreams") {
                    return Err("dynamic upstreams".into());
                }
            }
            map.values().try_for_each(every_dial_is_allowed)
        }
        Value::Array(list) => list.iter().try_for_each(every_dial_is_allowed),
        _ => Ok(()),
    }
}

#[test]
fn no_body_accepted_for_a_user_makes_caddy_dial_outside_the_open_networks() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let caddy = runtime.block_on(Caddy::start());
    let http = reqwest::Client::new();
    let user = BodyPolicy::default_user();
    let policy = policy();
    let (accepted, judged_refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 300,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    runner
        .run(&body(), |text| {
            let Ok(parsed) = CaddyfileBody::parse(&text, &user) else {
                return Ok(());
            };
            let block = gatehouse::fleet::site_config::judged_block("a.example.com", &parsed);
            let adapted: Value = runtime.block_on(async {
                let response = http
                    .post(format!("{}/adapt", caddy.admin_url()))
                    .header("Content-Type", "text/caddyfile")
                    .body(block.clone())
                    .send()
                    .await
                    .expect("Caddy's /adapt answers");
                if response.status().is_success() {
                    response.json::<Value>().await.expect("JSON")["result"].clone()
                } else {
                    Value::Null
                }
            });
            if adapted.is_null() {
                return Ok(()); // Caddy itself refuses it.
            }
            if !judge(&adapted, "a.example.com", &policy).is_empty() {
                judged_refused.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            accepted.fetch_add(1, Ordering::Relaxed);
            every_dial_is_allowed(&adapted).map_err(|why| {
                TestCaseError::fail(format!(
                    "accepted body dials outside: {why}\n{block}\n{adapted}"
                ))
            })
        })
        .unwrap();
    // Not vacuous: the generator reaches both verdicts of the judge many times.
    let (accepted, refused) = (accepted.into_inner(), judged_refused.into_inner());
    eprintln!("accepted {accepted}, refused {refused}");
    assert!(accepted >= 20, "only {accepted} bodies were accepted");
    assert!(
        refused >= 20,
        "only {refused} bodies were refused by the judge"
    );
}
