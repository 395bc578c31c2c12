//! Agent and Caddy faults, with real Caddy processes, real agent processes and a real hub:
//! an agent killed in the middle of a push, Caddy killed and restarted under its agent, agents
//! that answer garbage or hang (the one place a fake agent is used, see below), and a full
//! disk under the access log.

use crate::common;

use crate::common::caddy::Caddy;
use crate::common::fleet::{
    AGENT_TOKEN, AgentProc, add_agent, add_agent_at, agent_row, agent_runs_db, eventually, hub,
    post_owned, proxy_site, proxy_site_form, upstream,
};
use crate::common::loadgen::{SseReader, requests};
use crate::common::signal;
use gatehouse::db::{agents, changelog, vhosts};
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn created(page: &common::Page) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

async fn domains(app: &common::TestApp) -> Vec<String> {
    app.state
        .db
        .run(|c| vhosts::list(c, &Default::default()))
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.domain)
        .collect()
}

/// Whether the hub has heard from agent `id` (so it knows its Caddy's admin address and
/// pushes to it).
async fn contacted(app: &common::TestApp, id: i64) -> bool {
    app.state
        .db
        .run(move |c| agents::find(c, id))
        .await
        .unwrap()
        .is_some_and(|a| a.caddy_admin.is_some())
}

