//! Plan before apply: `?dry_run=1` on a change answers what each agent's Caddyfile would
//! become, stores and pushes nothing, and the plan is exactly what each agent then runs.

use crate::common::api::{Api, make_token};
use crate::common::caddy::Caddy;
use crate::common::fleet::{
    AgentProc, add_agent, eventually, hub, post_owned, proxy_site, proxy_site_form, upstream,
};
use crate::common::{ADMIN_PASSWORD, Page, TestApp, USER_PASSWORD, signed_in_user};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The plan's entry for agent `name`.
fn entry<'a>(plan: &'a Value, name: &str) -> &'a Value {
    plan["plan"]
        .as_array()
        .expect("a plan lists the agents")
        .iter()
        .find(|p| p["agent"] == name)
        .unwrap_or_else(|| panic!("{name} is in the plan: {plan}"))
}

/// What the agent reports running.
async fn running(agent: &AgentProc) -> String {
    agent.health().await["applied_hash"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Waits until each agent reports running the hash the plan gave it.
async fn runs_the_plan(plan: &Value, agents: [(&str, &AgentProc); 2]) {
    for (name, agent) in agents {
        let want = entry(plan, name)["after_hash"]
            .as_str()
            .unwrap()
            .to_string();
        eventually(20, &format!("{name} runs its plan"), || {
            let want = want.clone();
            async move { running(agent).await == want }
        })
        .await;
    }
}

/// A hub with two agents, edge-1 and edge-2, each in front of its own Caddy.
struct Fleet {
    app: TestApp,
    caddy_1: Caddy,
    /// Kept running for edge-2.
    _caddy_2: Caddy,
    edge_1: AgentProc,
    edge_2: AgentProc,
    id_1: i64,
}

async fn fleet() -> Fleet {
    let (caddy_1, caddy_2) = (Caddy::start().await, Caddy::start().await);
    let (edge_1, edge_2) = (
        AgentProc::start(&caddy_1).await,
        AgentProc::start(&caddy_2).await,
    );
    let app = hub(|_| {}).await;
    let id_1 = add_agent(&app, "edge-1", &edge_1).await;
    add_agent(&app, "edge-2", &edge_2).await;
    Fleet {
        app,
        caddy_1,
        _caddy_2: caddy_2,
        edge_1,
        edge_2,
        id_1,
    }
}

/// Waits until each agent reports running the hash its `.agent-plan` in `page` carries.
async fn runs_the_shown_plan(page: &Page, scope: &str, agents: [(&str, &AgentProc); 2]) {
    for (name, agent) in agents {
        let want = page
            .attr(
                &format!("{scope}.agent-plan[data-agent='{name}']"),
                "data-after-hash",
            )
            .expect("each agent's plan carries its hash");
        eventually(20, &format!("{name} runs its plan"), || {
            let want = want.clone();
            async move { running(agent).await == want }
        })
        .await;
    }
}

async fn site_count(app: &TestApp) -> usize {
    app.state
        .db
        .run(|c| gatehouse::db::vhosts::list(c, &Default::default()))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_dry_run_plans_per_agent_changes_nothing_and_is_what_each_agent_then_runs() {
    let Fleet {
        app,
        caddy_1,
        edge_1,
        edge_2,
        id_1,
        ..
    } = fleet().await;
    let (old, new) = (upstream("old backend").await, upstream("new backend").await);
    let token = make_token(&app, ADMIN_PASSWORD, "ci", "write").await;
    let api = Api::new(app.addr, Some(&token));
    let host = format!("plan.localhost:{}", caddy_1.http_port);
    let site = json!({
        "domain": format!("http://{host}"),
        "template": "raw",
        "config": format!("bind 127.0.0.1\nreverse_proxy {old}"),
        "agent_ids": [id_1],
    });
    let (before_1, before_2) = (running(&edge_1).await, running(&edge_2).await);

    // A new site, planned: only edge-1 serves it, so only edge-1's Caddyfile changes.
    let planned = api.post("/api/v1/vhosts?dry_run=1", site.clone()).await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    assert_eq!(planned.json["dry_run"], true);
    let diff = entry(&planned.json, "edge-1")["diff"].as_str().unwrap();
    assert_eq!(entry(&planned.json, "edge-1")["changed"], true);
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains(&host)),
        "the new site block is added on edge-1:\n{diff}"
    );
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains(&format!("reverse_proxy {old}"))),
        "{diff}"
    );
    assert_eq!(entry(&planned.json, "edge-2")["changed"], false);
    assert_eq!(entry(&planned.json, "edge-2")["diff"], "");
    assert_eq!(site_count(&app).await, 0, "a plan stores nothing");
    assert_eq!(running(&edge_1).await, before_1, "and pushes nothing");
    assert_eq!(running(&edge_2).await, before_2);

    let created = api.post("/api/v1/vhosts", site).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    runs_the_plan(&planned.json, [("edge-1", &edge_1), ("edge-2", &edge_2)]).await;
    assert_eq!(caddy_1.get(&host, "/").await, (200, "old backend".into()));
    let id = created.json["id"].as_i64().unwrap();

    // An edit, planned: the old upstream line goes, the new one comes, on edge-1 only.
    let edit = json!({ "config": format!("bind 127.0.0.1\nreverse_proxy {new}") });
    let path = format!("/api/v1/vhosts/{id}");
    let planned = api.patch(&format!("{path}?dry_run=1"), edit.clone()).await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    let diff = entry(&planned.json, "edge-1")["diff"].as_str().unwrap();
    let removed: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
        .collect();
    let added: Vec<&str> = diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(removed.len(), 1, "{diff}");
    assert!(
        removed[0].contains(&format!("reverse_proxy {old}")),
        "{diff}"
    );
    assert_eq!(added.len(), 1, "{diff}");
    assert!(added[0].contains(&format!("reverse_proxy {new}")), "{diff}");
    assert_eq!(entry(&planned.json, "edge-2")["changed"], false);
    let stored = api.get(&path).await;
    assert!(
        stored.json["config"]
            .as_str()
            .unwrap()
            .contains(&old.to_string()),
        "the plan changed nothing: {}",
        stored.body
    );
    assert_eq!(caddy_1.get(&host, "/").await, (200, "old backend".into()));

    let changed = api.patch(&path, edit).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    runs_the_plan(&planned.json, [("edge-1", &edge_1), ("edge-2", &edge_2)]).await;
    assert_eq!(caddy_1.get(&host, "/").await, (200, "new backend".into()));

    // Toggle and delete plan too; a plan of a refused change is refused as the change is.
    let off = api
        .post(&format!("{path}/toggle?dry_run=1"), json!({}))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(entry(&off.json, "edge-1")["changed"], true);
    let gone = api.delete(&format!("{path}?dry_run=1")).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert_eq!(site_count(&app).await, 1, "still there");
    assert_eq!(caddy_1.get(&host, "/").await, (200, "new backend".into()));
    let taken = api
        .post(
            "/api/v1/vhosts?dry_run=1",
            json!({"domain": format!("http://{host}"), "template": "raw", "config": "respond ok"}),
        )
        .await;
    assert_eq!(
        taken.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        taken.body
    );
    assert!(
        taken.json["error"]["fields"]["domain"].is_string(),
        "{}",
        taken.body
    );
    let bogus = api
        .post(&format!("{path}/toggle?dry_run=maybe"), json!({}))
        .await;
    assert_eq!(bogus.status, StatusCode::BAD_REQUEST, "{}", bogus.body);
    assert_eq!(site_count(&app).await, 1);
}

