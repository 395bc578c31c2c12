//! A real Caddy for tests (the Debian 2.6.2 binary), never the system service: started by
//! hand on random loopback ports with its own HOME and XDG directories, so its autosave and
//! certificate storage stay in a temp dir, and killed by PID when dropped.

use super::{ChildGuard, free_port};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const CADDY_BINARY: &str = "/usr/bin/caddy";
/// How long Caddy may take to answer on its admin port after being started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Caddy {
    process: ChildGuard,
    admin: SocketAddr,
    /// A free loopback port reserved for the sites a test loads.
    pub http_port: u16,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    /// Extra environment, kept for a restart.
    env: Vec<(String, String)>,
}

/// `caddy run` on `dir/Caddyfile` with its own HOME, appending to `dir/caddy.log`.
fn spawn(dir: &Path, env: &[(String, String)]) -> std::process::Child {
    let home = dir.join("home");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("caddy.log"))
        .expect("Caddy's log file");
    Command::new(CADDY_BINARY)
        .arg("run")
        .arg("--config")
        .arg(dir.join("Caddyfile"))
        .args(["--adapter", "caddyfile"])
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log handle"))
        .stderr(log)
        .spawn()
        .expect("start /usr/bin/caddy")
}

/// `caddy adapt` on the Caddyfile `file`, with its own HOME: what real Caddy makes of it.
pub fn adapt(file: &Path) -> std::process::Output {
    let home = tempfile::tempdir().expect("temp HOME for caddy adapt");
    Command::new(CADDY_BINARY)
        .args(["adapt", "--adapter", "caddyfile", "--config"])
        .arg(file)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env("XDG_DATA_HOME", home.path())
        .output()
        .expect("run caddy adapt")
}

impl Caddy {
    /// Starts Caddy with only `admin 127.0.0.1:<free port>` and `auto_https off`, and waits
    /// (bounded) until its admin API answers.
    pub async fn start() -> Self {
        Self::start_with_env(&[]).await
    }

    /// As `start`, with extra environment variables for Caddy (read by `{$VAR}` in a
    /// Caddyfile, which Caddy expands in its own process when it adapts a `/load`).
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for Caddy");
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let caddyfile = dir.path().join("Caddyfile");
        std::fs::write(
            &caddyfile,
            format!("{{\n\tadmin {admin}\n\tauto_https off\n}}\n"),
        )
        .expect("write the initial Caddyfile");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn(dir.path(), &env);
        let mut caddy = Self {
            process: ChildGuard(child),
            admin,
            http_port: free_port(),
            // No pooling: Caddy drops idle admin connections whenever it loads a config.
            http: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                // A site's redirect is an answer to assert on, never a request to follow.
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            dir,
            env,
        };
        caddy.wait_until_answering().await;
        caddy
    }

    /// kill -9, as a crash or the OOM killer would.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }

    /// Starts Caddy again, as its service manager would after a crash: from its original
    /// Caddyfile (only the admin address), not from what was loaded into it since.
    pub async fn restart(&mut self) {
        self.kill();
        self.process = ChildGuard(spawn(self.dir.path(), &self.env));
        self.wait_until_answering().await;
    }

    async fn wait_until_answering(&mut self) {
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Ok(Some(status)) = self.process.0.try_wait() {
                panic!("Caddy exited with {status}:\n{}", self.log());
            }
            if self.admin_answers().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "Caddy's admin API on {} did not answer within {START_TIMEOUT:?}:\n{}",
            self.admin,
            self.log()
        );
    }

    /// Whether `GET /config/` on the admin port answers 200.
    pub async fn admin_answers(&self) -> bool {
        self.admin_get("/config/")
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// The JSON configuration Caddy runs now.
    pub async fn running_config(&self) -> serde_json::Value {
        self.admin_get("/config/")
            .send()
            .await
            .expect("GET /config/")
            .json()
            .await
            .expect("Caddy's config is JSON")
    }

    /// A GET on the admin API that passes Caddy's Origin check even when a loaded config
    /// turns on `enforce_origin`.
    fn admin_get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.admin_url()))
            .header(reqwest::header::ORIGIN, self.admin_url())
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything Caddy has logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }

    /// Stops Caddy (SIGTERM, then SIGKILL if it lingers) and waits for it to exit.
    pub fn stop(&mut self) {
        self.process.terminate();
    }

    /// `GET http://127.0.0.1:<http_port><path>` with the given Host header: what Caddy
    /// serves for that site. A connection error is reported as status 0.
    pub async fn get(&self, host: &str, path: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("http://127.0.0.1:{}{path}", self.http_port))
            .header(reqwest::header::HOST, host)
            .send()
            .await;
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            Err(err) => (0, err.to_string()),
        }
    }
}
