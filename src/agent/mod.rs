//! The agent: a small daemon beside each Caddy that loads the Caddyfile the hub sends into
//! Caddy's admin API, tells the hub whether Caddy still runs it, and asks its Caddy for a
//! site when the hub probes a staged rollout. `router(state)` is its one route table;
//! [`Agent`] binds and serves it.
//!
//! It knows nothing of the hub beyond the token the hub presents.

pub mod api;
pub mod caddy;
pub mod config;
pub mod logs;
pub mod probe;
pub mod running;
pub mod tailer;
pub mod tls;

pub use caddy::{CaddyAdmin, CaddyClient, CaddyError};
pub use config::AgentConfig;

use crate::domain::caddyfile::config_hash;
use api::{ReloadOutcome, Running};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

/// Largest Caddyfile accepted by `/caddy/reload`, `/caddy/validate` and `/caddy/adapt`.
pub const MAX_CADDYFILE_BYTES: usize = 64 * 1024 * 1024;
/// `caddy version` should answer at once; a hung binary must not hold up start-up.
const VERSION_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one look at Caddy's running config answers every `/health`.
///
/// The cost of a look: Caddy prints its whole config (a few MiB at 5,000 sites) and the agent
/// hashes it; the JSON is parsed only when the bytes differ from the last look's. Looking
/// only when `/health` is asked (the hub asks once per reconcile interval, 5 s by default)
/// costs nothing while nobody asks, and gives the hub a verdict at most this old. As
/// `/health` needs no token, this age also caps how often a stranger can make the agent
/// read the config: at most once per this period, however many requests come.
const LOOK_MAX_AGE: Duration = Duration::from_secs(2);
/// How long the agent waits for a Caddy at the default admin address when the configured one
/// is silent.
const MOVED_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// The last Caddyfile Caddy accepted from this process, and when that Caddy process started.
#[derive(Debug, Clone)]
struct Applied {
    hash: String,
    /// [`CaddyClient::started_at`] just before the load; `None` if Caddy did not say.
    caddy_started: Option<String>,
    /// [`running::fingerprint`] of Caddy's `GET /config/` right after the load: the config
    /// Caddy runs as long as nobody else loads one. `None` if Caddy could not be read then.
    running: Option<String>,
}

/// The last comparison of Caddy's running config with [`Applied::running`].
#[derive(Debug, Default)]
struct Look {
    /// When it was made; `None`: never, or out of date.
    at: Option<Instant>,
    verdict: Running,
    /// SHA-256 of the last `/config/` body read, and that body's fingerprint.
    raw: Option<([u8; 32], String)>,
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
    /// Held while Caddy's config is read and compared, so concurrent `/health` requests
    /// share one read.
    look: tokio::sync::Mutex<Look>,
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
                look: tokio::sync::Mutex::new(Look::default()),
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

    /// Whether Caddy runs what this agent loaded last, and where Caddy's admin API answers
    /// when it moved away from the configured address (then `reachable` is false).
    pub async fn running(&self, reachable: bool) -> (Running, Option<String>) {
        if reachable {
            return (self.compare().await, None);
        }
        match self.moved_admin().await {
            Some((moved, _)) => (
                Running::AdminMoved,
                Some(moved.admin().authority().to_string()),
            ),
            None => (Running::Unknown, None),
        }
    }

    /// Compares Caddy's `/config/` with the fingerprint taken after the last load; see
    /// [`LOOK_MAX_AGE`] for what it costs and how often it runs.
    async fn compare(&self) -> Running {
        // Nothing loaded by this process, or Caddy restarted since: whatever Caddy runs, the
        // agent cannot say it is someone else's doing.
        if self.applied().and_then(|a| a.running).is_none() {
            return Running::Unknown;
        }
        let mut look = self.inner.look.lock().await;
        if look.at.is_some_and(|at| at.elapsed() < LOOK_MAX_AGE) {
            return look.verdict;
        }
        // A load in flight changes Caddy's config before it records the new fingerprint, so
        // a read now could take the agent's own load for someone else's. Holding the push
        // lock instead keeps a load waiting only until this read ends.
        let Ok(_no_load) = self.inner.pushes.try_lock() else {
            return look.verdict;
        };
        // Read again under the push lock: the fingerprint of the load that may just have
        // finished.
        let Some(expected) = self.applied().and_then(|a| a.running) else {
            return Running::Unknown;
        };
        let known = look.raw.clone();
        let verdict = match self.caddy().running_config().await {
            Ok(body) => match fingerprint_of(body, known).await {
                Some((raw, print)) => {
                    let verdict = if print == expected {
                        Running::Matches
                    } else {
                        Running::Changed
                    };
                    look.raw = Some((raw, print));
                    verdict
                }
                None => Running::Unknown,
            },
            Err(error) => {
                tracing::debug!(%error, "cannot read Caddy's running config");
                Running::Unknown
            }
        };
        if verdict == Running::Changed && look.verdict != Running::Changed {
            tracing::warn!(
                "Caddy runs a config this agent did not load: someone used its admin API \
                 directly; reporting it until the hub loads its config again"
            );
        }
        look.at = Some(Instant::now());
        look.verdict = verdict;
        verdict
    }

