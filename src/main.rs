//! Entry point: parse the command line, then hand over to the subcommand.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = gatehouse::cli::Cli::parse();
    gatehouse::cli::run(cli)
}

/// glibc gives each thread that allocates at once an arena of its own (up to eight per core),
/// and memory freed in one is rarely handed back: a server with a few busy threads grows its
/// resident size for nothing. Two arenas keep the hub and the agent small; they spend most
/// of their time waiting on sockets, not contending for the allocator.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; it is called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