#[tokio::test]
async fn the_site_form_shows_each_agents_changes_before_saving_and_they_are_what_the_agents_run() {
    let Fleet {
        app,
        caddy_1,
        edge_1,
        edge_2,
        id_1,
        ..
    } = fleet().await;
    let (old, new) = (upstream("old backend").await, upstream("new backend").await);
    let created = proxy_site(&app, "form", &caddy_1, old, &[id_1]).await;
    assert!(
        created.status.is_success() || created.status.is_redirection(),
        "{}",
        created.body
    );
    let id = site_id(&app).await;
    let before_1 = running(&edge_1).await;

    let editor = app.get(&format!("/vhosts/{id}/edit")).await;
    assert_eq!(
        editor.count("#plan-button[hx-post='/vhosts/plan'][hx-include='#vhost-form']"),
        1,
        "the editor offers the plan"
    );

    // The edit form as it would be saved, with the new upstream.
    let mut form = proxy_site_form("form", caddy_1.http_port, new, &[id_1]);
    form.push(("vhost_id".into(), id.to_string()));
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let plan = app.post_htmx("/vhosts/plan", &fields).await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    let edge_1_plan = ".agent-plan[data-agent='edge-1']";
    let removed = plan.texts(&format!("{edge_1_plan} .diff .del"));
    let added = plan.texts(&format!("{edge_1_plan} .diff .add"));
    assert_eq!(removed.len(), 1, "{}", plan.body);
    assert!(
        removed[0].contains(&format!("reverse_proxy {old}")),
        "{removed:?}"
    );
    assert_eq!(added.len(), 1, "{}", plan.body);
    assert!(
        added[0].contains(&format!("reverse_proxy {new}")),
        "{added:?}"
    );
    assert_eq!(plan.count(".agent-plan[data-agent='edge-2'] .no-change"), 1);
    assert_eq!(plan.count(".agent-plan[data-agent='edge-2'] .diff"), 0);
    assert_eq!(
        running(&edge_1).await,
        before_1,
        "showing the plan pushes nothing"
    );
    assert_eq!(
        caddy_1
            .get(&format!("form.localhost:{}", caddy_1.http_port), "/")
            .await
            .1,
        "old backend"
    );

    // Saved as planned: each agent runs exactly what its plan said.
    let saved = post_owned(&app, &format!("/vhosts/{id}"), &form).await;
    assert!(
        saved.status.is_success() || saved.status.is_redirection(),
        "{}",
        saved.body
    );
    runs_the_shown_plan(&plan, "", [("edge-1", &edge_1), ("edge-2", &edge_2)]).await;

    // A plan the save would refuse says why, beside nothing else.
    let taken = app
        .post_htmx(
            "/vhosts/plan",
            &[
                ("domain", "bad domain"),
                ("template", "raw"),
                ("config", "respond ok"),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.body);
    assert_eq!(
        taken.count("#plan-errors li[data-field='domain']"),
        1,
        "{}",
        taken.body
    );
    assert_eq!(taken.count(".agent-plan"), 0);
}

async fn site_id(app: &TestApp) -> i64 {
    app.state
        .db
        .run(|c| gatehouse::db::vhosts::list(c, &Default::default()))
        .await
        .unwrap()[0]
        .id
}

#[tokio::test]
async fn an_import_preview_shows_each_agents_changes_and_they_are_what_the_agents_then_run() {
    let Fleet {
        app,
        caddy_1,
        edge_1,
        edge_2,
        id_1,
        ..
    } = fleet().await;
    let host = format!("imported.localhost:{}", caddy_1.http_port);
    let caddyfile = format!("http://{host} {{\n\tbind 127.0.0.1\n\trespond \"imported\"\n}}\n");
    let agent = id_1.to_string();
    let before_1 = running(&edge_1).await;

    // Imported onto edge-1 only: its Caddyfile gains the block, edge-2's does not change.
    let preview = app
        .post_form(
            "/import/preview",
            &[("caddyfile", caddyfile.as_str()), ("agent", agent.as_str())],
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    let added = preview.texts("#import-agents .agent-plan[data-agent='edge-1'] .diff .add");
    assert!(
        added.iter().any(|l| l.contains(&host))
            && added.iter().any(|l| l.contains("respond \"imported\"")),
        "{added:?}"
    );
    assert_eq!(
        preview.count("#import-agents .agent-plan[data-agent='edge-1'] .diff .del"),
        0,
        "an import here only adds"
    );
    assert_eq!(
        preview.count("#import-agents .agent-plan[data-agent='edge-2'] .no-change"),
        1
    );
    assert_eq!(site_count(&app).await, 0, "a preview stores nothing");
    assert_eq!(running(&edge_1).await, before_1, "and pushes nothing");

    let fingerprint = preview
        .attr("#import-apply input[name=fingerprint]", "value")
        .expect("the confirm form carries the plan's fingerprint");
    let done = app
        .post_form(
            "/import",
            &[
                ("caddyfile", caddyfile.as_str()),
                ("agent", agent.as_str()),
                ("fingerprint", fingerprint.as_str()),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(
        done.attr("#import-result", "data-created").as_deref(),
        Some("1")
    );
    runs_the_shown_plan(
        &preview,
        "#import-agents ",
        [("edge-1", &edge_1), ("edge-2", &edge_2)],
    )
    .await;
    assert_eq!(caddy_1.get(&host, "/").await, (200, "imported".into()));
}

#[tokio::test]
async fn only_an_admin_sees_a_plan_because_it_shows_other_owners_sites() {
    let Fleet { app, caddy_1, .. } = fleet().await;
    let backend = upstream("theirs").await;
    let (user, _) = signed_in_user(&app, "tenant@example.com").await;
    let editor = user.get("/vhosts/new").await;
    assert_eq!(editor.status, StatusCode::OK);
    assert_eq!(editor.count("#vhost-form"), 1);
    assert_eq!(editor.count("#plan-button"), 0, "no plan for a user");
    let form = proxy_site_form("tenant", caddy_1.http_port, backend, &[]);
    let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let asked = user.post_htmx("/vhosts/plan", &fields).await;
    assert_eq!(asked.status, StatusCode::FORBIDDEN, "{}", asked.body);
    let token = make_token(&user, USER_PASSWORD, "ci", "write").await;
    let api = Api::new(app.addr, Some(&token));
    let planned = api
        .post(
            "/api/v1/vhosts?dry_run=1",
            json!({"domain": "tenant.example.com", "template": "raw", "config": "respond ok"}),
        )
        .await;
    assert_eq!(planned.status, StatusCode::FORBIDDEN, "{}", planned.body);
    assert_eq!(planned.json["error"]["code"], "forbidden");
    assert!(planned.json.get("plan").is_none());
    assert_eq!(site_count(&app).await, 0);
}

#[tokio::test]
async fn a_revert_shows_each_agents_changes_first_and_they_are_what_the_agents_then_run() {
    let Fleet {
        app,
        caddy_1,
        edge_1,
        edge_2,
        id_1,
        ..
    } = fleet().await;
    let (old, new) = (upstream("old backend").await, upstream("new backend").await);
    let token = make_token(&app, ADMIN_PASSWORD, "ci", "write").await;
    let api = Api::new(app.addr, Some(&token));
    let host = format!("revert.localhost:{}", caddy_1.http_port);
    let created = api
        .post(
            "/api/v1/vhosts",
            json!({
                "domain": format!("http://{host}"),
                "template": "raw",
                "config": format!("bind 127.0.0.1\nreverse_proxy {old}"),
                "agent_ids": [id_1],
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.json["id"].as_i64().unwrap();
    let edit = json!({ "config": format!("bind 127.0.0.1\nreverse_proxy {new}") });
    let changed = api.patch(&format!("/api/v1/vhosts/{id}"), edit).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    eventually(20, "edge-1 serves the edit", || async {
        caddy_1.get(&host, "/").await == (200, "new backend".into())
    })
    .await;
    let log = api.get("/api/v1/changelog").await;
    let update = log.json["changelog"][0]["id"].as_i64().unwrap();
    let create = log.json["changelog"][1]["id"].as_i64().unwrap();
    let before_1 = running(&edge_1).await;

    // The change's page offers the plan; the plan puts the old upstream back on edge-1 only.
    let page = app.get(&format!("/changelog/{update}")).await;
    assert_eq!(
        page.count(&format!(
            "form[hx-post='/changelog/{update}/plan'] #plan-button"
        )),
        1,
        "{}",
        page.body
    );
    let plan = app
        .post_htmx(&format!("/changelog/{update}/plan"), &[])
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    let removed = plan.texts(".agent-plan[data-agent='edge-1'] .diff .del");
    let added = plan.texts(".agent-plan[data-agent='edge-1'] .diff .add");
    assert_eq!(removed.len(), 1, "{}", plan.body);
    assert!(
        removed[0].contains(&format!("reverse_proxy {new}")),
        "{removed:?}"
    );
    assert_eq!(added.len(), 1, "{}", plan.body);
    assert!(
        added[0].contains(&format!("reverse_proxy {old}")),
        "{added:?}"
    );
    assert_eq!(plan.count(".agent-plan[data-agent='edge-2'] .no-change"), 1);

    // The API's dry run says the same, and neither stored nor pushed anything.
    let planned = api
        .post(
            &format!("/api/v1/changelog/{update}/revert?dry_run=1"),
            json!({}),
        )
        .await;
    assert_eq!(planned.status, StatusCode::OK, "{}", planned.body);
    assert_eq!(
        entry(&planned.json, "edge-1")["after_hash"].as_str(),
        plan.attr(".agent-plan[data-agent='edge-1']", "data-after-hash")
            .as_deref()
    );
    assert_eq!(running(&edge_1).await, before_1, "a plan pushes nothing");
    assert_eq!(caddy_1.get(&host, "/").await, (200, "new backend".into()));
    let log = api.get("/api/v1/changelog").await;
    assert_eq!(
        log.json["changelog"][0]["id"], update,
        "and records nothing"
    );

    // A user may neither revert nor plan one.
    let (user, _) = signed_in_user(&app, "tenant@example.com").await;
    let user_token = make_token(&user, USER_PASSWORD, "ci", "write").await;
    let as_user = Api::new(app.addr, Some(&user_token));
    let refused = as_user
        .post(
            &format!("/api/v1/changelog/{update}/revert?dry_run=1"),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let refused = user
        .post_htmx(&format!("/changelog/{update}/plan"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);

    // Reverted as planned: each agent runs exactly what its plan said.
    let reverted = api
        .post(&format!("/api/v1/changelog/{update}/revert"), json!({}))
        .await;
    assert_eq!(reverted.status, StatusCode::OK, "{}", reverted.body);
    assert_eq!(reverted.json["vhost"]["id"], id);
    runs_the_shown_plan(&plan, "", [("edge-1", &edge_1), ("edge-2", &edge_2)]).await;
    assert_eq!(caddy_1.get(&host, "/").await, (200, "old backend".into()));

    // A revert that would be refused says why in the plan, and plans nothing.
    let deleted = api.delete(&format!("/api/v1/vhosts/{id}")).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    let plan = app
        .post_htmx(&format!("/changelog/{create}/plan"), &[])
        .await;
    assert_eq!(plan.status, StatusCode::OK, "{}", plan.body);
    assert_eq!(plan.text("#plan-refusal"), "That site is already gone.");
    assert_eq!(plan.count(".agent-plan"), 0);
    let planned = api
        .post(
            &format!("/api/v1/changelog/{create}/revert?dry_run=1"),
            json!({}),
        )
        .await;
    assert_eq!(planned.status, StatusCode::CONFLICT, "{}", planned.body);
}

#[tokio::test]
async fn the_caddyfile_page_shows_each_agents_own_caddyfile_with_the_hash_it_reports() {
    // Before any agent: what one would get, said as such.
    let (empty, _) = crate::common::app_with_admin().await;
    let page = empty.get("/caddyfile").await;
    assert_eq!(page.count("#caddyfile #no-agents a[href='/agents']"), 1);
    assert_eq!(page.count(".agent-caddyfile"), 0);

    let Fleet {
        app,
        caddy_1,
        edge_1,
        edge_2,
        id_1,
        ..
    } = fleet().await;
    let backend = upstream("only on edge-1").await;
    let made = proxy_site(&app, "mine", &caddy_1, backend, &[id_1]).await;
    assert!(made.status.is_redirection(), "{}", made.body);
    for (name, agent) in [("edge-1", &edge_1), ("edge-2", &edge_2)] {
        let id = crate::common::fleet::agent_id(&app, name).await;
        eventually(
            20,
            &format!("{name} runs the database's render"),
            || async {
                running(agent).await == crate::common::fleet::expected_hash(&app, id).await
            },
        )
        .await;
    }
    let page = app.get("/caddyfile").await;
    for (name, agent, serves) in [("edge-1", &edge_1, true), ("edge-2", &edge_2, false)] {
        let scope = format!(".agent-caddyfile[data-agent='{name}']");
        // The hash shown is the one the agent itself reports running.
        assert_eq!(
            page.attr(&scope, "data-hash"),
            Some(running(agent).await),
            "{name}"
        );
        assert_eq!(page.count(&format!("{scope} .in-step")), 1, "{name}");
        let text = page.text(&format!("{scope} pre.caddyfile"));
        // Its own admin address, as the agent reported it.
        let admin = agent.health().await["caddy"]["admin"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            admin.contains(':'),
            "{name} reports its admin address: {admin}"
        );
        assert!(text.contains(&format!("admin {admin}")), "{name}: {text}");
        assert_eq!(
            text.contains(&format!("mine.localhost:{}", caddy_1.http_port)),
            serves,
            "{name}: {text}"
        );
    }
    let agents = app.get("/agents").await;
    assert_eq!(agents.count("a#caddyfiles-link[href='/caddyfile']"), 1);
}
