//! The command line: one module per subcommand, each with `run()`.

mod agent;
mod backup;
mod export;
mod healthcheck;
mod import;
mod migrate;
mod rotate_key;
mod serve;
mod user;

use crate::config::Config;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "A self-hosted admin portal for a fleet of Caddy servers",
    long_about = "A self-hosted admin portal for a fleet of Caddy servers.\n\n\
        `gatehouse serve` runs the portal (the hub); `gatehouse agent` runs beside each Caddy.\n\
        With no configuration at all, `serve` listens on 127.0.0.1:8080 and keeps its data in \
        ./data/gatehouse.db."
)]
pub struct Cli {
    /// TOML configuration file (see config/gatehouse.toml for every key and its default).
    /// Settings can also come from GATEHOUSE_* environment variables, which win.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "GATEHOUSE_CONFIG",
        value_name = "PATH"
    )]
    pub(crate) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the portal (the hub).
    Serve,
    /// Run the agent beside a Caddy server.
    Agent(agent::Args),
    /// Apply database migrations and exit.
    Migrate,
    /// Exit 0 when the running portal answers /healthz (for Docker HEALTHCHECK).
    Healthcheck(healthcheck::Args),
    /// Copy the database while the portal runs (SQLite's online backup API).
    Backup(backup::BackupArgs),
    /// Put a backup back into a stopped instance (the replaced database is kept aside).
    Restore(backup::RestoreArgs),
    /// Make a new secret key and re-seal every agent token and TOTP secret with it (stop the
    /// portal first; the old key file is kept beside the new one).
    RotateKey(rotate_key::Args),
    /// Manage accounts from the server: bootstrap and lock-out recovery.
    #[command(subcommand)]
    User(user::UserCommand),
    /// Import a Caddyfile as sites (one transaction; a running portal pushes them).
    Import(import::Args),
    /// Export an agent's Caddyfile, or vhosts, settings and agents as JSON (no secrets).
    Export(export::Args),
}

/// Loads the configuration, sets up logging and runs the subcommand.
pub fn run(cli: Cli) -> ExitCode {
    if let Command::Agent(args) = cli.command {
        return agent::run(args);
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("gatehouse: {err}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("gatehouse: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve::run(config).await,
            Command::Migrate => migrate::run(config).await,
            Command::Healthcheck(args) => healthcheck::run(config, args).await,
            Command::User(cmd) => user::run(config, cmd).await,
            Command::Backup(args) => backup::backup(config, args).await,
            Command::Restore(args) => backup::restore(config, args).await,
            Command::RotateKey(args) => rotate_key::run(config, args).await,
            Command::Import(args) => import::run(config, args).await,
            Command::Export(args) => export::run(config, args).await,
            Command::Agent(_) => unreachable!("handled above"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gatehouse: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM: how `serve` and `agent` are asked to stop.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
