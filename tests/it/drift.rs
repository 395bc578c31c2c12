//! Drift from outside: a config loaded straight into Caddy's admin API (`POST /load`), not
//! through Gatehouse. Real Caddy 2.6.2, the real agent binary and a real hub on loopback: the
//! agent tells its own loads from someone else's by Caddy's `/config/`, the hub shows the
//! agent as "changed outside Gatehouse", audits each episode once, and the reconciler (or
//! "Sync now") loads the database's config again, also when the outside config moved
//! Caddy's admin API to its default address.

use crate::common::caddy::Caddy;
use crate::common::fleet::{
    AGENT_TOKEN, AgentProc, add_agent, agent_row, agent_runs_db, eventually, hub, proxy_site,
    upstream,
};
use crate::common::{Page, TestApp};
use gatehouse::db::{agents, audit, vhosts};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

/// Tests that move a Caddy's admin API to Caddy's default address (localhost:2019) take
/// turns: two Caddys cannot both listen there.
static DEFAULT_ADMIN_PORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const CHANGED_OUTSIDE: &str = "changed outside Gatehouse";

/// A client for Caddy's admin API as someone on the agent host would use it: no agent, no
/// token.
fn outsider() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `POST /load` straight to Caddy's admin API at `admin` (host:port).
async fn load_directly(admin: &str, caddyfile: &str) {
    let response = outsider()
        .post(format!("http://{admin}/load"))
        .header(reqwest::header::CONTENT_TYPE, "text/caddyfile")
        .body(caddyfile.to_string())
        .send()
        .await
        .expect("Caddy's admin API answers");
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "Caddy refused the outside load: {body}"
    );
}

/// A config of someone else's: one site of theirs on the test port, and the admin API kept
/// where it is (`keep_admin`) or left to Caddy's default.
fn rogue_caddyfile(caddy: &Caddy, keep_admin: bool) -> String {
    let admin = if keep_admin {
        format!("\tadmin {}\n", caddy.admin_addr())
    } else {
        String::new()
    };
    format!(
        "{{\n{admin}\tauto_https off\n}}\n\nhttp://rogue.localhost:{} {{\n\tbind 127.0.0.1\n\trespond \"rogue\" 200\n}}\n",
        caddy.http_port
    )
}

