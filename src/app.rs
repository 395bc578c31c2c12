//! The composition root of the hub: opens the database with its key, builds the state the
//! handlers share and serves the route table. `gatehouse serve` and the tests start the hub
//! here; the CLI's other commands open the database here too.

use crate::auth::ratelimit::Limiter;
use crate::config::Config;
use crate::db::Db;
use crate::secrets::{KeySource, Sealer, SecretKey};
use crate::web::{AppState, router, setup};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tower_sessions_rusqlite_store::RusqliteStore;

/// The hub's database, ready to serve: the key loaded (made on first run), the schema
/// migrated, plaintext left by an older version sealed, and every stored secret checked
/// against the key. A key that does not fit is refused before the schema is touched. The
/// data directory and database files are made private, or tightened (see `db::files`).
/// Blocks; call it on the blocking pool.
pub fn open_database(config: &Config) -> anyhow::Result<Db> {
    use anyhow::Context;
    let path = config.db_path();
    // Before the key file can be made in it with a looser directory around it; existing
    // ones (from an older version, a copy, a restore) are tightened, and each change logged.
    crate::db::files::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    crate::db::files::tighten(&config.data_dir, &path);
    let (key, source) = load_or_create_key(config)?;
    crate::db::sealed::open(&path, Arc::new(Sealer::new(&key)), &source)
}

/// The hub's database for reading only (`gatehouse export`, `gatehouse import --dry-run`):
/// the configured key if there is one (never a new one), the schema as it is (never
/// migrated), nothing sealed. A database an older version left (schema behind, or plaintext
/// secrets not yet sealed) is refused: the hub upgrades it when it starts. Blocks.
pub(crate) fn open_database_read_only(config: &Config) -> anyhow::Result<Db> {
    let path = config.db_path();
    if !path.is_file() {
        anyhow::bail!(
            "there is no database at {}; start the hub once (gatehouse serve) to create it",
            path.display()
        );
    }
    let key = configured_key(config)?.map(|(key, source)| (Sealer::new(&key), source));
    crate::db::sealed::open_read_only(&path, key, &config.key_file_path())
}

/// The configured key, if there is one (without creating it).
pub(crate) fn configured_key(config: &Config) -> anyhow::Result<Option<(SecretKey, KeySource)>> {
    crate::secrets::configured_key(&config.secret_key, &config.key_file_path())
}

/// The configured key, or a new one written to the key file when there is none and the
/// database holds nothing sealed. A database with sealed values and no key is refused: a
/// new key could never open them.
pub(crate) fn load_or_create_key(config: &Config) -> anyhow::Result<(SecretKey, KeySource)> {
    use anyhow::Context;
    if let Some(found) = configured_key(config)? {
        return Ok(found);
    }
    let file = config.key_file_path();
    if let Some(id) = crate::db::sealed::key_ids_at(&config.db_path())?
        .into_iter()
        .next()
    {
        anyhow::bail!(
            "no secret key: {} does not exist and secret_key is not set, but the database holds \
             secrets sealed under key {id}. Put back the key file that goes with this database \
             (a restored backup needs the key file of the server it came from)",
            file.display()
        );
    }
    let key = SecretKey::generate();
    crate::secrets::write_key_file(&file, &key)
        .with_context(|| format!("cannot create the key file {}", file.display()))?;
    tracing::info!(
        path = %file.display(),
        key_id = key.id(),
        "made a new secret key for agent tokens and TOTP secrets: back it up apart from the database"
    );
    Ok((key, KeySource::File(file)))
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
        let for_db = config.clone();
        let db = crate::blocking::run(move || open_database(&for_db)).await??;
        let sessions = open_session_store(&config).await?;
        let setup = Arc::new(setup::SetupGate::prepare(&config, &db).await?);
        sync_declared_agents(&config, &db).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        // The address really bound (port 0 picks one): users' sites are kept off it.
        let mut config = Arc::unwrap_or_clone(config);
        config.listen = listener.local_addr()?;
        let config = Arc::new(config);
        let attempts = config.security.login_attempts_per_minute;
        let state = AppState {
            fleet: Arc::new(
                crate::fleet::Fleet::new(Duration::from_secs(config.fleet.push_timeout_secs))
                    .with_deploy_wait(Duration::from_secs(config.fleet.deploy_wait_secs)),
            ),
            log_hub: Arc::new(crate::fleet::logs::LogHub::new(Duration::from_secs(
                config.fleet.log_idle_grace_secs,
            ))),
            http_metrics: crate::metrics::HttpMetrics::new(),
            deploys: Default::default(),
            login_limiter: Arc::new(Limiter::per_minute(attempts)),
            totp_limiter: Arc::new(Limiter::per_minute(attempts)),
            config,
            db,
            setup,
            sessions,
        };
        Ok(Self { listener, state })
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
        use tower_sessions::ExpiredDeletion;
        let addr = self.local_addr();
        self.state.setup.announce(&self.state.config, addr);
        tracing::info!(%addr, "gatehouse is listening");
        let sweeper = tokio::spawn(
            self.state
                .sessions
                .clone()
                .continuously_delete_expired(tokio::time::Duration::from_secs(600)),
        );
        let reconciler = crate::fleet::reconcile::spawn(
            self.state.db.clone(),
            self.state.fleet.clone(),
            self.state.config.clone(),
        );
        let security = &self.state.config.security;
        let limits = crate::http_server::Limits {
            header_read_timeout: Duration::from_secs(security.header_read_timeout_secs),
            max_connections: usize::try_from(security.max_connections).unwrap_or(usize::MAX),
        };
        let app = router(self.state);
        let result = crate::http_server::serve(self.listener, None, app, limits, shutdown).await;
        sweeper.abort();
        reconciler.abort();
        result
    }
}

