//! `gatehouse serve`: run the portal until SIGINT or SIGTERM.

use crate::app::Server;
use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = Server::bind(config).await?;
    server.run(super::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
