//! The agent: a small daemon beside each Caddy that loads the Caddyfile the hub sends into
//! Caddy's admin API. `router(state)` is its one route table; [`Agent`] binds and serves it.
//!
//! It knows nothing of the hub beyond the token the hub presents.

pub mod api;
pub mod caddy;
pub mod config;
pub mod logs;
pub mod tailer;
pub mod tls;

pub use caddy::{CaddyAdmin, CaddyClient, CaddyError, Warning};
pub use config::AgentConfig;

use crate::domain::caddyfile::config_hash;
use api::ReloadOutcome;
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

/// Largest Caddyfile accepted by `/caddy/reload` and `/caddy/validate`.
pub const MAX_CADDYFILE_BYTES: usize = 64 * 1024 * 1024;
/// `caddy version` should answer at once; a hung binary must not hold up start-up.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// The last Caddyfile Caddy accepted from this process, and when that Caddy process started.
#[derive(Debug, Clone)]
struct Applied {
    hash: String,
    /// [`CaddyClient::started_at`] just before the load; `None` if Caddy did not say.
    caddy_started: Option<String>,
}

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AgentState {
    inner: Arc<Inner>,
}

struct Inner {
    config: AgentConfig,
    caddy: CaddyClient,
    caddy_version: Option<String>,
    /// Held for the whole of a `/load`, so two reloads never interleave.
    pushes: tokio::sync::Mutex<()>,
    /// Separate from `pushes` so `/health` answers while a long load runs.
    applied: Mutex<Option<Applied>>,
    logs: logs::LogStore,
    /// `/caddy/reload` by outcome: `applied`, `rejected`, `caddy_unreachable`.
    reloads: crate::metrics::Outcomes,
    http_metrics: crate::metrics::HttpMetrics,
}

impl AgentState {
    pub fn new(config: AgentConfig, caddy_version: Option<String>) -> anyhow::Result<Self> {
        let caddy = CaddyClient::new(
            config.caddy_admin.clone(),
            Duration::from_secs(config.load_timeout_secs),
        )?;
        let logs = logs::LogStore::new(config.log_buffer_lines as usize);
        Ok(Self {
            inner: Arc::new(Inner {
                logs,
                config,
                caddy,
                caddy_version,
                pushes: tokio::sync::Mutex::new(()),
                applied: Mutex::new(None),
                reloads: Default::default(),
                http_metrics: crate::metrics::HttpMetrics::new(),
            }),
        })
    }

    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    pub fn caddy(&self) -> &CaddyClient {
        &self.inner.caddy
    }

    pub fn logs(&self) -> &logs::LogStore {
        &self.inner.logs
    }

    pub fn caddy_version(&self) -> Option<&str> {
        self.inner.caddy_version.as_deref()
    }

    /// The hash of the last Caddyfile Caddy accepted from this process.
    pub fn applied_hash(&self) -> Option<String> {
        self.applied().map(|a| a.hash)
    }

    fn applied(&self) -> Option<Applied> {
        // The value is a plain replace, never half-written, so a poisoned lock is still sound.
        self.inner
            .applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_applied(&self, applied: Option<Applied>) {
        *self
            .inner
            .applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = applied;
    }

    /// Forgets the applied hash when the Caddy process is not the one that took it: a Caddy
    /// restarted by its service manager runs its own startup config, not the hub's, and the
    /// hub must see that to push again.
    pub async fn notice_caddy_restart(&self) {
        let Some(Applied {
            caddy_started: Some(then),
            ..
        }) = self.applied()
        else {
            return;
        };
        let Some(now) = self.caddy().started_at().await else {
            return;
        };
        if now == then {
            return;
        }
        let mut applied = self
            .inner
            .applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only if no push has recorded the new process meanwhile.
        if applied
            .as_ref()
            .is_some_and(|a| a.caddy_started.as_deref() == Some(then.as_str()))
        {
            *applied = None;
            tracing::warn!(
                "Caddy restarted since the last push and runs its startup config; \
                 reporting no applied config until the hub pushes again"
            );
        }
    }

    /// Loads a Caddyfile into Caddy, one push at a time, and records its hash only when Caddy
    /// took it.
    pub async fn reload(&self, caddyfile: String) -> ReloadOutcome {
        // Shared, not copied: the same buffer is hashed and sent to Caddy.
        let caddyfile = Bytes::from(caddyfile);
        let text = caddyfile.clone();
        // Up to 64 MiB of SHA-256, so off the async workers. The text came from a `String`,
        // so the lossy conversion borrows it unchanged.
        let hash = crate::blocking::run(move || config_hash(&String::from_utf8_lossy(&text)))
            .await
            .expect("hashing a string does not panic");
        let _one_push_at_a_time = self.inner.pushes.lock().await;
        let outcome = self.load(caddyfile, hash).await;
        let label = match outcome {
            ReloadOutcome::Applied { .. } => "applied",
            ReloadOutcome::Rejected { .. } => "rejected",
            ReloadOutcome::CaddyUnreachable { .. } => "caddy_unreachable",
        };
        self.inner
            .reloads
            .get_or_create(&crate::metrics::OutcomeLabels::of(label))
            .inc();
        // The Caddyfile (megabytes at thousands of sites) is gone; give its memory back.
        drop(tokio::task::spawn_blocking(crate::memory::release_freed));
        outcome
    }

    async fn load(&self, caddyfile: Bytes, hash: String) -> ReloadOutcome {
        // Read before the load: if Caddy restarts in between, the next health check sees a
        // different start and the hub pushes again, which is harmless.
        let caddy_started = self.caddy().started_at().await;
        match self.caddy().load(caddyfile).await {
            Ok(warnings) => {
                self.set_applied(Some(Applied {
                    hash: hash.clone(),
                    caddy_started,
                }));
                tracing::info!(%hash, warnings = warnings.len(), "Caddy applied a new Caddyfile");
                ReloadOutcome::Applied { hash, warnings }
            }
            Err(CaddyError::Rejected { status, message }) => {
                tracing::warn!(caddy_status = status, error = %message, "Caddy rejected a Caddyfile");
                ReloadOutcome::Rejected {
                    caddy_status: status,
                    error: message,
                }
            }
            Err(CaddyError::Unreachable(error)) => ReloadOutcome::CaddyUnreachable { error },
        }
    }
}

/// `GET /metrics` of the agent.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AgentState>,
    headers: axum::http::HeaderMap,
    extensions: axum::http::Extensions,
) -> axum::response::Response {
    use prometheus_client::metrics::gauge::Gauge;
    let token = state.config().metrics_token.expose();
    if !crate::metrics::allowed(token, crate::metrics::peer(&extensions), &headers) {
        return crate::metrics::refused();
    }
    let mut registry = prometheus_client::registry::Registry::default();
    state.inner.http_metrics.register(&mut registry);
    state.logs().register(&mut registry);
    registry.register(
        "gatehouse_agent_reloads",
        "Caddyfiles the hub asked this agent to load, by outcome",
        state.inner.reloads.clone(),
    );
    let caddy_up = Gauge::<i64>::default();
    caddy_up.set(i64::from(state.caddy().reachable().await));
    registry.register(
        "gatehouse_agent_caddy_up",
        "1 when Caddy's admin API answers",
        caddy_up,
    );
    crate::metrics::exposition(&registry)
}

