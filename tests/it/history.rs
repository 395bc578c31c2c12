//! Deployment history, with real Caddys, real agents and a real hub: each deploy's outcome
//! per agent (applied, unchanged, rejected, pending) on its changelog entry and on the
//! agent's page; a change made while an agent is offline shows as pending on the site's
//! row, its form and the dashboard until the agent is back and has caught up; a `user` sees
//! the outcomes of their own sites' deploys only.

use crate::common::api::{Api, make_token};
use crate::common::caddy::Caddy;
use crate::common::fleet::{
    TwoAgents, agent_runs_db, eventually, post_owned, proxy_site_form, two_agents, upstream,
};
use crate::common::{ADMIN_PASSWORD, Page, TestApp, Visitor, signed_in_user};
use reqwest::StatusCode;

/// A hub with two agents, edge-1 and edge-2, each in front of its own Caddy, both
/// contacted (so deploys push to them).
type Fleet = TwoAgents;

async fn fleet() -> Fleet {
    fleet_with(|_| {}).await
}

async fn fleet_with(configure: impl FnOnce(&mut gatehouse::config::Config)) -> Fleet {
    let caddys = (Caddy::start().await, Caddy::start().await);
    let f = two_agents(caddys, |c| {
        c.fleet.push_timeout_secs = 10;
        configure(c);
    })
    .await;
    for (id, agent) in [(f.id_1, &f.edge_1), (f.id_2, &f.edge_2)] {
        eventually(10, "the agent runs the database's config", || async {
            agent_runs_db(&f.app, id, agent).await
        })
        .await;
    }
    f
}

async fn site(f: &Fleet, who: &Visitor, name: &str, agents: &[i64], owner: Option<i64>) -> i64 {
    let backend = upstream("history").await;
    let mut form = proxy_site_form(name, f.port, backend, agents);
    if let Some(owner) = owner {
        form.push(("owner_id".into(), owner.to_string()));
    }
    let page = post_owned(who, "/vhosts", &form).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = page.header("location").unwrap_or_default().to_string();
    location
        .rsplit('=')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the new site's id in {location}"))
}

