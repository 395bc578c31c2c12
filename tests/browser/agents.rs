//! Journey: an admin adds an agent on the agents page and syncs every agent, watching each
//! row report as it finishes.

use crate::common::caddy::Caddy;
use crate::common::fleet::{AGENT_TOKEN, AgentProc};
use crate::driver::Browser;
use anyhow::ensure;

pub async fn add_an_agent_and_sync_all(b: &Browser) -> anyhow::Result<()> {
    let (caddy_a, caddy_b) = (Caddy::start().await, Caddy::start().await);
    let (agent_a, agent_b) = (
        AgentProc::start(&caddy_a).await,
        AgentProc::start(&caddy_b).await,
    );
    let app = crate::vhosts::signed_in(b).await?;
    b.client.goto(&app.url("/agents")).await?;
    b.wait_for("#new-agent form").await?;
    for (name, agent) in [("edge-a", &agent_a), ("edge-b", &agent_b)] {
        b.fill("#new-agent #name", name).await?;
        b.fill("#new-agent #url", &agent.url()).await?;
        b.fill("#new-agent #token", AGENT_TOKEN).await?;
        b.click("#new-agent button[type=submit]").await?;
        b.wait_for(&format!("article.agent-row[data-agent={name}]"))
            .await?;
    }
    let page = b.client.source().await?;
    ensure!(!page.contains(AGENT_TOKEN), "the token is never shown back");

    b.click("#sync-all").await?;
    for name in ["edge-a", "edge-b"] {
        let outcome = b
            .wait_for(&format!(
                "article.agent-row[data-agent={name}] .agent-outcome"
            ))
            .await?;
        let text = outcome.text().await?;
        ensure!(
            text.starts_with("Already in sync") || text.starts_with("Synced"),
            "{name}: {text}"
        );
    }
    b.screenshot("agents-synced-1280").await?;
    b.viewport(390, 844).await?;
    b.client.goto(&app.url("/agents")).await?;
    b.wait_for("article.agent-row[data-agent=edge-b]").await?;
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the agents page scrolls sideways at 390px"
    );
    b.screenshot("agents-390x844").await?;
    Ok(())
}