/// The agent's route table: `/health` is open, everything else needs the Bearer token.
pub fn router(state: AgentState) -> Router {
    let guarded = Router::new()
        .route("/caddy/reload", post(api::reload))
        .route("/caddy/validate", post(api::validate))
        .route("/logs", get(logs::recent))
        .route("/logs/stream", get(logs::stream))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::require_token,
        ));
    Router::new()
        .route("/health", get(api::health))
        // Not behind the hub's token: it has its own (see `crate::metrics`).
        .route("/metrics", get(metrics))
        .merge(guarded)
        .route_layer(axum::middleware::from_fn_with_state(
            state.inner.http_metrics.clone(),
            crate::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(MAX_CADDYFILE_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A bound, ready-to-run agent.
pub struct Agent {
    listener: TcpListener,
    /// Set when `tls_cert` and `tls_key` are: the API is served over HTTPS only.
    tls: Option<Arc<rustls::ServerConfig>>,
    pub state: AgentState,
}

impl Agent {
    /// Reads the TLS certificate and key if any, asks Caddy's binary for its version and
    /// binds the listener.
    pub async fn bind(config: AgentConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        let tls = if config.tls() {
            Some(tls::server_config(&config.tls_cert, &config.tls_key)?)
        } else {
            None
        };
        let version = caddy_version(&config.caddy_binary).await;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let state = AgentState::new(config, version)?;
        Ok(Self {
            listener,
            tls,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let config = self.state.config();
        tracing::info!(
            addr = %self.local_addr(),
            caddy_admin = %config.caddy_admin,
            caddy_version = self.state.caddy_version().unwrap_or("unknown"),
            token_from = config.token_source(),
            tls = config.tls(),
            "gatehouse agent is listening"
        );
        // Follows the access log while serving; stops when dropped at the end of `run`.
        let _tailer = tailer::spawn(
            config.access_log.clone().into(),
            config.state_file.clone().into(),
            self.state.logs().clone(),
        )?;
        let logs = self.state.logs().clone();
        let limits = crate::http_server::Limits {
            header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
            max_connections: usize::try_from(config.max_connections).unwrap_or(usize::MAX),
        };
        let app = router(self.state);
        // Open log streams end first, or the graceful shutdown would wait for them for ever.
        let shutdown = async move {
            shutdown.await;
            logs.close();
        };
        crate::http_server::serve(self.listener, self.tls, app, limits, shutdown).await
    }
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: AgentConfig) -> anyhow::Result<()> {
    Agent::bind(config)
        .await?
        .run(crate::cli::shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The first line of `<binary> version`, or `None` (logged) if it cannot be had.
pub async fn caddy_version(binary: &str) -> Option<String> {
    if binary.is_empty() {
        return None;
    }
    let output = tokio::process::Command::new(binary)
        .arg("version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let failure = match tokio::time::timeout(VERSION_TIMEOUT, output).await {
        Ok(Ok(out)) if out.status.success() => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            match stdout.lines().next().map(str::trim) {
                Some(line) if !line.is_empty() => return Some(line.to_string()),
                _ => "it printed nothing".to_string(),
            }
        }
        Ok(Ok(out)) => format!("it exited with {}", out.status),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!("no answer within {} s", VERSION_TIMEOUT.as_secs()),
    };
    tracing::warn!(binary, reason = %failure, "cannot read `caddy version`; /health reports it as null");
    None
}
