//! Agents and deploy with real Caddy processes, real agent processes and real HTTP between
//! hub and agent, each test on its own loopback ports: serving, rollback on rejection, an
//! offline agent catching up, drift, concurrency, and Caddy's own validation in the preview.

use crate::common;
use crate::common::location;

use crate::common::TestApp;
use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, eventually, hub, proxy_site, upstream};
use gatehouse::db::{agents, changelog, vhosts};
use gatehouse::fleet::site_config;
use reqwest::StatusCode;

fn created_id(page: &common::Page) -> i64 {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    location(page).split('=').nth(1).unwrap().parse().unwrap()
}

/// What the hub's database says agent `id` must run.
async fn expected_hash(app: &TestApp, id: i64) -> String {
    let caddy = app.state.config.caddy.clone();
    app.state
        .db
        .run(move |c| {
            let agent = agents::find(c, id)?.unwrap();
            let all = vhosts::list(c, &vhosts::Filter::default())?;
            Ok(site_config::for_agent(&caddy, &agent, &all).1)
        })
        .await
        .unwrap()
}

async fn agent_runs_db(app: &TestApp, id: i64, agent: &AgentProc) -> bool {
    let expected = expected_hash(app, id).await;
    agent.health().await["applied_hash"].as_str() == Some(expected.as_str())
}

#[tokio::test]
async fn a_site_made_in_the_portal_is_served_by_caddy_until_it_is_switched_off() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("hello from the upstream").await;

    let vhost = created_id(&proxy_site(&app, "app", &caddy, backend, &[]).await);
    let host = format!("app.localhost:{}", caddy.http_port);
    assert_eq!(
        caddy.get(&host, "/").await,
        (200, "hello from the upstream".into())
    );
    assert!(
        agent_runs_db(&app, id, &agent).await,
        "the agent runs exactly the database's render"
    );
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr("article.agent-row[data-agent=edge-1]", "data-state")
            .as_deref(),
        Some("in sync")
    );
    let hint = page.text("#token-hint");
    assert!(
        !hint.is_empty() && !hint.contains('`'),
        "hints are prose, not markdown: {hint}"
    );

    let off = app.post_form(&format!("/vhosts/{vhost}/toggle"), &[]).await;
    assert_eq!(location(&off), "/vhosts");
    let (status, _) = caddy.get(&host, "/").await;
    assert_ne!(status, 200, "Caddy no longer serves a disabled site");
    assert!(agent_runs_db(&app, id, &agent).await);
}