#[tokio::test]
async fn an_agent_killed_mid_push_is_reported_and_caught_up_after_its_restart() {
    // Two Caddys serve the same site port, each on its own loopback address (`{$GH_BIND}`).
    let mut caddy_a = Caddy::start_with_env(&[("GH_BIND", "127.0.0.1")]).await;
    let caddy_b = Caddy::start_with_env(&[("GH_BIND", "127.0.0.2")]).await;
    let mut agent_a = AgentProc::start(&caddy_a).await;
    let agent_b = AgentProc::start(&caddy_b).await;
    let app = hub(|c| c.fleet.push_timeout_secs = 30).await;
    let a = add_agent(&app, "edge-a", &agent_a).await;
    let b = add_agent(&app, "edge-b", &agent_b).await;
    eventually(10, "the hub knows both agents", || async {
        contacted(&app, a).await && contacted(&app, b).await
    })
    .await;
    let backend = upstream("mid").await;
    let port = caddy_a.http_port;
    let site = |name: &str| {
        let mut form = proxy_site_form(name, port, backend, &[]);
        form[2].1 = format!("bind {{$GH_BIND}}\nreverse_proxy {backend}");
        form
    };
    created(&post_owned(&app, "/vhosts", &site("before")).await);
    let entries = app.state.db.run(|c| changelog::count(c)).await.unwrap();
    let hash_b = agent_b.health().await["applied_hash"].clone();

    // Caddy A is frozen, so the push to agent A stays in flight: the agent has the new
    // Caddyfile and waits for Caddy. Meanwhile agent B takes it.
    signal(caddy_a.pid(), "-STOP");
    let push = {
        let (visitor, form) = ((*app).clone(), site("during"));
        tokio::spawn(async move { post_owned(&visitor, "/vhosts", &form).await })
    };
    eventually(10, "agent B took the new config", || async {
        agent_b.health().await["applied_hash"] != hash_b
    })
    .await;
    assert!(!push.is_finished(), "the deploy waits for agent A");
    agent_a.kill();
    let page = tokio::time::timeout(Duration::from_secs(60), push)
        .await
        .expect("the deploy ends once the agent is gone")
        .unwrap();
    created(&page);
    signal(caddy_a.pid(), "-CONT");

    // The change stands: in the database, in the changelog, and on B.
    let during = format!("http://during.localhost:{port}");
    assert!(domains(&app).await.contains(&during));
    assert_eq!(
        app.state.db.run(|c| changelog::count(c)).await.unwrap(),
        entries + 1
    );
    assert!(
        agent_runs_db(&app, b, &agent_b).await,
        "B runs the database"
    );
    let on_b = reqwest::Client::new()
        .get(format!("http://127.0.0.2:{port}/"))
        .header("Host", format!("during.localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(on_b.text().await.unwrap(), "mid");
    // The hub says plainly that A is away, and why.
    let (state, error) = agent_row(&app, "edge-a").await;
    assert_eq!(state, "offline", "{error}");
    assert!(
        error.contains("the agent closed the connection") || error.contains("cannot connect"),
        "a clear reason: {error}"
    );
    assert_eq!(agent_row(&app, "edge-b").await.0, "in sync");

    agent_a.restart().await;
    eventually(30, "the reconciler brings agent A up to date", || async {
        agent_runs_db(&app, a, &agent_a).await
    })
    .await;
    eventually(10, "Caddy A serves the change", || async {
        caddy_a
            .get(&format!("during.localhost:{port}"), "/")
            .await
            .1
            == "mid"
    })
    .await;
    assert_eq!(agent_row(&app, "edge-a").await.0, "in sync");
    assert!(agent_runs_db(&app, b, &agent_b).await, "B was left alone");
    caddy_a.kill();
}

#[tokio::test]
async fn caddy_killed_and_restarted_under_its_agent_is_reported_and_given_its_config_again() {
    let mut caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("served").await;
    created(&proxy_site(&app, "app", &caddy, backend, &[]).await);
    let host = format!("app.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await.1, "served");

    caddy.kill();
    assert_eq!(
        agent.health().await["caddy"]["reachable"],
        false,
        "the agent reports Caddy down"
    );
    eventually(10, "the hub shows Caddy unreachable", || async {
        agent_row(&app, "edge-1").await.0 == "Caddy unreachable"
    })
    .await;

    // Restarted the way a service manager does it: from its own Caddyfile, which knows
    // nothing of the hub's sites. The agent's last push is gone with the old process.
    caddy.restart().await;
    eventually(30, "the reconciler pushes the config again", || async {
        caddy.get(&host, "/").await.1 == "served"
    })
    .await;
    assert!(agent_runs_db(&app, id, &agent).await);
    eventually(10, "the hub shows the agent in sync", || async {
        agent_row(&app, "edge-1").await.0 == "in sync"
    })
    .await;
}

// --- The one fake in these tests -------------------------------------------------------
//
// A real agent never answers garbage, and never hangs while its process is alive and its
// Caddy answers, so these two faults need a stand-in that speaks (or fails to speak) the
// agent's HTTP API. Everything else in the test is real: the hub, a real agent with a real
// Caddy beside the fakes, and the hub's own timeouts.

/// How a fake agent misbehaves.
#[derive(Clone, Copy)]
enum Fake {
    /// A proper `/health`, then 200 with a body that is not an answer on every push.
    GarbagePush,
    /// A proper `/health`, then never an answer to a push.
    HangingPush,
}

/// A fake agent on loopback; runs until the test ends.
async fn fake_agent(kind: Fake) -> SocketAddr {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let health = serde_json::json!({
        "status": "ok",
        "agent_version": "0.0.0-fake",
        "caddy": {"reachable": true, "version": "v2.6.2", "admin": "127.0.0.1:2999"},
        "applied_hash": null,
        "access_log": "/tmp/fake-access.log",
        "tls": false,
        "log": {"malformed": 0, "last_id": 0, "file": "/tmp/fake-access.log"}
    });
    let app = axum::Router::new()
        .route(
            "/health",
            get(move || {
                let health = health.clone();
                async move { axum::Json(health) }
            }),
        )
        .route(
            "/caddy/reload",
            post(move || async move {
                match kind {
                    Fake::GarbagePush => "\u{1}garbage{{{ not json".to_string(),
                    Fake::HangingPush => std::future::pending().await,
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A TCP server that accepts and then either writes bytes that are not HTTP and closes
/// (`garbage`), or holds the connection without a word.
async fn fake_socket(garbage: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if garbage {
                use tokio::io::AsyncWriteExt;
                let _ = socket
                    .write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
                    .await;
            } else {
                held.push(socket);
            }
        }
    });
    addr
}

async fn add_fake(app: &common::TestApp, name: &str, addr: SocketAddr) -> i64 {
    add_agent_at(app, name, &format!("http://{addr}")).await
}

#[tokio::test]
async fn agents_that_answer_garbage_or_hang_hold_up_nothing() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|c| c.fleet.push_timeout_secs = 2).await;
    let real = add_agent(&app, "edge-real", &agent).await;
    let garbage_push = add_fake(
        &app,
        "fake-garbage-push",
        fake_agent(Fake::GarbagePush).await,
    )
    .await;
    let hanging_push = add_fake(
        &app,
        "fake-hanging-push",
        fake_agent(Fake::HangingPush).await,
    )
    .await;
    add_fake(&app, "fake-not-http", fake_socket(true).await).await;
    add_fake(&app, "fake-silent", fake_socket(false).await).await;
    eventually(
        15,
        "the hub has heard from the real agent and the two API fakes",
        || async {
            contacted(&app, real).await
                && contacted(&app, garbage_push).await
                && contacted(&app, hanging_push).await
        },
    )
    .await;

    // A change is pushed to every agent the hub knows: the hanging one does not hold it
    // beyond the push timeout (bounded here at 30 s: far above 2 s, far below "for ever").
    let backend = upstream("unaffected").await;
    let form = proxy_site_form("app", caddy.http_port, backend, &[]);
    let page = tokio::time::timeout(Duration::from_secs(30), post_owned(&app, "/vhosts", &form))
        .await
        .expect("the hub's push timeout holds");
    created(&page);
    let host = format!("app.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await.1, "unaffected");
    assert!(agent_runs_db(&app, real, &agent).await);

    // Each fake is shown as what it is, with a reason a person can act on.
    let expectations = [
        ("fake-garbage-push", "could not be read"),
        ("fake-hanging-push", "did not answer in time"),
        ("fake-not-http", "could not be read"),
        ("fake-silent", "did not answer in time"),
    ];
    for (name, reason) in expectations {
        eventually(15, &format!("{name} shows {reason:?}"), || async {
            let (state, error) = agent_row(&app, name).await;
            state != "in sync" && error.contains(reason)
        })
        .await;
    }
    // And while the reconciler keeps trying them, the real agent stays in sync and further
    // changes still go through.
    let second = proxy_site_form("second", caddy.http_port, backend, &[]);
    let page = tokio::time::timeout(
        Duration::from_secs(30),
        post_owned(&app, "/vhosts", &second),
    )
    .await
    .expect("the hub's push timeout holds again");
    created(&page);
    assert_eq!(
        caddy
            .get(&format!("second.localhost:{}", caddy.http_port), "/")
            .await
            .1,
        "unaffected"
    );
    assert_eq!(agent_row(&app, "edge-real").await.0, "in sync");
}

/// Entries the agent holds for paths `/r/<n>`, as numbers.
async fn logged_paths(agent: &AgentProc) -> Vec<usize> {
    let page: serde_json::Value = agent
        .probe()
        .get(format!("{}/logs?limit=10000", agent.url()))
        .bearer_auth(AGENT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["uri"].as_str()?.strip_prefix("/r/")?.parse().ok())
        .collect()
}

#[tokio::test]
async fn the_log_tailer_survives_a_full_disk_and_streams_again_when_space_returns() {
    // What is simulated, and how: a full disk means Caddy's writes to the access log fail
    // part-way (a torn last line) and then not at all, until space is freed. Without root we
    // cannot mount a tiny filesystem, so the file-size limit (RLIMIT_FSIZE) of the running
    // Caddy process is lowered with `prlimit`: past that size its writes fail with EFBIG, as
    // they would with ENOSPC (Go ignores SIGXFSZ, so Caddy keeps running). Raising the limit
    // again is the space coming back. The agent, which only reads the file, is not limited.
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("ok").await;
    created(&proxy_site(&app, "logs", &caddy, backend, &[]).await);
    let host = format!("logs.localhost:{}", caddy.http_port);
    let stream = agent
        .probe()
        .get(format!("{}/logs/stream", agent.url()))
        .bearer_auth(AGENT_TOKEN)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let mut stream = SseReader::new(stream);

    requests(caddy.http_port, &host, 0..20, 4).await;
    eventually(10, "the first 20 requests are tailed", || async {
        logged_paths(&agent).await.len() == 20
    })
    .await;
    let size = std::fs::metadata(&agent.access_log).unwrap().len();
    let prlimit = |limit: &str| {
        let status = Command::new("prlimit")
            .args([
                "--pid",
                &caddy.pid().to_string(),
                &format!("--fsize={limit}"),
            ])
            .status()
            .expect("prlimit");
        assert!(status.success(), "prlimit --fsize={limit}");
    };
    // Room for part of one more line only.
    prlimit(&format!("{}:unlimited", size + 100));
    requests(caddy.http_port, &host, 20..60, 4).await;
    let full = std::fs::metadata(&agent.access_log).unwrap().len();
    assert_eq!(
        full,
        size + 100,
        "Caddy wrote up to the limit and no further"
    );
    let health = agent.health().await;
    assert_eq!(health["status"], "ok", "the agent is alive: {health}");

    prlimit("unlimited:unlimited");
    requests(caddy.http_port, &host, 60..61, 1).await;
    requests(caddy.http_port, &host, 61..80, 4).await;
    // The first line written after the space came back (/r/60, sent alone first) is
    // appended to the torn one: together they are one damaged line, counted and skipped.
    // Every line after it is tailed again.
    eventually(
        10,
        "the requests after the disk freed up are tailed",
        || async {
            let paths = logged_paths(&agent).await;
            (61..80).all(|n| paths.contains(&n))
        },
    )
    .await;
    let paths = logged_paths(&agent).await;
    assert!(
        (0..20).all(|n| paths.contains(&n)),
        "nothing tailed before is lost"
    );
    assert!(
        !paths.iter().any(|n| (20..61).contains(n)),
        "nothing Caddy could not write shows up: {paths:?}"
    );
    let health = agent.health().await;
    assert_eq!(
        health["log"]["malformed"], 1,
        "the torn line is counted once: {health}"
    );

    // The live stream that was open all along delivers the new lines.
    let mut seen = Vec::new();
    while let Some(event) = stream.next(Duration::from_secs(5)).await {
        if event.event == "log"
            && let Some(n) = event.json()["uri"]
                .as_str()
                .and_then(|u| u.strip_prefix("/r/"))
                .and_then(|n| n.parse::<usize>().ok())
        {
            seen.push(n);
            if (61..80).all(|n| seen.contains(&n)) {
                break;
            }
        }
    }
    assert!(
        (61..80).all(|n| seen.contains(&n)),
        "the open stream resumed: {seen:?}"
    );
}
