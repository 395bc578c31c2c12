//! A real fleet on loopback for tests: the agent binary beside a real Caddy, a tiny upstream
//! HTTP server, and a hub with an enrolled admin that knows the agents.

use super::binary;
use super::caddy::Caddy;
use super::{ChildGuard, TestApp, free_port};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub const AGENT_TOKEN: &str = "a-test-agent-token-0123456789";

/// The `gatehouse agent` process, stopped by its PID when dropped.
pub struct AgentProc {
    pub addr: SocketAddr,
    pub access_log: std::path::PathBuf,
    caddy_admin: String,
    /// `tls_cert` and `tls_key` when the agent serves HTTPS.
    tls: Option<(PathBuf, PathBuf)>,
    /// More `GATEHOUSE_AGENT_*` settings, given at every (re)start.
    env: Vec<(String, String)>,
    process: Option<ChildGuard>,
}

impl AgentProc {
    /// Starts an agent for `caddy` on a free port and waits until its /health answers.
    pub async fn start(caddy: &Caddy) -> Self {
        Self::start_with_log(caddy, caddy.dir().join("access.log")).await
    }

    /// As `start`, with the access log Caddy is told to write (the hub renders it per agent).
    pub async fn start_with_log(caddy: &Caddy, access_log: std::path::PathBuf) -> Self {
        Self::start_inner(caddy, access_log, None, Vec::new()).await
    }

    /// As `start`, serving HTTPS with this PEM certificate and key.
    pub async fn start_tls(caddy: &Caddy, cert: &Path, key: &Path) -> Self {
        let tls = Some((cert.to_path_buf(), key.to_path_buf()));
        Self::start_inner(caddy, caddy.dir().join("access.log"), tls, Vec::new()).await
    }

    /// As `start` (HTTPS when `tls` names a certificate and key), with more settings.
    pub async fn start_with_env(
        caddy: &Caddy,
        tls: Option<(&Path, &Path)>,
        env: &[(&str, &str)],
    ) -> Self {
        let tls = tls.map(|(c, k)| (c.to_path_buf(), k.to_path_buf()));
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_inner(caddy, caddy.dir().join("access.log"), tls, env).await
    }

    async fn start_inner(
        caddy: &Caddy,
        access_log: PathBuf,
        tls: Option<(PathBuf, PathBuf)>,
        env: Vec<(String, String)>,
    ) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut agent = Self {
            addr,
            access_log,
            caddy_admin: caddy.admin_url(),
            tls,
            env,
            process: None,
        };
        agent.restart().await;
        agent
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// For the test's own look at the agent. It checks no certificate: what the hub trusts
    /// is what the tests are about, and they go through the hub for that.
    pub fn probe(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    /// (Re)starts the process on the same address: a running one is killed first.
    pub async fn restart(&mut self) {
        self.kill();
        let mut command = binary::agent(&self.addr.to_string(), AGENT_TOKEN, &self.caddy_admin);
        command
            .env("GATEHOUSE_AGENT_ACCESS_LOG", &self.access_log)
            .env(
                "GATEHOUSE_AGENT_STATE_FILE",
                self.access_log.with_extension("state.json"),
            );
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some((cert, key)) = &self.tls {
            command
                .env("GATEHOUSE_AGENT_TLS_CERT", cert)
                .env("GATEHOUSE_AGENT_TLS_KEY", key);
        }
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let health = format!("{}/health", self.url());
        self.process = Some(binary::start(&mut command, &health, String::new).await);
    }

    /// SIGTERM, as a service manager stops it; returns how it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.take().expect("the agent runs").terminate()
    }

