//! The HTTP side of the hub. `router(state)` is the one route table; handlers are thin and
//! live in one module per area.

pub mod assets;
mod extract;
mod health;
mod home;
mod middleware;
mod render;
pub mod setup;

pub use extract::Form;
pub use render::Render;

use crate::config::Config;
use crate::db::Db;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub setup: Arc<setup::SetupGate>,
}

/// The single route table of the hub.
pub fn router(state: AppState) -> Router {
    let body_limit =
        usize::try_from(state.config.security.max_body_kib * 1024).unwrap_or(usize::MAX);
    let timeout = Duration::from_secs(state.config.security.request_timeout_secs);
    Router::new()
        .route("/", get(home::index))
        .route("/healthz", get(health::healthz))
        .route("/setup", get(setup::form).post(setup::submit))
        .route("/static/{*path}", get(assets::serve))
        .fallback(home::not_found)
        .layer(axum::middleware::from_fn(middleware::render_errors))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
        .with_state(state)
}

/// A bound, ready-to-run hub.
pub struct Server {
    listener: TcpListener,
    pub state: AppState,
}

impl Server {
    /// Opens and migrates the database, prepares first-run setup and binds the listener.
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        let config = Arc::new(config);
        let db_path = config.db_path();
        let db = crate::blocking::run(move || Db::open_and_migrate(&db_path))
            .await?
            .with_context(|| format!("opening database {}", config.db_path().display()))?;
        let setup = Arc::new(setup::SetupGate::prepare(&config, &db).await?);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        Ok(Self {
            listener,
            state: AppState { config, db, setup },
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
        let addr = self.local_addr();
        self.state.setup.announce(&self.state.config, addr);
        tracing::info!(%addr, "gatehouse is listening");
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}
