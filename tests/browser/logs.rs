//! Journey: watching live traffic on a phone. Requests sent through real Caddy appear as
//! rows on the logs page; filters and pause work without a reload.

use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, upstream};
use crate::driver::Browser;
use anyhow::{bail, ensure};
use std::time::{Duration, Instant};

async fn row_count(b: &Browser, path: &str) -> anyhow::Result<usize> {
    let script = format!(
        "return [...document.querySelectorAll('#log-rows td.log-path')].filter(td => td.textContent === '{path}').length"
    );
    Ok(b.client
        .execute(&script, vec![])
        .await?
        .as_u64()
        .unwrap_or(0) as usize)
}

pub async fn requests_appear_live_on_a_phone(b: &Browser) -> anyhow::Result<()> {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = crate::vhosts::signed_in(b).await?;
    add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("ok").await;
    let domain = format!("http://shop.localhost:{}", caddy.http_port);
    let body = format!("bind 127.0.0.1\nreverse_proxy {backend}");
    let made = app
        .post_form(
            "/vhosts",
            &[
                ("domain", &domain),
                ("template", "raw"),
                ("config", &body),
                ("enabled", "on"),
            ],
        )
        .await;
    ensure!(made.status == 303, "{}", made.body);
    let host = format!("shop.localhost:{}", caddy.http_port);
    caddy.get(&host, "/history/1").await;

    b.viewport(390, 844).await?;
    b.client.goto(&app.url("/logs")).await?;
    b.wait_for("#log-table[data-live=true]").await?;
    ensure!(
        row_count(b, "/history/1").await? == 1,
        "history shows first"
    );
    // Let the SSE connection settle before timing.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut latencies = Vec::new();
    for i in 0..3 {
        let path = format!("/live/{i}");
        let sent = Instant::now();
        let (status, _) = caddy.get(&host, &path).await;
        ensure!(status == 200);
        loop {
            if row_count(b, &path).await? == 1 {
                break;
            }
            if sent.elapsed() > Duration::from_secs(10) {
                bail!("{path} never appeared");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    println!("  request-to-row latencies: {latencies:?}");
    ensure!(
        latencies[1] <= Duration::from_secs(1),
        "median request-to-row latency {:?}",
        latencies[1]
    );
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the logs page scrolls sideways at 390px"
    );
    b.screenshot("logs-live-390x844").await?;

    // Pause: the stream stops; resume: it comes back.
    b.click("#log-pause").await?;
    b.wait_for("#log-table[data-live=false]").await?;
    caddy.get(&host, "/while-paused").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    ensure!(
        row_count(b, "/while-paused").await? == 0,
        "a paused table does not move"
    );
    b.click("#log-resume").await?;
    b.wait_for("#log-table[data-live=true]").await?;

    // A filter applies without a reload: only errors now.
    b.click("#log-status option[value='4xx']").await?;
    b.wait_for("#no-logs").await?;
    b.viewport(1280, 800).await?;
    b.screenshot("logs-filtered-1280").await?;
    Ok(())
}
