//! Agent labels and staged rollout, on real Caddys and real agents: under "canary first" a
//! change reaches the agents labelled `canary`, is probed through their Caddy, and only then
//! the rest; a change that makes the canary worse is undone everywhere with nothing saved.
//! Sites served by label are rendered only where the label is.

use crate::common::api::{Api, make_token};
use crate::common::caddy::Caddy;
use crate::common::fleet::{
    AgentProc, TwoAgents, agent_runs_db, eventually, hub, post_owned, two_agents, upstream,
};
use crate::common::{ADMIN_PASSWORD, TestApp, location};
use gatehouse::db::{changelog, vhosts};
use reqwest::StatusCode;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Two Caddys on one host share 127.0.0.1 ports (SO_REUSEPORT), so each binds its own
/// loopback address through `{$GH_BIND}`: edge-1 on 127.0.0.1, edge-2 on 127.0.0.2, both on
/// `port`.
type Fleet = TwoAgents;

async fn fleet() -> Fleet {
    let caddys = (
        Caddy::start_with_env(&[("GH_BIND", "127.0.0.1")]).await,
        Caddy::start_with_env(&[("GH_BIND", "127.0.0.2")]).await,
    );
    two_agents(caddys, |_| {}).await
}

fn status_is(got: StatusCode, want: StatusCode, body: &str) {
    assert_eq!(got, want, "{body}");
}

/// Waits until both agents run the database's render.
async fn both_run_db(f: &Fleet) {
    let app = &f.app;
    for (id, agent) in [(f.id_1, &f.edge_1), (f.id_2, &f.edge_2)] {
        eventually(20, "both agents run the database's render", || async move {
            agent_runs_db(app, id, agent).await
        })
        .await;
    }
}