/// What `POST /caddy/reload` on the agent answers.
async fn reload_through_agent(agent: &AgentProc, caddyfile: &str) -> (StatusCode, Value) {
    let response = agent
        .probe()
        .post(format!("{}/caddy/reload", agent.url()))
        .bearer_auth(AGENT_TOKEN)
        .body(caddyfile.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// A fmt-clean Caddyfile for the agent tests: the admin address kept, one site answering
/// `body`.
fn own_caddyfile(caddy: &Caddy, body: &str) -> String {
    format!(
        "{{\n\tadmin {}\n\tauto_https off\n}}\n\nhttp://app.localhost:{} {{\n\tbind 127.0.0.1\n\trespond \"{body}\" 200\n}}\n",
        caddy.admin_addr(),
        caddy.http_port
    )
}

/// The audit entries of drift from outside, newest first.
async fn drift_audits(app: &TestApp) -> Vec<audit::Entry> {
    app.state
        .db
        .run(|c| {
            audit::list(
                c,
                Some(audit::Action::CaddyChangedOutside.as_str()),
                None,
                100,
            )
        })
        .await
        .unwrap()
}

/// The Caddyfile the hub renders for agent `id`.
async fn rendered(app: &TestApp, id: i64) -> String {
    let caddy = app.state.config.caddy.clone();
    app.state
        .db
        .run(move |c| {
            let agent = agents::find(c, id)?.expect("the agent exists");
            let all = vhosts::list(c, &vhosts::Filter::default())?;
            Ok(gatehouse::fleet::site_config::for_agent(&caddy, &agent, &all).0)
        })
        .await
        .unwrap()
}

/// Whether Caddy's running JSON is exactly what its own adapter makes of the hub's render
/// (compared as JSON values: key order and whitespace do not count).
async fn caddy_runs_the_render(app: &TestApp, id: i64, caddy: &Caddy) -> bool {
    let adapted: Value = outsider()
        .post(format!("{}/adapt", caddy.admin_url()))
        .header(reqwest::header::CONTENT_TYPE, "text/caddyfile")
        .body(rendered(app, id).await)
        .send()
        .await
        .expect("Caddy adapts the render")
        .json()
        .await
        .unwrap();
    caddy.admin_answers().await && caddy.running_config().await == adapted["result"]
}

/// A hub with one agent and one site it serves; returns the agent's id and the site's host.
async fn fleet_serving_one_site(app: &TestApp, caddy: &Caddy, agent: &AgentProc) -> (i64, String) {
    let id = add_agent(app, "edge-1", agent).await;
    let backend = upstream("served by the hub's config").await;
    let made = proxy_site(app, "app", caddy, backend, &[]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let host = format!("app.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await.1, "served by the hub's config");
    assert!(agent_runs_db(app, id, agent).await);
    (id, host)
}

fn row_state(page: &Page) -> Option<String> {
    page.attr("article.agent-row[data-agent=\"edge-1\"]", "data-state")
}

// --- The agent alone ---------------------------------------------------------------------

#[tokio::test]
async fn the_agent_reports_unknown_before_its_first_load_then_matches_then_changed_after_a_direct_load()
 {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;

    // Caddy runs its startup config, which this agent never loaded: not a change by anyone.
    assert_eq!(agent.health().await["running"], "unknown");

    let own = own_caddyfile(&caddy, "ours");
    let (status, body) = reload_through_agent(&agent, &own).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(agent.health().await["running"], "matches");

    // The same config loaded again from outside, formatted differently: Caddy runs the very
    // same JSON, so nothing changed.
    load_directly(
        &caddy.admin_addr().to_string(),
        &own.replace('\t', "    ").replace("\n\n", "\n\n\n"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(agent.health().await["running"], "matches");

    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, true),
    )
    .await;
    eventually(5, "the agent reports the config changed", || async {
        agent.health().await["running"] == "changed"
    })
    .await;
    let health = agent.health().await;
    assert_eq!(
        health["caddy"]["reachable"], true,
        "Caddy itself is fine: {health}"
    );
    assert!(
        health["applied_hash"].is_string(),
        "the hash of what the agent loaded stays: {health}"
    );

    // The agent's own next load is the new reference at once.
    let (status, _) = reload_through_agent(&agent, &own).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(agent.health().await["running"], "matches");
    let host = format!("app.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await.1, "ours");
}

#[tokio::test]
async fn after_a_restart_the_agent_says_unknown_until_it_loads_again() {
    let caddy = Caddy::start().await;
    let mut agent = AgentProc::start(&caddy).await;
    let own = own_caddyfile(&caddy, "ours");
    assert_eq!(reload_through_agent(&agent, &own).await.0, StatusCode::OK);
    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, true),
    )
    .await;

    // A new agent process has loaded nothing: what Caddy runs is nobody's doing it knows of.
    agent.restart().await;
    let health = agent.health().await;
    assert_eq!(health["running"], "unknown", "{health}");
    assert_eq!(health["applied_hash"], Value::Null, "{health}");

    assert_eq!(reload_through_agent(&agent, &own).await.0, StatusCode::OK);
    assert_eq!(agent.health().await["running"], "matches");
}

#[tokio::test]
async fn a_direct_load_that_moves_the_admin_api_is_reported_as_such_and_the_next_reload_moves_it_back()
 {
    let _turn = DEFAULT_ADMIN_PORT.lock().await;
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let own = own_caddyfile(&caddy, "ours");
    assert_eq!(reload_through_agent(&agent, &own).await.0, StatusCode::OK);

    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, false),
    )
    .await;
    let health = agent.health().await;
    assert_eq!(health["caddy"]["reachable"], false, "{health}");
    assert_eq!(health["running"], "admin_moved", "{health}");
    assert_eq!(health["caddy"]["moved_to"], "localhost:2019", "{health}");

    let (status, body) = reload_through_agent(&agent, &own).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        caddy.admin_answers().await,
        "the admin API is back where the agent looks for it"
    );
    let health = agent.health().await;
    assert_eq!(health["caddy"]["reachable"], true, "{health}");
    assert_eq!(health["running"], "matches", "{health}");
    assert_eq!(
        caddy
            .get(&format!("app.localhost:{}", caddy.http_port), "/")
            .await
            .1,
        "ours"
    );
}

// --- Hub, agent and Caddy ----------------------------------------------------------------

#[tokio::test]
async fn a_direct_load_is_noticed_audited_once_and_undone_by_the_reconciler() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|c| c.fleet.reconcile_interval_secs = 1).await;
    let (id, host) = fleet_serving_one_site(&app, &caddy, &agent).await;
    assert!(drift_audits(&app).await.is_empty());

    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, true),
    )
    .await;
    let rogue_host = format!("rogue.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&rogue_host, "/").await.1, "rogue");

    // Within a few reconcile intervals (the agent's look at Caddy is at most 2 s old).
    eventually(15, "the change from outside is audited", || async {
        !drift_audits(&app).await.is_empty()
    })
    .await;
    eventually(15, "the hub's config runs again", || async {
        caddy.get(&host, "/").await.1 == "served by the hub's config"
    })
    .await;
    eventually(10, "Caddy runs exactly the hub's render", || async {
        caddy_runs_the_render(&app, id, &caddy).await
    })
    .await;
    assert_ne!(caddy.get(&rogue_host, "/").await.1, "rogue");
    eventually(10, "the agent is in sync again", || async {
        agent_row(&app, "edge-1").await.0 == "in sync"
    })
    .await;
    assert_eq!(agent.health().await["running"], "matches");

    // Several more intervals: the episode is over and was audited once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let audits = drift_audits(&app).await;
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert!(
        audits[0].detail.contains("edge-1") && audits[0].detail.contains("outside Gatehouse"),
        "{}",
        audits[0].detail
    );
    assert_eq!(agent_row(&app, "edge-1").await.0, "in sync");
}

