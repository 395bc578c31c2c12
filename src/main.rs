//! Entry point: parse the command line, then hand over to the subcommand.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    gatehouse::memory::limit_arenas();
    let cli = gatehouse::cli::Cli::parse();
    gatehouse::cli::run(cli)
}
