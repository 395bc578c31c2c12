//! `gatehouse agent`: load the agent's own configuration, set up logging and run the daemon
//! beside Caddy until SIGINT or SIGTERM.

use crate::agent::AgentConfig;
use crate::agent::config::ENV_CONFIG_PATH;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's TOML configuration file (see config/agent.toml for every key and its
    /// default). Settings can also come from GATEHOUSE_AGENT_* environment variables, which win.
    #[arg(long, short = 'c', env = ENV_CONFIG_PATH, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

pub fn run(args: Args) -> ExitCode {
    let config = match AgentConfig::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("gatehouse agent: {err}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("gatehouse agent: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::agent::run(config, super::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("gatehouse agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}
