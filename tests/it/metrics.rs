//! `/metrics` on the hub and the agent, with a real agent and a real Caddy: what is counted
//! after real work, and who may read it (the token, or direct local requests only).

use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, eventually, hub, proxy_site, upstream};
use reqwest::StatusCode;
use std::collections::BTreeMap;

/// The samples of a text exposition: series (name with labels, as written) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            (series.to_string(), value.parse().expect("a number"))
        })
        .collect()
}

async fn scrape(url: &str, token: Option<&str>, forwarded: bool) -> (StatusCode, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if forwarded {
        request = request.header("X-Forwarded-For", "203.0.113.7");
    }
    let response = request.send().await.expect("GET /metrics");
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_hub_and_the_agent_count_real_work() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("ok").await;
    let made = proxy_site(&app, "m", &caddy, backend, &[]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let id: i64 = made
        .header("location")
        .unwrap()
        .rsplit('=')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let host = format!("m.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/counted").await.0, 200);
    let agent_url = format!("{}/metrics", agent.url());
    eventually(
        10,
        "the agent counts the access-log line it read",
        || async {
            let (_, text) = scrape(&agent_url, None, false).await;
            samples(&text)
                .get("gatehouse_agent_log_lines_read_total")
                .is_some_and(|n| *n >= 1.0)
        },
    )
    .await;
    let toggled = app.post_form(&format!("/vhosts/{id}/toggle"), &[]).await;
    assert_eq!(toggled.status, StatusCode::SEE_OTHER);

    let (status, text) = scrape(&app.url("/metrics"), None, false).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let hub = samples(&text);
    assert!(
        hub[r#"gatehouse_deploys_total{outcome="applied"}"#] >= 2.0,
        "{text}"
    );
    assert!(hub[r#"gatehouse_agent_pushes_total{outcome="applied"}"#] >= 2.0);
    assert!(hub["gatehouse_deploy_duration_seconds_count"] >= 2.0);
    assert_eq!(
        hub[r#"http_request_duration_seconds_count{method="POST",route="/vhosts/{id}/toggle",status="303"}"#],
        1.0,
        "latency is recorded under the route pattern, not the path: {text}"
    );
    assert!(
        !text.contains(&format!("/vhosts/{id}/toggle")),
        "no series per id"
    );
    eventually(15, "the agent is reported in sync", || async {
        let (_, text) = scrape(&app.url("/metrics"), None, false).await;
        let hub = samples(&text);
        hub.get(r#"gatehouse_agent_in_sync{agent="edge-1"}"#) == Some(&1.0)
            && hub.get(r#"gatehouse_agent_up{agent="edge-1"}"#) == Some(&1.0)
            && hub.get(r#"gatehouse_agents{state="in_sync"}"#) == Some(&1.0)
    })
    .await;

    let (status, text) = scrape(&agent_url, None, false).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let own = samples(&text);
    assert!(
        own[r#"gatehouse_agent_reloads_total{outcome="applied"}"#] >= 2.0,
        "{text}"
    );
    assert_eq!(own["gatehouse_agent_caddy_up"], 1.0);
    assert!(
        own.contains_key(
            r#"http_request_duration_seconds_count{method="POST",route="/caddy/reload",status="200"}"#
        ),
        "{text}"
    );

    let mut caddy = caddy;
    caddy.stop();
    let (status, _) = scrape(&agent_url, None, false).await;
    assert_eq!(status, StatusCode::OK);
    eventually(10, "the agent reports Caddy down", || async {
        let (_, text) = scrape(&agent_url, None, false).await;
        samples(&text).get("gatehouse_agent_caddy_up") == Some(&0.0)
    })
    .await;
}

#[tokio::test]
async fn without_a_token_only_direct_local_requests_may_read_the_metrics() {
    let app = hub(|_| {}).await;
    let (status, _) = scrape(&app.url("/metrics"), None, false).await;
    assert_eq!(status, StatusCode::OK);
    // Through a reverse proxy on the same machine the peer is loopback too.
    let (status, _) = scrape(&app.url("/metrics"), None, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let (status, _) = scrape(&format!("{}/metrics", agent.url()), None, true).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn with_a_token_the_metrics_need_it() {
    let token = "metrics-scraper-token-0123456789";
    let app = hub(|c| c.metrics.token = gatehouse::config::Secret::new(token)).await;
    let url = app.url("/metrics");
    assert_eq!(scrape(&url, None, false).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        scrape(&url, Some("not-the-token"), false).await.0,
        StatusCode::FORBIDDEN
    );
    // The session of a signed-in admin is not a metrics token either.
    assert_eq!(app.get("/metrics").await.status, StatusCode::FORBIDDEN);
    let (status, text) = scrape(&url, Some(token), true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.ends_with("# EOF\n"), "a complete exposition");
}
