//! Journeys: a site switched off while an agent is offline says "pending on edge-1" on its
//! row, and the row clears once the agent is back and the reconciler has caught it up; a
//! toggle whose deploy waits on a frozen Caddy shows each agent's progress, then the row.

use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, agent_runs_db, eventually, proxy_site, upstream};
use crate::driver::Browser;
use anyhow::{Context, ensure};
use fantoccini::Locator;
use std::time::Duration;

/// A hub (the admin signed in in the browser) with edge-1 and edge-2 in front of their own
/// Caddys, both running the database's config, and one site `#vhost-<id>` served by both.
struct Fleet {
    app: crate::common::TestApp,
    caddys: [Caddy; 2],
    edges: [AgentProc; 2],
    ids: [i64; 2],
    row: String,
}

async fn fleet(b: &Browser, push_timeout_secs: u64) -> anyhow::Result<Fleet> {
    let caddys = [Caddy::start().await, Caddy::start().await];
    let edges = [
        AgentProc::start(&caddys[0]).await,
        AgentProc::start(&caddys[1]).await,
    ];
    let (app, secret) = crate::common::app_with_admin_and(|c| {
        c.fleet.reconcile_interval_secs = 1;
        c.fleet.push_timeout_secs = push_timeout_secs;
    })
    .await;
    b.sign_in_as_admin(&app, &secret).await?;
    let ids = [
        add_agent(&app, "edge-1", &edges[0]).await,
        add_agent(&app, "edge-2", &edges[1]).await,
    ];
    for (id, edge) in ids.iter().zip(&edges) {
        eventually(10, "the agent runs the database's config", || async {
            agent_runs_db(&app, *id, edge).await
        })
        .await;
    }
    let backend = upstream("history").await;
    let created = proxy_site(&app, "site", &caddys[0], backend, &[]).await;
    let location = created.header("location").context("a created site")?;
    let id: i64 = location.rsplit('=').next().unwrap_or_default().parse()?;
    Ok(Fleet {
        app,
        caddys,
        edges,
        ids,
        row: format!("#vhost-{id}"),
    })
}

pub async fn a_change_pending_on_an_offline_agent_clears_when_it_returns(
    b: &Browser,
) -> anyhow::Result<()> {
    let Fleet {
        app,
        caddys: _caddys,
        edges: [mut edge_1, _edge_2],
        ids: [id_1, _],
        row,
    } = fleet(b, 60).await?;
    let pending = format!("{row} .vhost-pending .pending-on");

    // edge-1 stops (SIGTERM to its PID); the toggle reaches edge-2 only.
    edge_1.terminate();
    b.client.goto(&app.url("/vhosts")).await?;
    b.wait_for(&row).await?;
    ensure!(
        b.client.find_all(Locator::Css(&pending)).await?.is_empty(),
        "nothing is pending before the change"
    );
    b.click(&format!("{row} form.toggle button")).await?;
    b.wait_for(&format!("{row}[data-enabled=false]")).await?;
    let note = b.wait_for(&pending).await?.text().await?;
    ensure!(note == "pending on edge-1", "the row says {note:?}");
    b.screenshot("vhosts-pending-on-edge-1").await?;

    // edge-1 comes back; once the reconciler has caught it up, the row is clear.
    edge_1.restart().await;
    eventually(60, "edge-1 caught up", || async {
        agent_runs_db(&app, id_1, &edge_1).await
    })
    .await;
    for _ in 0..50 {
        b.client.goto(&app.url("/vhosts")).await?;
        b.wait_for(&row).await?;
        if b.client.find_all(Locator::Css(&pending)).await?.is_empty() {
            ensure!(
                b.client
                    .find_all(Locator::Css(&format!("{row}[data-enabled=false]")))
                    .await?
                    .len()
                    == 1,
                "the row still shows the site off"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the row still says pending after edge-1 caught up")
}

pub async fn a_slow_toggle_shows_its_progress_then_the_row(b: &Browser) -> anyhow::Result<()> {
    // A push to a frozen Caddy is given up after 8 s.
    let f = fleet(b, 8).await?;
    let (app, row, caddy_2) = (&f.app, &f.row, &f.caddys[1]);
    b.client.goto(&app.url("/vhosts")).await?;
    b.wait_for(row).await?;

    // edge-2's Caddy freezes: its reload hangs until the push is given up.
    let frozen = std::process::Command::new("kill")
        .args(["-STOP", &caddy_2.pid().to_string()])
        .status()?;
    ensure!(frozen.success(), "SIGSTOP edge-2's Caddy");
    b.click(&format!("{row} form.toggle button")).await?;
    b.wait_for(".deploy-progress li.deploy-step[data-agent=edge-2][data-state=pushing]")
        .await?;
    b.wait_for(".deploy-progress li.deploy-step[data-agent=edge-1][data-state=applied]")
        .await?;
    b.screenshot("vhosts-deploy-progress").await?;
    let mut ended = false;
    for _ in 0..150 {
        if !b
            .client
            .find_all(Locator::Css(&format!("{row}[data-enabled=false]")))
            .await?
            .is_empty()
        {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let thawed = std::process::Command::new("kill")
        .args(["-CONT", &caddy_2.pid().to_string()])
        .status()?;
    ensure!(thawed.success(), "SIGCONT edge-2's Caddy");
    ensure!(ended, "the progress panel never gave way to the row");
    ensure!(
        b.client
            .find_all(Locator::Css(".deploy-progress"))
            .await?
            .is_empty(),
        "the panel is gone"
    );
    let note = b.text(&format!("{row} .vhost-pending")).await?;
    ensure!(note == "pending on edge-2", "the row says {note:?}");
    Ok(())
}
