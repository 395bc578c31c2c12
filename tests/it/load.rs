//! Load: many signed-in sessions at once, each mixing page views, toggles of its own site and
//! live-log viewing (the hub's SSE stream opened and read briefly), against a real hub with
//! two real agents and Caddys, while traffic flows through those Caddys into the logs.
//!
//! Afterwards: no answer was a 5xx (or failed on the way), every agent runs exactly the
//! database's render, and the changelog holds one toggle entry per acknowledged toggle. The
//! p99 latency is printed, never asserted.
//!
//! The suite runs a short form (10 sessions for 8 s). The long form:
//! `GATEHOUSE_LOAD_SESSIONS=50 GATEHOUSE_LOAD_SECS=60 cargo test --release --test it load:: -- --nocapture`

use crate::common;

use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, agent_runs_db, eventually, hub, upstream};
use crate::common::{USER_PASSWORD, Visitor};
use gatehouse::db::{changelog, users};
use gatehouse::domain::Role;
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
        Err(_) => default,
    }
}

/// What one session saw.
#[derive(Default)]
struct Tally {
    /// (what, milliseconds) per request.
    latencies: Vec<(&'static str, f64)>,
    /// Answers that are neither success nor redirect, with what was asked.
    failures: Vec<String>,
    /// Toggles the hub acknowledged (its redirect arrived).
    toggles: usize,
    log_events: usize,
}

/// How long any one request may take before it counts as failed: a generous bound, so a
/// request the hub never answers fails the test with what was asked instead of hanging it.
const ANSWER: Duration = Duration::from_secs(30);

async fn session(visitor: Visitor, vhost: i64, seed: u64, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let csrf = visitor.csrf().await;
    let mut n = seed;
    while !stop.load(Ordering::Relaxed) {
        // A cheap fixed mix, different per session: 5 page views, 3 toggles, 2 log views.
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pick = (n >> 33) % 10;
        let started = Instant::now();
        let (what, result) = match pick {
            0..=4 => {
                let path = ["/", "/vhosts", "/changelog", "/logs", "/account"][(pick % 5) as usize];
                (
                    "page",
                    visitor
                        .http
                        .get(visitor.url(path))
                        .timeout(ANSWER)
                        .send()
                        .await,
                )
            }
            5..=7 => (
                "toggle",
                visitor
                    .http
                    .post(visitor.url(&format!("/vhosts/{vhost}/toggle")))
                    .form(&[("csrf_token", csrf.as_str())])
                    .timeout(ANSWER)
                    .send()
                    .await,
            ),
            _ => (
                "log stream",
                visitor
                    .http
                    .get(visitor.url("/logs/stream"))
                    .header("Accept", "text/event-stream")
                    .timeout(ANSWER)
                    .send()
                    .await,
            ),
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                tally.failures.push(format!("{what}: {e}"));
                continue;
            }
        };
        let status = response.status();
        tally
            .latencies
            .push((what, started.elapsed().as_secs_f64() * 1000.0));
        if !(status.is_success() || status.is_redirection()) {
            tally.failures.push(format!("{what}: {status}"));
            continue;
        }
        match what {
            "toggle" => {
                assert_eq!(status, StatusCode::SEE_OTHER);
                tally.toggles += 1;
                let _ = response.bytes().await;
            }
            "log stream" => {
                // Watch briefly, as someone glancing at the page would, then leave.
                let mut body = response.bytes_stream();
                let until = tokio::time::Instant::now() + Duration::from_millis(700);
                while let Ok(Some(chunk)) =
                    tokio::time::timeout_at(until, futures::StreamExt::next(&mut body)).await
                {
                    match chunk {
                        Ok(bytes) => {
                            tally.log_events +=
                                bytes.windows(11).filter(|w| w == b"event: log\n").count();
                        }
                        Err(e) => {
                            tally.failures.push(format!("log stream body: {e}"));
                            break;
                        }
                    }
                }
            }
            _ => {
                if let Err(e) = response.bytes().await {
                    tally.failures.push(format!("{what} body: {e}"));
                }
            }
        }
    }
    tally
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sessions_get_no_5xx_and_leave_every_agent_equal_to_the_database() {
    let sessions = setting("GATEHOUSE_LOAD_SESSIONS", 10) as usize;
    let secs = setting("GATEHOUSE_LOAD_SECS", 8);

    // Two Caddys serve the same site port, each on its own loopback address.
    let caddy_a = Caddy::start_with_env(&[("GH_BIND", "127.0.0.1")]).await;
    let caddy_b = Caddy::start_with_env(&[("GH_BIND", "127.0.0.2")]).await;
    let agent_a = AgentProc::start(&caddy_a).await;
    let agent_b = AgentProc::start(&caddy_b).await;
    let app = hub(|c| c.security.login_attempts_per_minute = 100_000).await;
    let a = add_agent(&app, "edge-a", &agent_a).await;
    let b = add_agent(&app, "edge-b", &agent_b).await;
    let port = caddy_a.http_port;
    let backend = upstream("up").await;

    // One user and one site per session, the site given to that user by the admin.
    let mut people = Vec::new();
    for i in 0..sessions {
        let email = format!("load{i}@example.com");
        let uid = app.add_user(&email, Role::User).await;
        let domain = format!("http://load{i}.localhost:{port}");
        let config = format!("bind {{$GH_BIND}}\nreverse_proxy {backend}");
        let owner = uid.to_string();
        let page = app
            .post_form(
                "/vhosts",
                &[
                    ("domain", domain.as_str()),
                    ("template", "raw"),
                    ("config", config.as_str()),
                    ("enabled", "on"),
                    ("owner_id", owner.as_str()),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let vhost: i64 = page
            .header("location")
            .and_then(|l| l.split('=').nth(1))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("created: {:?}", page.header("location")));
        let visitor = app.visitor();
        let login = visitor.login(&email, USER_PASSWORD).await;
        assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.body);
        people.push((visitor, vhost));
    }
    let before = app.state.db.run(|c| changelog::count(c)).await.unwrap();
    let toggles_before = toggle_entries(&app).await;

    // Traffic through Caddy A into the live logs, for the log viewers to see.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = http
                    .get(format!("http://127.0.0.1:{port}/t/{n}"))
                    .header("Host", format!("load{}.localhost:{port}", n % sessions))
                    .timeout(ANSWER)
                    .send()
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let started = Instant::now();
    let tasks: Vec<_> = people
        .into_iter()
        .enumerate()
        .map(|(i, (visitor, vhost))| {
            tokio::spawn(session(visitor, vhost, i as u64 + 1, Arc::clone(&stop)))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.expect("a session panicked");
        all.latencies.extend(t.latencies);
        all.failures.extend(t.failures);
        all.toggles += t.toggles;
        all.log_events += t.log_events;
    }
    let elapsed = started.elapsed().as_secs_f64();
    traffic.await.unwrap();

    let mut ms: Vec<f64> = all.latencies.iter().map(|(_, ms)| *ms).collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "load: {sessions} sessions for {elapsed:.1} s: {} requests ({:.0}/s), {} toggles, {} log lines seen live",
        ms.len(),
        ms.len() as f64 / elapsed,
        all.toggles,
        all.log_events
    );
    println!(
        "load: latency p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or_default()
    );
    for what in ["page", "toggle", "log stream"] {
        let mut these: Vec<f64> = all
            .latencies
            .iter()
            .filter(|(w, _)| *w == what)
            .map(|(_, ms)| *ms)
            .collect();
        these.sort_by(f64::total_cmp);
        println!(
            "load:   {what}: {} requests, p99 {:.1} ms",
            these.len(),
            percentile(&these, 99.0)
        );
    }

    assert!(
        all.failures.is_empty(),
        "{} failed requests, e.g. {:?}",
        all.failures.len(),
        &all.failures[..all.failures.len().min(10)]
    );
    assert!(all.toggles > 0, "the sessions toggled");
    let after = app.state.db.run(|c| changelog::count(c)).await.unwrap();
    assert_eq!(
        toggle_entries(&app).await - toggles_before,
        all.toggles,
        "one changelog entry per acknowledged toggle"
    );
    assert_eq!(
        (after - before) as usize,
        all.toggles,
        "and nothing else changed"
    );
    for (id, agent) in [(a, &agent_a), (b, &agent_b)] {
        eventually(10, "the agent runs the database's render", || async {
            agent_runs_db(&app, id, agent).await
        })
        .await;
    }
    // And Caddy serves exactly the sites the database has switched on.
    let sites = app
        .state
        .db
        .run(|c| gatehouse::db::vhosts::list(c, &Default::default()))
        .await
        .unwrap();
    for v in sites {
        let host = v.domain.trim_start_matches("http://");
        let (_, body) = caddy_a.get(host, "/").await;
        assert_eq!(
            body == "up",
            v.enabled,
            "{host}: Caddy and the database agree"
        );
    }
    let owners = app.state.db.run(|c| users::list(c)).await.unwrap().len();
    assert_eq!(owners, sessions + 1);
}

async fn toggle_entries(app: &common::TestApp) -> usize {
    app.state
        .db
        .run(|c| {
            changelog::list(
                c,
                &changelog::Filter {
                    limit: 1_000_000,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "toggle")
        .count()
}