/// The newest changelog entry's id.
async fn last_entry(app: &TestApp) -> i64 {
    app.state
        .db
        .run(|c| {
            gatehouse::db::changelog::list(
                c,
                &gatehouse::db::changelog::Filter {
                    limit: 1,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()[0]
        .id
}

/// What the deploy of changelog entry `entry` did on `agent`, as the entry's page shows it:
/// the outcome and whether it is still pending.
fn outcome_on(page: &Page, entry: i64, agent: &str) -> (String, String) {
    let li =
        format!("article.change[data-change=\"{entry}\"] li.deploy-agent[data-agent=\"{agent}\"]");
    (
        page.attr(&li, "data-outcome")
            .unwrap_or_else(|| panic!("no outcome for {agent}:\n{}", page.body)),
        page.attr(&li, "data-still-pending").unwrap_or_default(),
    )
}

/// "pending on …" on site `id`'s row in the list.
async fn row_pending(who: &Visitor, id: i64) -> String {
    who.get("/vhosts")
        .await
        .texts(&format!("#vhost-{id} .vhost-pending"))
        .concat()
}

#[tokio::test]
async fn each_agents_outcome_is_recorded_on_the_changelog_entry_and_the_agent_page() {
    let f = fleet().await;
    let app = &f.app;

    // Served by both: applied on both.
    site(&f, app, "both", &[], None).await;
    let both = last_entry(app).await;
    let page = app.get(&format!("/changelog/{both}")).await;
    assert_eq!(outcome_on(&page, both, "edge-1").0, "applied");
    assert_eq!(outcome_on(&page, both, "edge-2").0, "applied");

    // Served by edge-1 only: edge-2 already runs what it should.
    site(&f, app, "one", &[f.id_1], None).await;
    let one = last_entry(app).await;
    let list = app.get("/changelog").await;
    assert_eq!(outcome_on(&list, one, "edge-1").0, "applied");
    assert_eq!(outcome_on(&list, one, "edge-2").0, "unchanged");

    // Refused by edge-1's Caddy: nothing committed, so no entry; the agent's page has it,
    // with Caddy's words.
    let backend = upstream("x").await;
    let mut bad = proxy_site_form("bad", f.port, backend, &[f.id_1]);
    bad[2].1 = "frobnicate on".into();
    let refused = post_owned(app, "/vhosts", &bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        last_entry(app).await,
        one,
        "a rejected change writes no entry"
    );
    let agent_page = app.get(&format!("/agents/{}", f.id_1)).await;
    assert_eq!(agent_page.status, StatusCode::OK, "{}", agent_page.body);
    let newest = "#agent-deploys tr.agent-deploy:first-child";
    assert_eq!(agent_page.attr(newest, "data-outcome").unwrap(), "rejected");
    assert_eq!(agent_page.attr(newest, "data-result").unwrap(), "rejected");
    assert!(
        agent_page
            .text(&format!("{newest} .deploy-message"))
            .contains("unrecognized directive: frobnicate"),
        "{}",
        agent_page.body
    );
    let outcomes = agent_page.texts("#agent-deploys tr.agent-deploy .deploy-sites");
    assert_eq!(
        outcomes.len(),
        3,
        "three deploys concerned edge-1: {outcomes:?}"
    );
    let edge_2 = app.get(&format!("/agents/{}", f.id_2)).await;
    let kinds: Vec<String> = edge_2
        .html()
        .select(&crate::common::selector("#agent-deploys tr.agent-deploy"))
        .map(|tr| tr.value().attr("data-outcome").unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["unchanged", "unchanged", "applied"]);
}

#[tokio::test]
async fn a_change_pending_on_an_offline_agent_shows_until_it_lands() {
    let mut f = fleet().await;
    let app = &f.app;
    let id = site(&f, app, "away", &[], None).await;
    let kept = site(&f, app, "kept", &[], None).await;
    let gone = site(&f, app, "gone", &[], None).await;
    let domain_of = |name: &str| format!("http://{name}.localhost:{}", f.port);
    assert_eq!(row_pending(app, id).await, "");

    // edge-2 goes away; a toggle reaches edge-1 only.
    f.edge_2.kill();
    let toggled = app.post_htmx(&format!("/vhosts/{id}/toggle"), &[]).await;
    assert_eq!(toggled.status, StatusCode::OK, "{}", toggled.body);
    assert_eq!(
        toggled.text(&format!("#vhost-{id} .vhost-pending")),
        "pending on edge-2",
        "the toggle's own answer says so"
    );
    let entry = last_entry(app).await;
    assert_eq!(row_pending(app, id).await, "pending on edge-2");
    let form = app.get(&format!("/vhosts/{id}/edit")).await;
    assert!(
        form.text("#vhost-pending").contains("pending on edge-2"),
        "{}",
        form.body
    );
    let home = app.get("/").await;
    let on_home = format!("li.pending-change[data-domain=\"{}\"]", domain_of("away"));
    assert!(
        home.text(&on_home).contains("pending on edge-2"),
        "{}",
        home.body
    );
    let page = app.get(&format!("/changelog/{entry}")).await;
    assert_eq!(outcome_on(&page, entry, "edge-1").0, "applied");
    assert_eq!(
        outcome_on(&page, entry, "edge-2"),
        ("pending".into(), "true".into())
    );

    // Switched off and on again while away: edge-2 already has it as it is.
    for _ in 0..2 {
        let page = app.post_htmx(&format!("/vhosts/{kept}/toggle"), &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    }
    assert_eq!(row_pending(app, kept).await, "", "back as edge-2 has it");
    // A delete shows on the dashboard.
    let deleted = app.post_form(&format!("/vhosts/{gone}/delete"), &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let home = app.get("/").await;
    let gone_row = format!("li.pending-change[data-domain=\"{}\"]", domain_of("gone"));
    assert_eq!(
        home.attr(&gone_row, "data-action").as_deref(),
        Some("delete")
    );
    assert_eq!(home.count("li.pending-change"), 2, "{}", home.body);

    // edge-2 comes back; the reconciler pushes the database's config, and it all clears.
    f.edge_2.restart().await;
    eventually(60, "edge-2 caught up", || async {
        agent_runs_db(app, f.id_2, &f.edge_2).await
    })
    .await;
    eventually(10, "the row is no longer pending", || async {
        row_pending(app, id).await.is_empty()
    })
    .await;
    let form = app.get(&format!("/vhosts/{id}/edit")).await;
    assert_eq!(form.count("#vhost-pending"), 0);
    assert_eq!(app.get("/").await.count("#pending-changes"), 0);
    let page = app.get(&format!("/changelog/{entry}")).await;
    assert_eq!(
        outcome_on(&page, entry, "edge-2"),
        ("pending".into(), "false".into()),
        "the history keeps what happened; it is no longer waiting"
    );
    assert!(agent_runs_db(app, f.id_1, &f.edge_1).await);
}

#[tokio::test]
async fn removing_an_agent_clears_what_was_pending_on_it() {
    let mut f = fleet().await;
    let app = &f.app;
    let id = site(&f, app, "left", &[], None).await;
    f.edge_2.kill();
    app.post_htmx(&format!("/vhosts/{id}/toggle"), &[]).await;
    assert_eq!(row_pending(app, id).await, "pending on edge-2");
    let removed = app
        .post_form(&format!("/agents/{}/delete", f.id_2), &[])
        .await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert_eq!(row_pending(app, id).await, "");
}

#[tokio::test]
async fn a_user_sees_only_their_own_sites_deploys() {
    let mut f = fleet().await;
    let app = &f.app;
    let (bob, bob_id) = signed_in_user(app, "bob@example.com").await;
    let (_alice, alice_id) = signed_in_user(app, "alice@example.com").await;
    let bobs = site(&f, app, "bobs", &[], Some(bob_id)).await;
    let bobs_entry = last_entry(app).await;
    let alices = site(&f, app, "alices", &[], Some(alice_id)).await;
    let alices_entry = last_entry(app).await;

    f.edge_2.kill();
    for id in [bobs, alices] {
        app.post_htmx(&format!("/vhosts/{id}/toggle"), &[]).await;
    }

    let changes = bob.get("/changelog").await;
    assert_eq!(outcome_on(&changes, bobs_entry, "edge-1").0, "applied");
    assert_eq!(
        changes.count(&format!("article.change[data-change=\"{alices_entry}\"]")),
        0
    );
    assert_eq!(
        changes.count(".deploy-message"),
        0,
        "the words are an admin's"
    );
    let home = bob.get("/").await;
    let pending: Vec<String> = home
        .html()
        .select(&crate::common::selector("li.pending-change"))
        .map(|li| li.value().attr("data-domain").unwrap().to_string())
        .collect();
    assert_eq!(pending, [format!("http://bobs.localhost:{}", f.port)]);
    assert_eq!(row_pending(&bob, bobs).await, "pending on edge-2");
    let page = bob.get(&format!("/agents/{}", f.id_1)).await;
    assert!(
        matches!(page.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
        "an agent's page is an admin's: {}",
        page.status
    );
    let page = bob.get(&format!("/changelog/{alices_entry}")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Polls the progress panel `page` stands for, as htmx does, until the change's own
/// answer replaces it; the answer, and whether a poll showed edge-1 done before the end.
async fn follow(app: &Visitor, page: Page) -> (Page, bool) {
    let token = page
        .attr(".deploy-progress", "data-deploy")
        .unwrap_or_else(|| panic!("a progress panel:\n{}", page.body));
    let mut edge_1_done = false;
    for _ in 0..120 {
        let poll = app.get_htmx(&format!("/deploys/{token}")).await;
        if poll.count(".deploy-progress") == 0 {
            return (poll, edge_1_done);
        }
        assert_eq!(poll.status, StatusCode::OK, "{}", poll.body);
        edge_1_done |= poll
            .attr("li.deploy-step[data-agent=\"edge-1\"]", "data-state")
            .is_some_and(|s| s == "applied");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("the deploy did not end within 30 s");
}

#[tokio::test]
async fn a_slow_deploy_shows_its_progress_instead_of_timing_out_and_ends_with_its_result() {
    // Requests time out after 5 s; a deploy waits for a frozen Caddy up to 10 s (its push is
    // given up after 10 s too): longer than any request may take.
    let f = fleet_with(|c| {
        c.security.request_timeout_secs = 5;
        c.fleet.deploy_wait_secs = 10;
    })
    .await;
    let app = &f.app;
    let id = site(&f, app, "slow", &[], None).await;
    let token = make_token(app, ADMIN_PASSWORD, "ci", "write").await;
    let api = Api::new(app.addr, Some(&token));

    // edge-2's Caddy is frozen: its reload hangs until the push is given up.
    let caddy_2 = f.caddys.1.pid();
    signal(caddy_2, "-STOP");
    let page = app.post_htmx(&format!("/vhosts/{id}/toggle"), &[]).await;
    assert_eq!(page.status, StatusCode::OK, "no 408: {}", page.body);
    assert_eq!(
        page.attr("li.deploy-step[data-agent=\"edge-2\"]", "data-state")
            .as_deref(),
        Some("pushing"),
        "{}",
        page.body
    );
    let (done, edge_1_first) = follow(app, page).await;
    assert!(
        edge_1_first,
        "edge-1 showed done while edge-2 was still pushing"
    );
    assert_eq!(
        done.attr(&format!("#vhost-{id}"), "data-enabled")
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        done.text(&format!("#vhost-{id} .vhost-pending")),
        "pending on edge-2",
        "the row, as the toggle answers it"
    );

    // A save Caddy refuses: the editor comes back with the refusal, as typed. (edge-2's push
    // from the toggle still hangs, so this deploy does not wait for edge-2 at all and
    // answers at once; were it slow, its progress would end the same way.)
    let backend = upstream("x").await;
    let mut bad = proxy_site_form("slow", f.port, backend, &[]);
    bad[2].1 = "frobnicate on".into();
    let fields: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let page = app.post_htmx(&format!("/vhosts/{id}"), &fields).await;
    let refused = if page.count(".deploy-progress") > 0 {
        follow(app, page).await.0
    } else {
        page
    };
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert!(
        refused
            .text("#vhost-editor #form-error")
            .contains("frobnicate"),
        "{}",
        refused.body
    );
    assert_eq!(
        refused.text("#config"),
        "frobnicate on",
        "the input is kept"
    );

    // Caddy thaws and edge-2 catches up; then it freezes again for the API.
    signal(caddy_2, "-CONT");
    eventually(60, "edge-2 caught up", || async {
        agent_runs_db(app, f.id_2, &f.edge_2).await
    })
    .await;
    signal(caddy_2, "-STOP");

    // The API answers 202 with where to follow the deploy, then the change's own answer.
    let accepted = api
        .post(
            &format!("/api/v1/vhosts/{id}/toggle"),
            serde_json::json!({}),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let follow_at = accepted.json["deploy"].as_str().unwrap().to_string();
    let mut answer = None;
    for _ in 0..120 {
        let now = api.get(&follow_at).await;
        if now.status != StatusCode::ACCEPTED {
            answer = Some(now);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let answer = answer.expect("the deploy ended within 30 s");
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json["enabled"], true);
    assert_eq!(
        api.get(&follow_at).await.status,
        StatusCode::NOT_FOUND,
        "given once"
    );

    signal(caddy_2, "-CONT");
    eventually(60, "edge-2 caught up", || async {
        agent_runs_db(app, f.id_2, &f.edge_2).await
    })
    .await;
}