/// Agents declared in the config file are added, updated or removed to match it.
async fn sync_declared_agents(config: &Config, db: &Db) -> anyhow::Result<()> {
    let declared = config
        .fleet
        .agents
        .iter()
        .map(|a| {
            Ok((
                a.name.clone(),
                a.url.clone(),
                a.resolve_token().map_err(anyhow::Error::msg)?,
                a.resolve_tls().map_err(anyhow::Error::msg)?,
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    db.run(move |c| crate::db::agents::sync_declared(c, &declared))
        .await?;
    Ok(())
}

/// The cookie-session store lives in the same SQLite file, in its own table.
async fn open_session_store(config: &Config) -> anyhow::Result<RusqliteStore> {
    use tower_sessions_rusqlite_store::tokio_rusqlite;
    let conn = tokio_rusqlite::Connection::open(config.db_path()).await?;
    conn.call(|c| {
        c.busy_timeout(std::time::Duration::from_secs(5))?;
        // The store creates a session in a transaction that reads, then writes. Begun
        // DEFERRED, a write committed by another connection in between makes SQLite refuse
        // the upgrade at once (no busy wait), and a sign-in answered 500. IMMEDIATE takes
        // the write lock up front, waiting its turn like every other writer.
        c.set_transaction_behavior(tokio_rusqlite::TransactionBehavior::Immediate);
        c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
    })
    .await
    .map_err(|e| anyhow::anyhow!("session store: {e}"))?;
    let store = RusqliteStore::new(conn);
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("session store migration: {e}"))?;
    Ok(store)
}

#[cfg(test)]
mod session_store_tests {
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::SessionStore;

    /// Sessions are created while another connection keeps writing to the same file: every
    /// creation must wait its turn, never fail (a sign-in would answer 500).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_are_created_while_others_write() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        std::fs::create_dir_all(&config.data_dir).unwrap();
        let store = super::open_session_store(&config).await.unwrap();
        let path = config.db_path();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let c = rusqlite::Connection::open(path).unwrap();
                c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                c.execute_batch("CREATE TABLE IF NOT EXISTS churn (n INTEGER)")
                    .unwrap();
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 200_000 {
                    c.execute("INSERT INTO churn (n) VALUES (?1)", [n]).unwrap();
                    n += 1;
                    // A breath between writes, as any real writer takes: SQLite's busy wait
                    // polls, so a loop that retakes the lock at once can starve a waiter past
                    // any timeout on a loaded machine, which is not what this test is about.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            })
        };
        let mut failures = Vec::new();
        for _ in 0..300 {
            let mut record = Record {
                id: Id::default(),
                data: Default::default(),
                expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
            };
            if let Err(e) = store.create(&mut record).await {
                failures.push(e.to_string());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert!(
            failures.is_empty(),
            "{} failed: {:?}",
            failures.len(),
            failures.first()
        );
    }
}
