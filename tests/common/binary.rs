//! The real `gatehouse` binary as the tests run it: never with the `GATEHOUSE_*` settings of
//! the shell around them, `serve` and `agent` on loopback ports, started and waited for
//! (bounded), and stopped by PID when dropped.

use super::ChildGuard;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");
/// How long a started `serve` or `agent` may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// `gatehouse` with no `GATEHOUSE_*` setting and no `RUST_LOG` from the environment.
pub fn gatehouse() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("GATEHOUSE_") {
            command.env_remove(key);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

/// As [`gatehouse`], run in `dir` (where a `serve` keeps its data in `dir/data`).
pub fn gatehouse_in(dir: &Path) -> Command {
    let mut command = gatehouse();
    command.current_dir(dir);
    command
}

/// `gatehouse serve` in `dir` on `127.0.0.1:<port>`.
pub fn serve(dir: &Path, port: u16) -> Command {
    let mut command = gatehouse_in(dir);
    command
        .arg("serve")
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"));
    command
}

/// `gatehouse agent` on `listen` with `token`, in front of Caddy's admin API at `caddy_admin`.
pub fn agent(listen: &str, token: &str, caddy_admin: &str) -> Command {
    let mut command = gatehouse();
    command
        .arg("agent")
        .env("GATEHOUSE_AGENT_LISTEN", listen)
        .env("GATEHOUSE_AGENT_TOKEN", token)
        .env("GATEHOUSE_AGENT_CADDY_ADMIN", caddy_admin)
        .stdin(Stdio::null());
    command
}

/// Starts `gatehouse serve` in `dir` on `127.0.0.1:<port>` with these settings, its output
/// discarded, and waits until its `/healthz` answers.
pub async fn start_serve(dir: &Path, port: u16, envs: &[(&str, &str)]) -> ChildGuard {
    let mut command = serve(dir, port);
    command
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    start(&mut command, &healthz, String::new).await
}

/// Spawns `command` and waits until `url` answers with a success (an agent's `/health`, the
/// hub's `/healthz`; over HTTPS no certificate is checked); panics, showing `log()`, when the
/// process exits first or does not answer within ten seconds.
pub async fn start(command: &mut Command, url: &str, log: impl Fn() -> String) -> ChildGuard {
    let mut process = ChildGuard(command.spawn().expect("start gatehouse"));
    let probe = reqwest::Client::builder()
        .no_proxy()
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let started = Instant::now();
    while started.elapsed() < START_TIMEOUT {
        if let Ok(Some(status)) = process.0.try_wait() {
            panic!(
                "gatehouse exited with {status} before {url} answered:\n{}",
                log()
            );
        }
        if probe
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return process;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer within {START_TIMEOUT:?}:\n{}", log());
}