#[tokio::test]
async fn a_direct_load_shows_as_changed_outside_gatehouse_until_sync_now_puts_the_config_back() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    // A reconciler that only runs at start, so the state stays visible until "Sync now".
    let app = hub(|c| c.fleet.reconcile_interval_secs = 3600).await;
    let (id, host) = fleet_serving_one_site(&app, &caddy, &agent).await;

    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, true),
    )
    .await;
    eventually(5, "the agent sees the change", || async {
        agent.health().await["running"] == "changed"
    })
    .await;

    // "Test connection" asks the agent now; the applied hash alone would still say in sync.
    let tested = app.post_form(&format!("/agents/{id}/test"), &[]).await;
    assert_eq!(
        tested.attr("article.agent-row", "data-state").as_deref(),
        Some(CHANGED_OUTSIDE),
        "{}",
        tested.body
    );
    let page = app.get("/agents").await;
    assert_eq!(row_state(&page).as_deref(), Some(CHANGED_OUTSIDE));
    assert_eq!(
        page.count("article.agent-row[data-agent=\"edge-1\"] .agent-state.danger"),
        1
    );
    let why = page.text("article.agent-row[data-agent=\"edge-1\"] .agent-error");
    assert!(why.contains("outside Gatehouse"), "{why}");
    let home = app.get("/").await;
    assert_eq!(home.count("#fleet-warning"), 1);
    assert_eq!(
        home.attr("li.fleet-agent[data-agent=\"edge-1\"]", "data-state")
            .as_deref(),
        Some(CHANGED_OUTSIDE)
    );
    assert_ne!(
        caddy.get(&host, "/").await.1,
        "served by the hub's config",
        "the rogue config runs"
    );

    // Asked again: the same episode, still one audit entry.
    app.post_form(&format!("/agents/{id}/test"), &[]).await;
    assert_eq!(drift_audits(&app).await.len(), 1);

    let synced = app.post_form(&format!("/agents/{id}/sync"), &[]).await;
    assert_eq!(synced.status, StatusCode::SEE_OTHER, "{}", synced.body);
    assert_eq!(caddy.get(&host, "/").await.1, "served by the hub's config");
    assert!(caddy_runs_the_render(&app, id, &caddy).await);
    assert_eq!(
        row_state(&app.get("/agents").await).as_deref(),
        Some("in sync")
    );
    assert_eq!(agent.health().await["running"], "matches");
    assert_eq!(drift_audits(&app).await.len(), 1);

    // A second outside load is a new episode, audited again.
    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, true),
    )
    .await;
    eventually(5, "the agent sees the second change", || async {
        agent.health().await["running"] == "changed"
    })
    .await;
    app.post_form(&format!("/agents/{id}/sync"), &[]).await;
    assert_eq!(drift_audits(&app).await.len(), 2);
    assert_eq!(caddy.get(&host, "/").await.1, "served by the hub's config");
}

#[tokio::test]
async fn a_direct_load_without_the_admin_option_is_noticed_and_undone_by_the_reconciler() {
    let _turn = DEFAULT_ADMIN_PORT.lock().await;
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|c| c.fleet.reconcile_interval_secs = 1).await;
    let (id, host) = fleet_serving_one_site(&app, &caddy, &agent).await;

    load_directly(
        &caddy.admin_addr().to_string(),
        &rogue_caddyfile(&caddy, false),
    )
    .await;
    assert!(
        !caddy.admin_answers().await,
        "Caddy's admin API moved away from its address"
    );

    eventually(15, "the hub's config runs again", || async {
        caddy.get(&host, "/").await.1 == "served by the hub's config"
    })
    .await;
    eventually(10, "Caddy runs exactly the hub's render", || async {
        caddy_runs_the_render(&app, id, &caddy).await
    })
    .await;
    eventually(10, "the agent is in sync again", || async {
        agent_row(&app, "edge-1").await.0 == "in sync"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let audits = drift_audits(&app).await;
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert!(
        audits[0]
            .detail
            .contains("moved Caddy's admin API to localhost:2019"),
        "{}",
        audits[0].detail
    );
}
