//! Entry point: parse the command line, then hand over to the subcommand.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = gatehouse::cli::Cli::parse();
    gatehouse::cli::run(cli)
}
