//! Live logs end to end: real Caddy writes real access logs, the real agent tails them, the
//! hub fans them out over SSE. Visibility is asserted on the raw SSE a user receives.

use crate::common;

use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, eventually, hub, upstream};
use crate::common::{TestApp, Visitor};
use futures::StreamExt;
use gatehouse::domain::Role;
use reqwest::StatusCode;
use std::collections::HashSet;
use std::time::Duration;

/// Creates (as an admin) a site proxying to a tiny upstream on `caddy`'s test port, owned
/// by `owner` when given.
async fn site_for(admin: &Visitor, name: &str, caddy: &Caddy, owner: Option<i64>) {
    let backend = upstream("ok").await;
    let domain = format!("http://{name}.localhost:{}", caddy.http_port);
    let body = format!("bind 127.0.0.1\nreverse_proxy {backend}");
    let owner = owner.map(|o| o.to_string()).unwrap_or_default();
    let fields = [
        ("domain", domain.as_str()),
        ("template", "raw"),
        ("config", body.as_str()),
        ("enabled", "on"),
        ("owner_id", owner.as_str()),
    ];
    let page = admin.post_form("/vhosts", &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

async fn site(admin: &Visitor, name: &str, caddy: &Caddy) {
    site_for(admin, name, caddy, None).await
}

/// Sends `n` requests to `host` through Caddy, with paths `/<tag>/<i>`.
async fn traffic(caddy: &Caddy, host: &str, tag: &str, n: usize) {
    for i in 0..n {
        let (status, _) = caddy.get(host, &format!("/{tag}/{i}")).await;
        assert_eq!(status, 200, "{host} /{tag}/{i}");
    }
}

/// A raw SSE connection to the hub's stream, as a browser has it.
struct Watch {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>,
    parser: gatehouse::fleet::logs::SseParser,
}

impl Watch {
    async fn open(v: &Visitor, query: &str) -> Self {
        let response = v
            .http
            .get(v.url(&format!("/logs/stream?{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: Default::default(),
        }
    }

    /// The rows received within `secs` seconds: (host, path) of each line, plus skipped markers.
    async fn read_for(
        &mut self,
        secs: u64,
        until: impl Fn(&[(String, String)]) -> bool,
    ) -> Vec<(String, String)> {
        let mut rows = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !until(&rows) {
            let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, self.body.next()).await
            else {
                break;
            };
            for event in self.parser.feed(&chunk) {
                let doc = scraper::Html::parse_fragment(&format!(
                    "<table><tbody>{}</tbody></table>",
                    event.data
                ));
                for tr in doc.select(&common::selector("tr.log-row")) {
                    let host = tr.value().attr("data-host").unwrap_or_default().to_string();
                    let path = tr
                        .select(&common::selector("td.log-path"))
                        .next()
                        .map(|t| t.text().collect())
                        .unwrap_or_default();
                    rows.push((host, path));
                }
                for tr in doc.select(&common::selector("tr.log-skipped")) {
                    rows.push(("SKIPPED".into(), tr.text().collect()));
                }
            }
        }
        rows
    }
}

async fn fleet() -> (Caddy, AgentProc, TestApp) {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|c| c.fleet.log_idle_grace_secs = 1).await;
    add_agent(&app, "edge-1", &agent).await;
    (caddy, agent, app)
}

#[tokio::test]
async fn requests_through_caddy_reach_the_hubs_live_stream_and_history() {
    let (caddy, _agent, app) = fleet().await;
    site(&app, "app", &caddy).await;
    let host = format!("app.localhost:{}", caddy.http_port);
    let mut watch = Watch::open(&app, "").await;
    traffic(&caddy, &host, "live", 5).await;
    let rows = watch.read_for(10, |r| r.len() >= 5).await;
    let paths: HashSet<_> = rows.iter().map(|(_, p)| p.clone()).collect();
    for i in 0..5 {
        assert!(paths.contains(&format!("/live/{i}")), "{rows:?}");
    }
    let page = app.get("/logs").await;
    assert!(
        page.count("#log-rows tr.log-row") >= 5,
        "history is shown first"
    );
    assert_eq!(
        page.attr("#log-table", "sse-connect")
            .as_deref()
            .map(|s| s.starts_with("/logs/stream")),
        Some(true)
    );
    let filtered = app.get("/logs?status=5xx").await;
    assert_eq!(
        filtered.count("#log-rows tr.log-row"),
        0,
        "the status filter applies to history"
    );
    assert_eq!(
        filtered.count("#log-status option[value='5xx'][selected]"),
        1,
        "a filtered address opens with its filters set"
    );
    // Changing a filter puts it in the address bar, so the view can be reloaded and shared.
    let swapped = app
        .get_htmx("/logs/table?vhost=&status=4xx&method=&q=live+%2F")
        .await;
    assert_eq!(
        swapped.header("hx-push-url"),
        Some("/logs?status=4xx&q=live+%2F")
    );
    let cleared = app.get_htmx("/logs/table?vhost=&status=&method=&q=").await;
    assert_eq!(cleared.header("hx-push-url"), Some("/logs"));
}

#[tokio::test]
async fn a_user_only_ever_receives_lines_of_their_own_sites() {
    let (caddy, _agent, app) = fleet().await;
    for (email, name) in [("bob@example.com", "bob"), ("eve@example.com", "eve")] {
        let id = app.add_user(email, Role::User).await;
        site_for(&app, name, &caddy, Some(id)).await;
    }
    let bob = app.visitor();
    bob.login("bob@example.com", common::USER_PASSWORD).await;
    let mut watch = Watch::open(&bob, "").await;
    let (bob_host, eve_host) = (
        format!("bob.localhost:{}", caddy.http_port),
        format!("eve.localhost:{}", caddy.http_port),
    );
    for round in 0..10 {
        traffic(&caddy, &eve_host, "secret", 1).await;
        traffic(&caddy, &bob_host, &format!("mine{round}"), 1).await;
    }
    let rows = watch.read_for(10, |r| r.len() >= 10).await;
    assert_eq!(rows.len(), 10, "bob gets his ten lines: {rows:?}");
    assert!(
        rows.iter()
            .all(|(h, p)| h == &bob_host && p.starts_with("/mine")),
        "{rows:?}"
    );
    // Asking for eve's site by name does not help either.
    let mut sneaky = Watch::open(
        &bob,
        &format!("vhost=http://eve.localhost:{}", caddy.http_port),
    )
    .await;
    traffic(&caddy, &eve_host, "secret", 3).await;
    assert!(sneaky.read_for(2, |r| !r.is_empty()).await.is_empty());
    let history = bob.get("/logs").await;
    assert!(
        history
            .texts("#log-rows td.log-path")
            .iter()
            .all(|p| !p.starts_with("/secret"))
    );
}

#[tokio::test]
async fn viewers_share_one_upstream_per_agent_which_closes_when_nobody_watches() {
    let (caddy, _agent, app) = fleet().await;
    site(&app, "app", &caddy).await;
    let watchers = futures::future::join_all((0..3).map(|_| Watch::open(&app, ""))).await;
    eventually(5, "one upstream for three viewers", || async {
        app.state.log_hub.open_upstreams() == 1
    })
    .await;
    drop(watchers);
    eventually(10, "the upstream closes after the grace period", || async {
        app.state.log_hub.open_upstreams() == 0
    })
    .await;
}

#[tokio::test]
async fn a_slow_viewer_is_told_what_it_missed_and_hub_memory_stays_bounded() {
    // The hub runs as its own process here, so its memory is measured alone.
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let token = "slow-viewer-setup-token";
    let hub = common::binary::start_serve(
        dir.path(),
        port,
        &[
            ("GATEHOUSE_SETUP_TOKEN", token),
            ("GATEHOUSE_SECURITY_LOGIN_ATTEMPTS_PER_MINUTE", "1000"),
        ],
    )
    .await;
    let admin = Visitor::at(format!("127.0.0.1:{port}").parse().unwrap(), token);
    admin.create_admin().await;
    admin
        .login_and_enrol(common::ADMIN_EMAIL, common::ADMIN_PASSWORD)
        .await;
    common::fleet::add_agent_as(&admin, "edge-1", &agent.url()).await;
    site(&admin, "app", &caddy).await;
    let host = format!("app.localhost:{}", caddy.http_port);

    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let mut slow = Watch::open(&admin, "").await;
    traffic(&caddy, &host, "warm", 50).await;
    let before = rss(hub.pid());
    // Far more lines than the shared channel holds, while this viewer reads nothing.
    let senders = (0..8).map(|t| {
        let (caddy, host) = (&caddy, host.clone());
        async move { traffic(caddy, &host, &format!("flood{t}"), 2000).await }
    });
    futures::future::join_all(senders).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = rss(hub.pid());
    let rows = slow
        .read_for(20, |r| r.iter().any(|(h, _)| h == "SKIPPED"))
        .await;
    assert!(
        rows.iter()
            .any(|(h, m)| h == "SKIPPED" && m.contains("lines skipped")),
        "a skipped marker: {} rows",
        rows.len()
    );
    let grown_mib = during.saturating_sub(before) / 1024;
    println!("hub RSS {before} KiB before, {during} KiB with a stalled viewer");
    assert!(
        grown_mib < 64,
        "the hub grew by {grown_mib} MiB with a stalled viewer"
    );
}

#[tokio::test]
async fn the_stream_resumes_without_a_gap_when_the_agent_restarts() {
    let (caddy, mut agent, app) = fleet().await;
    site(&app, "app", &caddy).await;
    let host = format!("app.localhost:{}", caddy.http_port);
    let mut watch = Watch::open(&app, "").await;
    traffic(&caddy, &host, "before", 20).await;
    let mut rows = watch.read_for(10, |r| r.len() >= 20).await;
    agent.kill();
    // Caddy keeps logging while the agent is down.
    traffic(&caddy, &host, "during", 20).await;
    agent.restart().await;
    traffic(&caddy, &host, "after", 20).await;
    rows.extend(watch.read_for(30, |r| r.len() >= 40).await);
    let paths: Vec<_> = rows.iter().map(|(_, p)| p.clone()).collect();
    let distinct: HashSet<_> = paths.iter().collect();
    assert_eq!(distinct.len(), paths.len(), "no line twice: {paths:?}");
    for tag in ["before", "during", "after"] {
        for i in 0..20 {
            assert!(
                distinct.contains(&format!("/{tag}/{i}")),
                "/{tag}/{i} missing: {paths:?}"
            );
        }
    }
}

/// Creates, as the admin, a site that answers `reply`, owned by `owner`, knowingly overriding
/// the overlap rule.
async fn answering_site(admin: &Visitor, domain: &str, reply: &str, owner: i64) {
    let body = format!("bind 127.0.0.1\nrespond \"{reply}\"");
    let owner = owner.to_string();
    let fields = [
        ("domain", domain),
        ("template", "raw"),
        ("config", body.as_str()),
        ("enabled", "on"),
        ("owner_id", owner.as_str()),
        ("allow_overlap", "on"),
    ];
    let page = admin.post_form("/vhosts", &fields).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn lines_of_overlapping_sites_go_only_to_the_owner_of_the_site_caddy_routed_them_to() {
    let (caddy, _agent, app) = fleet().await;
    let port = caddy.http_port;
    let mut viewers = Vec::new();
    for email in ["bob@example.com", "alice@example.com"] {
        let id = app.add_user(email, Role::User).await;
        let v = app.visitor();
        v.login(email, common::USER_PASSWORD).await;
        viewers.push((id, v));
    }
    let ((bob_id, bob), (alice_id, alice)) = (&viewers[0], &viewers[1]);
    // Bob's shop, and Alice's wildcard over it, which an admin allowed knowingly.
    answering_site(
        &app,
        &format!("http://shop.localhost:{port}"),
        "bob",
        *bob_id,
    )
    .await;
    answering_site(
        &app,
        &format!("http://*.localhost:{port}"),
        "alice",
        *alice_id,
    )
    .await;
    let mut bob_watch = Watch::open(bob, "").await;
    let mut alice_watch = Watch::open(alice, "").await;
    let wildcard = format!("vhost=http://*.localhost:{port}");
    let mut admin_wildcard = Watch::open(&app, &wildcard).await;
    for i in 0..3 {
        // Caddy routes the exact name to Bob's site and every other name to Alice's.
        let shop = caddy
            .get(&format!("shop.localhost:{port}"), &format!("/shop/{i}"))
            .await;
        assert_eq!(shop, (200, "bob".to_string()));
        let blog = caddy
            .get(&format!("blog.localhost:{port}"), &format!("/blog/{i}"))
            .await;
        assert_eq!(blog, (200, "alice".to_string()));
    }
    let bobs = bob_watch.read_for(10, |r| r.len() >= 3).await;
    let alices = alice_watch.read_for(10, |r| r.len() >= 3).await;
    let admins = admin_wildcard.read_for(10, |r| r.len() >= 3).await;
    let paths = |rows: &[(String, String)]| rows.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&bobs), ["/shop/0", "/shop/1", "/shop/2"], "{bobs:?}");
    assert_eq!(
        paths(&alices),
        ["/blog/0", "/blog/1", "/blog/2"],
        "{alices:?}"
    );
    assert_eq!(
        paths(&admins),
        ["/blog/0", "/blog/1", "/blog/2"],
        "a site's own lines"
    );
    // History through the page says the same.
    let history = bob.get("/logs").await;
    let shown = history.texts("#log-rows td.log-path");
    assert!(
        !shown.is_empty() && shown.iter().all(|p| p.starts_with("/shop/")),
        "{shown:?}"
    );
    let history = alice.get("/logs").await;
    let shown = history.texts("#log-rows td.log-path");
    assert!(
        !shown.is_empty() && shown.iter().all(|p| p.starts_with("/blog/")),
        "{shown:?}"
    );
}