    /// The agent's process id while it runs (the benchmark suite reads its memory by it).
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// kill -9, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    pub async fn health(&self) -> serde_json::Value {
        self.probe()
            .get(format!("{}/health", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// An upstream that answers every request with `reply`; runs until the test ends.
pub async fn upstream(reply: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || async move { reply });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A hub with an enrolled admin signed in as the default visitor.
pub async fn hub(configure: impl FnOnce(&mut gatehouse::config::Config)) -> TestApp {
    let (app, _) = super::app_with_admin_and(|c| {
        c.fleet.reconcile_interval_secs = 1;
        configure(c);
    })
    .await;
    app
}

/// Adds an agent through the agents page; returns its id.
pub async fn add_agent(app: &TestApp, name: &str, agent: &AgentProc) -> i64 {
    add_agent_at(app, name, &agent.url()).await
}

/// Adds whatever answers at `url` as an agent through the agents page; returns its id.
pub async fn add_agent_at(app: &TestApp, name: &str, url: &str) -> i64 {
    add_agent_as(app, name, url).await;
    agent_id(app, name).await
}

/// Adds whatever answers at `url` as an agent through the agents page, as `admin` (also on a
/// hub running as its own process).
pub async fn add_agent_as(admin: &super::Visitor, name: &str, url: &str) {
    let page = admin
        .post_form(
            "/agents",
            &[("name", name), ("url", url), ("token", AGENT_TOKEN)],
        )
        .await;
    assert_eq!(page.status, reqwest::StatusCode::SEE_OTHER, "{}", page.body);
}

/// The id of the agent called `name`.
pub async fn agent_id(app: &TestApp, name: &str) -> i64 {
    let name = name.to_string();
    app.state
        .db
        .run(move |c| {
            Ok(gatehouse::db::agents::list(c)?
                .into_iter()
                .find(|a| a.name == name)
                .expect("the agent was added")
                .id)
        })
        .await
        .unwrap()
}

/// Polls `check` every 100 ms for at most `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..secs * 10 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {secs} s: {what}");
}

/// What the hub's database says agent `id` must run: the hash of its render.
pub async fn expected_hash(app: &TestApp, id: i64) -> String {
    let caddy = app.state.config.caddy.clone();
    app.state
        .db
        .run(move |c| {
            let agent = gatehouse::db::agents::find(c, id)?.expect("the agent exists");
            let all = gatehouse::db::vhosts::list(c, &gatehouse::db::vhosts::Filter::default())?;
            Ok(gatehouse::fleet::site_config::for_agent(&caddy, &agent, &all).1)
        })
        .await
        .unwrap()
}

/// Whether the agent reports running exactly the database's render for it.
pub async fn agent_runs_db(app: &TestApp, id: i64, agent: &AgentProc) -> bool {
    let expected = expected_hash(app, id).await;
    agent.health().await["applied_hash"].as_str() == Some(expected.as_str())
}

/// The form fields of a raw site on `port` that proxies to `to`, served by every agent, or
/// only by `agents` when some are given.
pub fn proxy_site_form(
    name: &str,
    port: u16,
    to: SocketAddr,
    agents: &[i64],
) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = vec![
        ("domain".into(), format!("http://{name}.localhost:{port}")),
        ("template".into(), "raw".into()),
        (
            "config".into(),
            format!("bind 127.0.0.1\nreverse_proxy {to}"),
        ),
        ("enabled".into(), "on".into()),
    ];
    if !agents.is_empty() {
        fields.push(("serve_on".into(), "chosen".into()));
        for a in agents {
            fields.push((format!("agent_{a}"), "on".into()));
        }
    }
    fields
}

/// Creates a raw site on `caddy`'s test port that proxies to `to` (see [`proxy_site_form`]);
/// returns the portal's answer.
pub async fn proxy_site(
    visitor: &super::Visitor,
    name: &str,
    caddy: &Caddy,
    to: SocketAddr,
    agents: &[i64],
) -> super::Page {
    let form = proxy_site_form(name, caddy.http_port, to, agents);
    post_owned(visitor, "/vhosts", &form).await
}

/// Posts a form given as owned pairs.
pub async fn post_owned(
    visitor: &super::Visitor,
    path: &str,
    fields: &[(String, String)],
) -> super::Page {
    let borrowed: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    visitor.post_form(path, &borrowed).await
}

/// The state the agents page shows for agent `name`, and its error line if any.
pub async fn agent_row(app: &TestApp, name: &str) -> (String, String) {
    let page = app.get("/agents").await;
    let row = format!("article.agent-row[data-agent=\"{name}\"]");
    let state = page
        .attr(&row, "data-state")
        .unwrap_or_else(|| panic!("no row for {name}:\n{}", page.body));
    let error = page
        .texts(&format!("{row} .agent-error"))
        .into_iter()
        .next()
        .unwrap_or_default();
    (state, error)
}

/// A hub with two agents, edge-1 and edge-2, each in front of its own Caddy.
pub struct TwoAgents {
    pub app: TestApp,
    /// Kept running for the agents (and signalled by tests that freeze one).
    pub caddys: (Caddy, Caddy),
    pub edge_1: AgentProc,
    pub edge_2: AgentProc,
    pub id_1: i64,
    pub id_2: i64,
    /// The first Caddy's port for the sites a test loads.
    pub port: u16,
}

/// Starts an agent in front of each of `caddys` and a hub, `configure`d, that knows them.
pub async fn two_agents(
    caddys: (Caddy, Caddy),
    configure: impl FnOnce(&mut gatehouse::config::Config),
) -> TwoAgents {
    let (edge_1, edge_2) = (
        AgentProc::start(&caddys.0).await,
        AgentProc::start(&caddys.1).await,
    );
    let app = hub(configure).await;
    let id_1 = add_agent(&app, "edge-1", &edge_1).await;
    let id_2 = add_agent(&app, "edge-2", &edge_2).await;
    let port = caddys.0.http_port;
    TwoAgents {
        app,
        caddys,
        edge_1,
        edge_2,
        id_1,
        id_2,
        port,
    }
}
