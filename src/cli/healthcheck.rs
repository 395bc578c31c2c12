//! `gatehouse healthcheck`: ask the running portal's `/healthz`; exit 0 only when healthy.

use crate::config::Config;
use anyhow::{Context, bail};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Full URL to check instead of the configured listen address.
    #[arg(long)]
    url: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3)]
    timeout: u64,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let url = args
        .url
        .unwrap_or_else(|| format!("http://{}/healthz", reachable(config.listen)));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout))
        .build()?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        bail!("{url} answered {}", response.status());
    }
    println!("healthy: {url}");
    Ok(())
}

/// A wildcard listen address is reached through loopback.
pub(super) fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}
