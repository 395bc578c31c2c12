//! SQLite storage: an r2d2 pool whose every connection runs in WAL mode with foreign keys
//! and a busy timeout, embedded migrations, and one module of plain functions per table.
//!
//! Storage functions return `Option` for "no such row"; a failing database is always an
//! error, never mistaken for "not found".

pub mod agents;
pub mod api_tokens;
pub mod audit;
pub(crate) mod backup;
pub(crate) mod backup_codes;
pub mod changelog;
pub mod deploys;
pub(crate) mod files;
pub mod grants;
pub(crate) mod login_devices;
mod migrations;
pub mod quarantine;
pub(crate) mod sealed;
pub mod sessions;
pub(crate) mod settings;
pub mod users;
pub mod vhosts;

use crate::secrets::Sealer;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use migrations::{MIGRATIONS, Migration};

/// Connections wait this long for a writer to finish before giving up with SQLITE_BUSY.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a database operation failed. Shown to nobody; logged and turned into a 500.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Blocking(#[from] crate::blocking::BlockingError),
    #[error("cannot create the data directory or database file {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode a stored value: {0}")]
    Encode(String),
    #[error(
        "the database is at schema version {found}, newer than this binary knows ({known}); \
         run a newer gatehouse"
    )]
    TooNew { found: i64, known: i64 },
    #[error("this database handle has no secret key: stored secrets cannot be read or written")]
    NoKey,
}

/// A cheap, cloneable handle on the connection pool.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<SqliteConnectionManager>,
    sealer: Option<Arc<Sealer>>,
}

impl Db {
    /// Opens (creating if needed) the database file and its directory, without a secret key:
    /// enough for everything but agent tokens and TOTP secrets. Does not migrate.
    pub fn open(path: &Path) -> Result<Self, DbError> {
        Self::open_with(path, None)
    }

    /// Opens the database with the key that seals and opens stored secrets (see
    /// [`sealed`]); every connection gets `gh_seal`/`gh_open`. Does not migrate.
    pub(crate) fn open_with(path: &Path, sealer: Option<Arc<Sealer>>) -> Result<Self, DbError> {
        // Private from the start (see `files`): the directory 0700 if it is new, the file
        // 0600 before SQLite makes it.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            files::create_private_dir(dir).map_err(|source| DbError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        files::create_private_file(path).map_err(|source| DbError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
        let for_init = sealer.clone();
        let manager = SqliteConnectionManager::file(path).with_init(move |conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // WAL lets readers run beside the writer; FULL sync makes an acknowledged
            // change survive power loss, not just a crash. Secure delete zeroes what a
            // change frees, so a replaced secret leaves no old copy in the file.
            conn.execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA secure_delete = ON;",
            )?;
            sealed::register_functions(conn, for_init.clone())
        });
        let pool = r2d2::Pool::builder()
            .max_size(8)
            // Connections beyond one are made when needed and closed after a minute idle,
            // so an idle hub does not keep eight page caches.
            .min_idle(Some(1))
            .idle_timeout(Some(Duration::from_secs(60)))
            .connection_timeout(Duration::from_secs(10))
            .build(manager)?;
        Ok(Self { pool, sealer })
    }

    /// The key that seals stored secrets; `NoKey` for a handle opened without one.
    pub(crate) fn sealer(&self) -> Result<&Arc<Sealer>, DbError> {
        self.sealer.as_ref().ok_or(DbError::NoKey)
    }

    /// Opens the database and brings its schema up to date.
    pub fn open_and_migrate(path: &Path) -> Result<Self, DbError> {
        let db = Self::open(path)?;
        db.migrate()?;
        Ok(db)
    }

    /// Applies every embedded migration the database has not seen yet; returns how many ran.
    pub(crate) fn migrate(&self) -> Result<usize, DbError> {
        let mut conn = self.pool.get()?;
        migrations::apply(&mut conn)
    }

    /// Runs `f` with a pooled connection on this thread (start-up and CLI code only: it
    /// blocks).
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let mut conn = self.pool.get()?;
        f(&mut conn)
    }

    /// Runs `f` with a pooled connection on the blocking pool.
    pub async fn run<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        crate::blocking::run(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await?
    }
}

/// Seconds since the Unix epoch, the unit of every timestamp column.
/// One trivial query: the database answers.
pub(crate) fn ping(conn: &Connection) -> Result<(), DbError> {
    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_has_wal_foreign_keys_and_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_and_migrate(&dir.path().join("nested/gh.db")).unwrap();
        for _ in 0..3 {
            let (mode, fk, busy): (String, i64, i64) = db
                .run(|c| {
                    Ok((
                        c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                        c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
                        c.query_row("PRAGMA busy_timeout", [], |r| r.get(0))?,
                    ))
                })
                .await
                .unwrap();
            assert_eq!((mode.as_str(), fk, busy), ("wal", 1, 5000));
        }
    }

    #[tokio::test]
    async fn migrations_are_versioned_and_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gh.db");
        let db = Db::open(&path).unwrap();
        assert_eq!(db.migrate().unwrap(), MIGRATIONS.len());
        assert_eq!(db.migrate().unwrap(), 0);
        let version: i64 = db
            .run(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(version, MIGRATIONS.last().unwrap().version);
    }

    #[tokio::test]
    async fn a_database_from_a_newer_binary_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("gh.db")).unwrap();
        db.run(|c| Ok(c.execute_batch("PRAGMA user_version = 999")?))
            .await
            .unwrap();
        assert!(matches!(
            db.migrate(),
            Err(DbError::TooNew { found: 999, .. })
        ));
    }
}
