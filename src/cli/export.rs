//! `gatehouse export`: the Caddyfile of one agent (or the whole one), or a JSON document of
//! vhosts, settings and agents without secrets.

use crate::config::Config;
use anyhow::{Context, anyhow, bail};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Caddyfile,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `json`: vhosts, settings and agents (no tokens). `caddyfile`: the generated Caddyfile.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    /// With `--format caddyfile`: the Caddyfile this agent runs (without it: the whole
    /// Caddyfile with the configured defaults, as the Caddyfile page shows).
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    if args.agent.is_some() && args.format != Format::Caddyfile {
        bail!("--agent goes with --format caddyfile");
    }
    let path = config.db_path();
    if !path.is_file() {
        bail!("there is no database at {}", path.display());
    }
    // Read only, with the configured key (agents' tokens are sealed): an export writes
    // nothing, not even during an upgrade while an older hub still runs on this database.
    let for_db = config.clone();
    let db = crate::blocking::run(move || crate::app::open_database_read_only(&for_db)).await??;
    let config = std::sync::Arc::new(config);
    let text = match args.format {
        Format::Json => {
            let config = config.clone();
            let export = db
                .run(move |c| crate::export::json(c, &config))
                .await
                .map_err(|e| anyhow!(e))?;
            let mut text = serde_json::to_string_pretty(&export)?;
            text.push('\n');
            text
        }
        Format::Caddyfile => {
            let (config, agent) = (config.clone(), args.agent.clone());
            let text = db
                .run(move |c| match &agent {
                    Some(name) => crate::export::agent_caddyfile_by_name(c, &config, name),
                    None => crate::export::whole_caddyfile(c, &config).map(Some),
                })
                .await
                .map_err(|e| anyhow!(e))?;
            match text {
                Some(text) => text,
                None => bail!(
                    "there is no agent named {}",
                    args.agent.as_deref().unwrap_or_default()
                ),
            }
        }
    };
    match &args.output {
        Some(file) => {
            std::fs::write(file, &text).with_context(|| format!("writing {}", file.display()))?;
            eprintln!("wrote {}", file.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