    /// The same Caddy process answering at Caddy's default admin address, with its start
    /// time, when the configured address went silent: a config without an `admin` option,
    /// loaded outside the agent, moves it there. "The same process" is told by its start time
    /// as recorded at the last load; another Caddy on this host is never touched.
    async fn moved_admin(&self) -> Option<(CaddyClient, String)> {
        let then = self.applied()?.caddy_started?;
        let default = CaddyAdmin::default();
        if default.authority() == self.caddy().admin().authority() {
            return None;
        }
        let moved = self.caddy().at(default);
        // Asked on every `/health` while Caddy is unreachable, so it must not add much to
        // that answer: on loopback, a Caddy that is there answers in milliseconds.
        let now = tokio::time::timeout(MOVED_PROBE_TIMEOUT, moved.started_at())
            .await
            .ok()??;
        (now == then).then_some((moved, now))
    }

    /// Reads Caddy's config after a load: the fingerprint later looks compare with.
    async fn baseline(&self) -> Option<([u8; 32], String)> {
        match self.caddy().running_config().await {
            Ok(body) => fingerprint_of(body, None).await,
            Err(error) => {
                tracing::warn!(%error, "cannot read Caddy's config after a load; changes made outside the agent go unnoticed until the next load");
                None
            }
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
        crate::memory::release_freed_later();
        outcome
    }

    async fn load(&self, caddyfile: Bytes, hash: String) -> ReloadOutcome {
        // Read before the load: if Caddy restarts in between, the next health check sees a
        // different start and the hub pushes again, which is harmless.
        let mut caddy = self.caddy().clone();
        let mut caddy_started = caddy.started_at().await;
        if caddy_started.is_none()
            && let Some((moved, started)) = self.moved_admin().await
        {
            // The hub's Caddyfile names the configured admin address, so this load also
            // moves Caddy's admin API back where the agent looks for it.
            tracing::warn!(
                moved_to = %moved.admin(),
                "Caddy's admin API was moved by a config loaded outside the agent; loading through it"
            );
            caddy = moved;
            caddy_started = Some(started);
        }
        match caddy.load(caddyfile).await {
            Ok(warnings) => {
                let running = self.baseline().await;
                let mut look = self.inner.look.lock().await;
                *look = Look {
                    at: Some(Instant::now()),
                    verdict: if running.is_some() {
                        Running::Matches
                    } else {
                        Running::Unknown
                    },
                    raw: running.clone(),
                };
                self.set_applied(Some(Applied {
                    hash: hash.clone(),
                    caddy_started,
                    running: running.map(|(_, print)| print),
                }));
                drop(look);
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

/// The raw digest and fingerprint of a `/config/` body, off the async workers (megabytes of
/// JSON at thousands of sites). `known` is the last body's: the same bytes are not parsed
/// again. `None` when the body is not JSON.
async fn fingerprint_of(
    body: Vec<u8>,
    known: Option<([u8; 32], String)>,
) -> Option<([u8; 32], String)> {
    let result = crate::blocking::run(move || {
        let raw = running::raw_digest(&body);
        if let Some((digest, print)) = known
            && digest == raw
        {
            return Ok((raw, print));
        }
        running::fingerprint(&body).map(|print| (raw, print))
    })
    .await
    .expect("hashing does not panic");
    result
        .inspect_err(|e| tracing::warn!(error = %e, "Caddy's /config/ answer is not JSON"))
        .ok()
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
        .route("/caddy/adapt", post(api::adapt))
        .route("/caddy/probe", post(probe::handler))
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

/// Runs the agent until `shutdown` completes (for `gatehouse agent`: SIGINT or SIGTERM).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Agent::bind(config).await?.run(shutdown).await?;
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