#[tokio::test]
async fn a_change_one_caddy_rejects_changes_nothing_anywhere() {
    // Two Caddys on one host share 127.0.0.1 ports (SO_REUSEPORT), so each binds its own
    // loopback address through `{$GH_BIND}`; a port held on B's address is in use there only.
    let caddy_a = Caddy::start_with_env(&[("GH_BIND", "127.0.0.1")]).await;
    let caddy_b = Caddy::start_with_env(&[("GH_BIND", "127.0.0.2")]).await;
    let held = std::net::TcpListener::bind("127.0.0.2:0").expect("127.0.0.2 is loopback");
    let port = held.local_addr().unwrap().port();
    let agent_a = AgentProc::start(&caddy_a).await;
    let agent_b = AgentProc::start(&caddy_b).await;
    let app = hub(|_| {}).await;
    let a = add_agent(&app, "edge-a", &agent_a).await;
    let b = add_agent(&app, "edge-b", &agent_b).await;
    let backend = upstream("old config").await;
    created_id(&proxy_site(&app, "one", &caddy_a, backend, &[a]).await);
    let before = app
        .state
        .db
        .run(|c| vhosts::list(c, &Default::default()))
        .await
        .unwrap();
    let entries = app.state.db.run(|c| changelog::count(c)).await.unwrap();
    let hash_b = agent_b.health().await["applied_hash"].clone();

    let domain = format!("http://both.localhost:{port}");
    let config = format!("bind {{$GH_BIND}}\nreverse_proxy {backend}");
    let refused = app
        .post_form(
            "/vhosts",
            &[
                ("domain", domain.as_str()),
                ("template", "raw"),
                ("config", config.as_str()),
                ("enabled", "on"),
                ("serve_on", "chosen"),
                (&format!("agent_{a}"), "on"),
                (&format!("agent_{b}"), "on"),
            ],
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    let message = refused.text("#form-error");
    assert!(message.contains("edge-b"), "names the agent: {message}");
    assert!(
        message.contains("address already in use"),
        "Caddy's own words: {message}"
    );
    assert_eq!(
        refused.attr("#domain", "value").as_deref(),
        Some(domain.as_str()),
        "the input is kept"
    );
    assert!(refused.text("#config").contains("reverse_proxy"));
    // The preview beside it agrees with the refusal instead of calling the block valid.
    assert_eq!(
        refused.text("#preview #preview-status"),
        "Caddy on edge-b refuses this:"
    );
    assert!(
        refused
            .text("#preview #caddy-error")
            .contains("address already in use")
    );

    let after = app
        .state
        .db
        .run(|c| vhosts::list(c, &Default::default()))
        .await
        .unwrap();
    assert_eq!(after, before, "the database is unchanged");
    assert_eq!(
        app.state.db.run(|c| changelog::count(c)).await.unwrap(),
        entries
    );
    let one = format!("one.localhost:{}", caddy_a.http_port);
    assert_eq!(
        caddy_a.get(&one, "/").await,
        (200, "old config".into()),
        "A still serves its old site"
    );
    let on_a = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("Host", format!("both.localhost:{port}"))
        .send()
        .await;
    assert!(
        on_a.is_err(),
        "A took the new config and was given the old one back"
    );
    assert_eq!(
        agent_b.health().await["applied_hash"],
        hash_b,
        "B still runs what it ran"
    );
    assert!(
        agent_runs_db(&app, a, &agent_a).await,
        "A runs exactly the database's render again"
    );
    drop(held);
}

#[tokio::test]
async fn an_agent_that_was_away_catches_up_and_drift_clears() {
    let caddy = Caddy::start().await;
    let mut agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("served").await;

    agent.kill();
    let made = proxy_site(&app, "late", &caddy, backend, &[]).await;
    created_id(&made);
    let host = format!("late.localhost:{}", caddy.http_port);
    assert_ne!(caddy.get(&host, "/").await.0, 200, "nobody told Caddy yet");
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr("article.agent-row[data-agent=edge-1]", "data-state")
            .as_deref(),
        Some("offline")
    );
    assert_eq!(
        app.get("/").await.count("#fleet-warning"),
        1,
        "the dashboard warns"
    );

    agent.restart().await;
    eventually(
        20,
        "Caddy serves the change made while the agent was away",
        || async { caddy.get(&host, "/").await.0 == 200 },
    )
    .await;
    eventually(5, "the agent is in sync", || async {
        agent_runs_db(&app, id, &agent).await
    })
    .await;
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr("article.agent-row[data-agent=edge-1]", "data-state")
            .as_deref(),
        Some("in sync")
    );
}

#[tokio::test]
async fn drift_shows_and_sync_now_fixes_it() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    // A slow reconciler, so the drift stays visible until "sync now".
    let app = hub(|c| c.fleet.reconcile_interval_secs = 3600).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    created_id(&proxy_site(&app, "keep", &caddy, upstream("db").await, &[]).await);

    // Someone loads another config behind the hub's back.
    let rogue = format!("{{\n\tadmin {}\n}}\n", caddy.admin_addr());
    let pushed = reqwest::Client::new()
        .post(format!("{}/caddy/reload", agent.url()))
        .bearer_auth(common::fleet::AGENT_TOKEN)
        .body(rogue)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);

    let tested = app.post_form(&format!("/agents/{id}/test"), &[]).await;
    assert_eq!(
        tested.attr("article.agent-row", "data-state").as_deref(),
        Some("drifted"),
        "{}",
        tested.body
    );
    assert_eq!(app.get("/").await.count("#fleet-warning"), 1);
    assert_ne!(
        caddy
            .get(&format!("keep.localhost:{}", caddy.http_port), "/")
            .await
            .0,
        200,
        "the rogue config runs"
    );

    let synced = app.post_form(&format!("/agents/{id}/sync"), &[]).await;
    assert_eq!(location(&synced), "/agents");
    assert!(
        agent_runs_db(&app, id, &agent).await,
        "sync now pushed the database's config back"
    );
    assert_eq!(
        caddy
            .get(&format!("keep.localhost:{}", caddy.http_port), "/")
            .await
            .0,
        200
    );
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr("article.agent-row[data-agent=edge-1]", "data-state")
            .as_deref(),
        Some("in sync")
    );
}

