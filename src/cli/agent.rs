//! `gatehouse agent`: the daemon beside each Caddy. Not built yet.

use std::process::ExitCode;

pub fn run() -> ExitCode {
    eprintln!(
        "gatehouse agent: not yet available in this version; run only `gatehouse serve` for now"
    );
    ExitCode::from(2)
}
