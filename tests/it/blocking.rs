//! A hanging agent holds up only itself: a real hub, two real agents and two real Caddys,
//! one of which is frozen with SIGSTOP, so its agent still answers `/health` while every
//! reload through it hangs. Deploys to the other agent still answer within seconds, and the
//! frozen one catches up once it runs again. The bounds are generous correctness bounds; how
//! fast it really is belongs in the benchmarks.

use crate::common;
use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, agent_runs_db, eventually, hub, proxy_site};
use crate::common::{TestApp, signal};
use gatehouse::fleet::reconcile::{self, Sync};
use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// Far above the deploy wait (2 s) and far below the push timeout (60 s): a deploy that waited
/// for the frozen agent's push would take a minute.
const ANSWER_BOUND: Duration = Duration::from_secs(15);

/// A process frozen with SIGSTOP; SIGCONT when resumed or dropped, so a failing test never
/// leaves it frozen.
struct Frozen(Option<u32>);

impl Frozen {
    fn stop(pid: u32) -> Self {
        signal(pid, "-STOP");
        Self(Some(pid))
    }

    fn resume(mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, "-CONT");
        }
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            signal(pid, "-CONT");
        }
    }
}

/// Two agents in sync with a hub that waits 2 s for any one agent and gives a push 60 s.
async fn two_agents() -> (TestApp, [(Caddy, AgentProc, i64); 2]) {
    let app = hub(|c| {
        c.fleet.deploy_wait_secs = 2;
        c.fleet.push_timeout_secs = 60;
    })
    .await;
    let mut fleet = Vec::new();
    for name in ["edge-a", "edge-b"] {
        let caddy = Caddy::start().await;
        let agent = AgentProc::start(&caddy).await;
        let id = add_agent(&app, name, &agent).await;
        fleet.push((caddy, agent, id));
    }
    for (_, agent, id) in &fleet {
        eventually(20, "both agents run the database's render", || async {
            agent_runs_db(&app, *id, agent).await
        })
        .await;
    }
    let fleet: [_; 2] = fleet.try_into().ok().unwrap();
    (app, fleet)
}

/// Sends `request` and checks it answered within [`ANSWER_BOUND`].
async fn answers_in_bound<F: std::future::Future<Output = common::Page>>(
    what: &str,
    request: F,
) -> common::Page {
    let started = Instant::now();
    let page = tokio::time::timeout(ANSWER_BOUND, request)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_BOUND:?}"));
    assert!(started.elapsed() < ANSWER_BOUND, "{what}");
    page
}

fn created_id(page: &common::Page) -> i64 {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    common::location(page)
        .split('=')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_caddy_hanging_on_reload_delays_deploys_to_the_other_agent_by_seconds_only() {
    let (app, [(caddy_a, _agent_a, _), (caddy_b, agent_b, b)]) = two_agents().await;
    let backend = common::fleet::upstream("from the upstream").await;
    let frozen = Frozen::stop(caddy_b.pid());

    // Created for both agents: A serves it at once, B's push hangs and is left pending.
    let page = answers_in_bound(
        "a site created while edge-b's Caddy hangs",
        proxy_site(&app, "fresh", &caddy_a, backend, &[]),
    )
    .await;
    let site = created_id(&page);
    let host = format!("fresh.localhost:{}", caddy_a.http_port);
    assert_eq!(
        caddy_a.get(&host, "/").await,
        (200, "from the upstream".into()),
        "the healthy agent's Caddy serves the new site"
    );
    assert!(
        !agent_runs_db(&app, b, &agent_b).await,
        "edge-b has not loaded the change: its push still hangs"
    );

    // A second change, while the first push to edge-b still hangs, is not held up either.
    let page = answers_in_bound(
        "a toggle while an earlier push to edge-b still hangs",
        app.post_form(&format!("/vhosts/{site}/toggle"), &[]),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let (status, _) = caddy_a.get(&host, "/").await;
    assert_ne!(
        status, 200,
        "the healthy agent's Caddy no longer serves the site"
    );

    // Once its Caddy runs again, edge-b lands the hanging push and is caught up to the
    // committed state (the site switched off), which it had never been pushed.
    frozen.resume();
    eventually(60, "edge-b converges to the database", || async {
        agent_runs_db(&app, b, &agent_b).await
    })
    .await;
}

#[tokio::test]
async fn a_reconcile_push_hanging_on_one_agent_does_not_delay_a_deploy_to_the_other() {
    let (app, [(caddy_a, _agent_a, a), (caddy_b, mut agent_b, b)]) = two_agents().await;
    let backend = common::fleet::upstream("from the upstream").await;

    // A site for edge-b alone, made while its agent is down: committed, never pushed.
    agent_b.kill();
    created_id(&proxy_site(&app, "only-b", &caddy_b, backend, &[b]).await);
    let frozen = Frozen::stop(caddy_b.pid());
    agent_b.restart().await;

    // The reconciler asks `/health` first and does not push to an agent whose Caddy is
    // silent; a Caddy that hangs just after answering is what this stands for, so its push
    // is started directly, as the reconciler makes it once `/health` has answered.
    let reconcile = {
        let state = app.state.clone();
        tokio::spawn(async move {
            reconcile::catch_up(&state.db, &state.fleet, &state.config, b, false).await
        })
    };
    // Let the push reach the agent.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let page = answers_in_bound(
        "a site for edge-a while a reconcile push to edge-b hangs",
        proxy_site(&app, "only-a", &caddy_a, backend, &[a]),
    )
    .await;
    created_id(&page);
    assert_eq!(
        caddy_a
            .get(&format!("only-a.localhost:{}", caddy_a.http_port), "/")
            .await,
        (200, "from the upstream".into()),
        "the healthy agent's Caddy serves the new site"
    );
    assert!(
        !reconcile.is_finished(),
        "the reconcile push to edge-b was still hanging during the deploy"
    );

    frozen.resume();
    let outcome = tokio::time::timeout(Duration::from_secs(60), reconcile)
        .await
        .expect("the reconcile push ends once Caddy runs")
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Sync::Pushed);
    eventually(30, "edge-b runs the database's render", || async {
        agent_runs_db(&app, b, &agent_b).await
    })
    .await;
    assert_eq!(
        caddy_b
            .get(&format!("only-b.localhost:{}", caddy_b.http_port), "/")
            .await,
        (200, "from the upstream".into())
    );
}