#[tokio::test]
async fn twenty_concurrent_toggles_from_two_sessions_leave_every_caddy_equal_to_the_database() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("up").await;
    let mut ids = Vec::new();
    for name in ["s1", "s2", "s3", "s4"] {
        ids.push(created_id(
            &proxy_site(&app, name, &caddy, backend, &[]).await,
        ));
    }
    let second = app.visitor();
    let second_admin = "second-admin@example.com";
    app.add_user(second_admin, gatehouse::domain::Role::Admin)
        .await;
    {
        assert_eq!(
            second
                .login(second_admin, common::USER_PASSWORD)
                .await
                .status,
            StatusCode::SEE_OTHER
        );
        let s = second.start_enrolment().await;
        second.confirm_enrolment(&common::totp_code(&s, 0)).await;
    }
    let before = app.state.db.run(|c| changelog::count(c)).await.unwrap();

    let toggles = (0..20).map(|i| {
        let who = if i % 2 == 0 {
            (*app).clone()
        } else {
            second.clone()
        };
        let vhost = ids[i % ids.len()];
        async move {
            who.post_form(&format!("/vhosts/{vhost}/toggle"), &[])
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(toggles).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::SEE_OTHER),
        "{statuses:?}"
    );

    let after = app.state.db.run(|c| changelog::count(c)).await.unwrap();
    assert_eq!(after - before, 20, "the changelog holds all 20");
    assert!(
        agent_runs_db(&app, id, &agent).await,
        "Caddy runs exactly the database's render"
    );
    let all = app
        .state
        .db
        .run(|c| vhosts::list(c, &Default::default()))
        .await
        .unwrap();
    for v in all {
        let host = v.domain.trim_start_matches("http://").to_string();
        let served = caddy.get(&host, "/").await.0 == 200;
        assert_eq!(served, v.enabled, "{host}: Caddy and the database agree");
    }
}

#[tokio::test]
async fn the_live_preview_shows_caddys_own_error() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    add_agent(&app, "edge-1", &agent).await;
    let domain = format!("http://p.localhost:{}", caddy.http_port);
    let bad = app
        .post_form(
            "/vhosts/preview",
            &[
                ("domain", &domain),
                ("template", "raw"),
                ("config", "frobnicate on"),
            ],
        )
        .await;
    assert!(
        bad.text("#caddy-error")
            .contains("unrecognized directive: frobnicate"),
        "{}",
        bad.body
    );
    assert!(bad.text("#preview-status").contains("edge-1"));
    let good = app
        .post_form(
            "/vhosts/preview",
            &[
                ("domain", &domain),
                ("template", "raw"),
                ("config", "respond ok"),
            ],
        )
        .await;
    assert!(
        good.text("#preview-status")
            .starts_with("Caddy accepts this"),
        "{}",
        good.text("#preview-status")
    );
    let (status, _) = caddy
        .get(&format!("p.localhost:{}", caddy.http_port), "/")
        .await;
    assert_ne!(status, 200, "validating loads nothing");
}

#[tokio::test]
async fn the_agents_page_never_shows_a_token_back() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    let id = add_agent(&app, "edge-1", &agent).await;
    for path in [
        "/agents".to_string(),
        format!("/agents/{id}/edit"),
        "/".to_string(),
    ] {
        let page = app.get(&path).await;
        assert!(
            !page.body.contains(common::fleet::AGENT_TOKEN),
            "{path} shows the token"
        );
    }
    let tested = app.post_form(&format!("/agents/{id}/test"), &[]).await;
    assert!(
        tested.text(".agent-outcome").starts_with("Connected."),
        "{}",
        tested.body
    );
    let refused = app
        .post_form(
            "/agents",
            &[("name", "edge-2"), ("url", "ftp://x"), ("token", "short")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!refused.text("#url-error").is_empty() && !refused.text("#token-error").is_empty());
    assert_eq!(
        refused.attr("#new-agent #name", "value").as_deref(),
        Some("edge-2")
    );
}