/// What the Caddy bound on `ip` serves for `host` on `port` (status 0: no answer).
async fn served_on(ip: &str, port: u16, host: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    match client
        .get(format!("http://{ip}:{port}/"))
        .header(reqwest::header::HOST, host)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Sets an agent's labels on the agents page; returns the page.
async fn label(app: &TestApp, id: i64, labels: &str) -> crate::common::Page {
    app.post_form(&format!("/agents/{id}/labels"), &[("labels", labels)])
        .await
}

/// The site form of `domain` proxying to `to`, bound through `{$GH_BIND}`.
fn site_form(domain: &str, to: SocketAddr) -> Vec<(String, String)> {
    vec![
        ("domain".into(), domain.into()),
        ("template".into(), "raw".into()),
        (
            "config".into(),
            format!("bind {{$GH_BIND}}\nreverse_proxy {to}"),
        ),
        ("enabled".into(), "on".into()),
    ]
}

/// Turns on "canary first" with edge-1 as the canary, and creates `host` on both agents
/// proxying to `to`; waits until both run it. Returns the site's id.
async fn canary_first_with_site(f: &Fleet, host: &str, to: SocketAddr) -> i64 {
    let labelled = label(&f.app, f.id_1, "canary").await;
    status_is(labelled.status, StatusCode::SEE_OTHER, &labelled.body);
    let saved = f
        .app
        .post_form(
            "/settings/rollout",
            &[
                ("policy", "canary_first"),
                ("slow_factor", "3"),
                ("slow_floor_ms", "1000"),
            ],
        )
        .await;
    status_is(saved.status, StatusCode::SEE_OTHER, &saved.body);
    let settings = f.app.get(&location(&saved).replace("#rollout", "")).await;
    assert!(
        settings.attr("#rollout-notice", "role").is_some(),
        "{}",
        settings.body
    );
    assert!(
        settings
            .attr("input[name=policy][value=canary_first]", "checked")
            .is_some()
    );
    let created = post_owned(&f.app, "/vhosts", &site_form(&format!("http://{host}"), to)).await;
    status_is(created.status, StatusCode::SEE_OTHER, &created.body);
    both_run_db(f).await;
    let app = &f.app;
    assert_eq!(served_on("127.0.0.1", f.port, host).await.1, "old backend");
    assert_eq!(served_on("127.0.0.2", f.port, host).await.1, "old backend");
    app.state
        .db
        .run(|c| Ok(vhosts::list(c, &Default::default())?[0].id))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_change_that_makes_the_canary_answer_502_is_undone_everywhere_and_nothing_is_saved() {
    let f = fleet().await;
    let old = upstream("old backend").await;
    let host = format!("roll.localhost:{}", f.port);
    let id = canary_first_with_site(&f, &host, old).await;
    let stored = |app: &TestApp| {
        let db = app.state.db.clone();
        async move {
            db.run(|c| Ok((vhosts::list(c, &Default::default())?, changelog::count(c)?)))
                .await
                .unwrap()
        }
    };
    let before = stored(&f.app).await;
    let hash_2 = f.edge_2.health().await["applied_hash"].clone();

    // A dead upstream: Caddy takes the config, then answers 502.
    let dead: SocketAddr = format!("127.0.0.1:{}", crate::common::free_port())
        .parse()
        .unwrap();
    let form = site_form(&format!("http://{host}"), dead);
    let refused = post_owned(&f.app, &format!("/vhosts/{id}"), &form).await;
    status_is(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        &refused.body,
    );
    let seen = refused.text("#form-error");
    assert!(
        seen.contains(&format!(
            "canary edge-1: http://{host} answered 502, before: 200"
        )),
        "the person sees what the probe saw: {seen}"
    );
    assert!(
        refused.text("#config").contains(&dead.to_string()),
        "the input is kept"
    );

    assert_eq!(stored(&f.app).await, before, "site and changelog unchanged");
    assert_eq!(
        served_on("127.0.0.1", f.port, &host).await,
        (200, "old backend".into()),
        "the canary got its previous config back"
    );
    assert_eq!(
        served_on("127.0.0.2", f.port, &host).await,
        (200, "old backend".into())
    );
    assert_eq!(
        f.edge_2.health().await["applied_hash"],
        hash_2,
        "the rest never got the change"
    );
    assert!(agent_runs_db(&f.app, f.id_1, &f.edge_1).await);

    // The API says the same, as JSON.
    let token = make_token(&f.app, ADMIN_PASSWORD, "ci", "write").await;
    let api = Api::new(f.app.addr, Some(&token));
    let answer = api
        .patch(
            &format!("/api/v1/vhosts/{id}"),
            json!({ "config": format!("bind {{$GH_BIND}}\nreverse_proxy {dead}") }),
        )
        .await;
    status_is(answer.status, StatusCode::CONFLICT, &answer.body);
    assert_eq!(
        answer.json["error"]["code"], "rolled_back_by_probe",
        "{}",
        answer.body
    );
    let finding = &answer.json["error"]["findings"][0];
    assert_eq!(finding["agent"], "edge-1", "{}", answer.body);
    assert_eq!(finding["worse"], "failing");
    assert_eq!(finding["before"]["status"], 200);
    assert_eq!(finding["after"]["status"], 502);
    assert_eq!(stored(&f.app).await, before);
    assert_eq!(
        served_on("127.0.0.1", f.port, &host).await,
        (200, "old backend".into())
    );
}

#[tokio::test]
async fn a_healthy_change_reaches_the_canary_first_and_then_the_rest() {
    let f = fleet().await;
    let old = upstream("old backend").await;
    let host = format!("roll.localhost:{}", f.port);
    let id = canary_first_with_site(&f, &host, old).await;

    // The new backend notes, at its first request (the probe through the canary, which
    // waits for this answer), what the other agent's Caddy serves at that moment.
    let seen_on_rest: Arc<Mutex<Option<(u16, String)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let new = listener.local_addr().unwrap();
    let note = seen_on_rest.clone();
    let (port, site) = (f.port, host.clone());
    let app = axum::Router::new().fallback(move || {
        let (note, site) = (note.clone(), site.clone());
        async move {
            if note.lock().unwrap().is_none() {
                let rest = served_on("127.0.0.2", port, &site).await;
                note.lock().unwrap().get_or_insert(rest);
            }
            "new backend"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let form = site_form(&format!("http://{host}"), new);
    let saved = post_owned(&f.app, &format!("/vhosts/{id}"), &form).await;
    status_is(saved.status, StatusCode::SEE_OTHER, &saved.body);
    assert!(location(&saved).starts_with("/vhosts"), "saved");

    assert_eq!(
        seen_on_rest.lock().unwrap().clone(),
        Some((200, "old backend".into())),
        "the canary was probed while the rest still ran the old config"
    );
    assert_eq!(
        served_on("127.0.0.1", f.port, &host).await,
        (200, "new backend".into())
    );
    assert_eq!(
        served_on("127.0.0.2", f.port, &host).await,
        (200, "new backend".into()),
        "then the rest got it"
    );
    assert!(agent_runs_db(&f.app, f.id_1, &f.edge_1).await);
    assert!(agent_runs_db(&f.app, f.id_2, &f.edge_2).await);
}

#[tokio::test]
async fn a_site_served_by_label_runs_only_where_the_label_is_and_bad_labels_are_refused_beside_the_field()
 {
    let f = fleet().await;
    let backend = upstream("eu backend").await;

    // A label that is no slug comes back beside the agent's labels field, as typed.
    let refused = label(&f.app, f.id_2, "EU West").await;
    status_is(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        &refused.body,
    );
    assert!(
        refused
            .text(".labels-error")
            .contains("“EU” is not a label"),
        "{}",
        refused.body
    );
    assert_eq!(
        refused
            .attr(&format!("#labels-{}", f.id_2), "value")
            .as_deref(),
        Some("EU West")
    );
    let labelled = label(&f.app, f.id_2, "eu").await;
    status_is(labelled.status, StatusCode::SEE_OTHER, &labelled.body);
    let page = f.app.get("/agents").await;
    assert_eq!(
        page.texts("article.agent-row[data-agent=\"edge-2\"] .agent-label"),
        ["eu"]
    );
    assert!(
        page.texts("article.agent-row[data-agent=\"edge-1\"] .agent-label")
            .is_empty()
    );

    // A site by a label no agent carries: refused beside the labels field, input kept.
    let host = format!("eu.localhost:{}", f.port);
    let mut form = site_form(&format!("http://{host}"), backend);
    form.push(("serve_on".into(), "labels".into()));
    form.push(("labels".into(), "nope".into()));
    let refused = post_owned(&f.app, "/vhosts", &form).await;
    status_is(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        &refused.body,
    );
    assert_eq!(
        refused.text("#labels-error"),
        "No agent carries the label nope; choose among: eu."
    );
    assert_eq!(refused.attr("#labels", "value").as_deref(), Some("nope"));
    assert!(
        refused
            .attr("input[name=serve_on][value=labels]", "checked")
            .is_some(),
        "the choice by label is kept"
    );

    // The live preview says the same, and shows the block once the label is one an agent has.
    let app = &f.app;
    let preview = |form: Vec<(String, String)>| async move {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        app.post_htmx("/vhosts/preview", &pairs).await
    };
    let shown = preview(form.clone()).await;
    assert!(
        shown
            .text("#preview-errors li[data-field=labels]")
            .contains("No agent carries the label nope"),
        "{}",
        shown.body
    );
    form.pop();
    form.push(("labels".into(), "eu".into()));
    let shown = preview(form.clone()).await;
    assert!(
        shown.text("#preview-block").contains("reverse_proxy"),
        "{}",
        shown.body
    );
    let created = post_owned(&f.app, "/vhosts", &form).await;
    status_is(created.status, StatusCode::SEE_OTHER, &created.body);
    both_run_db(&f).await;
    let app = &f.app;
    assert_eq!(
        served_on("127.0.0.2", f.port, &host).await,
        (200, "eu backend".into()),
        "edge-2 carries eu and serves it"
    );
    assert_eq!(
        served_on("127.0.0.1", f.port, &host).await.0,
        0,
        "edge-1 does not: its Caddy has no listener there"
    );
    let stored = app
        .state
        .db
        .run(|c| Ok(vhosts::list(c, &Default::default())?[0].clone()))
        .await
        .unwrap();
    assert_eq!(
        (stored.all_agents, stored.labels),
        (false, vec!["eu".to_string()])
    );

    // The API takes labels too, with the same rules.
    let token = make_token(&f.app, ADMIN_PASSWORD, "ci", "write").await;
    let api = Api::new(f.app.addr, Some(&token));
    let site = api.get(&format!("/api/v1/vhosts/{}", stored.id)).await;
    assert_eq!(site.json["labels"], json!(["eu"]), "{}", site.body);
    let refused = api
        .patch(
            &format!("/api/v1/vhosts/{}", stored.id),
            json!({"labels": ["nope"]}),
        )
        .await;
    status_is(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        &refused.body,
    );
    assert!(
        refused.json["error"]["fields"]["labels"]
            .as_str()
            .unwrap()
            .contains("No agent carries the label nope"),
        "{}",
        refused.body
    );

    // Taking the label off edge-2 takes the site off it.
    let cleared = label(&f.app, f.id_2, "").await;
    status_is(cleared.status, StatusCode::SEE_OTHER, &cleared.body);
    eventually(20, "edge-2 stops serving the site", || {
        let host = host.clone();
        async move { served_on("127.0.0.2", f.port, &host).await.0 == 0 }
    })
    .await;
}

#[tokio::test]
async fn the_probe_asks_only_its_own_caddy_and_only_with_the_token() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    // A server that is not Caddy's: a probe must never reach it, whatever it names.
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outside = listener.local_addr().unwrap();
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { "outside" }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let probe = |token: Option<&'static str>, body: serde_json::Value| {
        let (client, url) = (agent.probe(), format!("{}/caddy/probe", agent.url()));
        async move {
            let mut request = client.post(url).json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    let token = Some(crate::common::fleet::AGENT_TOKEN);

    let (status, _) = probe(None, json!({"address": format!("http://{outside}")})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, answer) = probe(token, json!({"address": format!("http://{outside}")})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "not_served", "{answer}");
    let (_, answer) = probe(
        token,
        json!({"address": format!("http://localhost:{}", outside.port()), "path": "/x"}),
    )
    .await;
    assert_eq!(answer["status"], "not_served", "{answer}");
    let (status, answer) = probe(
        token,
        json!({"address": "http://a.test:80", "path": "@127.0.0.1/"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    // Once Caddy listens on a port, an address naming another host on that port still
    // reaches Caddy's listener, never that host.
    let port = caddy.http_port;
    let held = tokio::net::TcpListener::bind(("127.0.0.3", port))
        .await
        .unwrap();
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { "outside" }
    });
    tokio::spawn(async move { axum::serve(held, app).await });
    let caddyfile = format!(
        "{{\n\tadmin {}\n\tauto_https off\n}}\n\nhttp://a.localhost:{port} {{\n\tbind 127.0.0.1\n\trespond \"caddy\" 203\n}}\n",
        caddy.admin_addr()
    );
    let loaded = agent
        .probe()
        .post(format!("{}/caddy/reload", agent.url()))
        .bearer_auth(crate::common::fleet::AGENT_TOKEN)
        .body(caddyfile)
        .send()
        .await
        .unwrap();
    assert_eq!(
        loaded.status(),
        StatusCode::OK,
        "{}",
        loaded.text().await.unwrap()
    );
    let (_, answer) = probe(
        token,
        json!({"address": format!("http://a.localhost:{port}")}),
    )
    .await;
    assert_eq!(answer["code"], 203, "{answer}");
    assert_eq!(answer["listener"], format!("127.0.0.1:{port}"), "{answer}");
    for elsewhere in [
        format!("http://127.0.0.3:{port}"),
        format!("http://example.com:{port}"),
    ] {
        let (_, answer) = probe(token, json!({"address": elsewhere})).await;
        assert_eq!(answer["status"], "answered", "{elsewhere}: {answer}");
        assert_eq!(answer["listener"], format!("127.0.0.1:{port}"), "{answer}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing but Caddy's own listeners is asked"
    );
}

#[tokio::test]
async fn a_refused_rollout_policy_comes_back_beside_its_fields() {
    let app = hub(|_| {}).await;
    let refused = app
        .post_form(
            "/settings/rollout",
            &[
                ("policy", "canary_first"),
                ("slow_factor", "fast"),
                ("slow_floor_ms", "-1"),
            ],
        )
        .await;
    status_is(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        &refused.body,
    );
    assert_eq!(
        refused.text("#slow_factor-error"),
        "Give a number from 1 to 100, e.g. 3."
    );
    assert!(
        refused
            .text("#slow_floor_ms-error")
            .contains("whole milliseconds")
    );
    assert_eq!(
        refused.attr("#slow_factor", "value").as_deref(),
        Some("fast")
    );
    assert!(
        refused
            .attr("input[name=policy][value=canary_first]", "checked")
            .is_some()
    );
    let policy = app
        .state
        .db
        .run(|c| gatehouse::fleet::rollout::Policy::load(c))
        .await
        .unwrap();
    assert_eq!(policy, Default::default(), "nothing was saved");
}
