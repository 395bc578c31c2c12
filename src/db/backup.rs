//! A copy of the live database and the checks a copy must pass before it is trusted:
//! SQLite's online backup API, which is safe while the portal writes, then an integrity
//! check and the schema version.

use super::MIGRATIONS;
use anyhow::{Context, bail};
use rusqlite::{Connection, MAIN_DB, OpenFlags};
use std::path::Path;
use std::time::Duration;

/// Copies the database at `source` to the new file `target` (self-contained, private to
/// this user), checks the copy and returns its schema version. Nothing is left at `target`
/// unless the whole copy is sound.
pub(crate) fn copy_online(source: &Path, target: &Path) -> anyhow::Result<i64> {
    let partial = target.with_extension("partial");
    // The copy holds live session ids: readable by this user alone, like the database.
    crate::db::files::create_private_file(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let conn = Connection::open(source)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // The online backup API copies page by page, retrying while the portal writes.
    conn.backup(MAIN_DB, &partial, None)
        .with_context(|| format!("backing up to {}", partial.display()))?;
    // A self-contained file: no -wal beside it to forget.
    Connection::open(&partial)?.pragma_update(None, "journal_mode", "DELETE")?;
    let version = check(&partial)?;
    std::fs::rename(&partial, target)?;
    Ok(version)
}

/// Opens `path` read-only and checks it is a sound Gatehouse database; returns its version.
pub(crate) fn check(path: &Path) -> anyhow::Result<i64> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .with_context(|| format!("{} is not an SQLite database", path.display()))?;
    if integrity != "ok" {
        bail!(
            "{} fails SQLite's integrity check: {integrity}",
            path.display()
        );
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let has_users: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'users'",
        [],
        |r| r.get(0),
    )?;
    if version < 1 || !has_users {
        bail!("{} is not a Gatehouse database", path.display());
    }
    if version > known {
        bail!(
            "{} comes from a newer Gatehouse (schema {version}, this one knows {known})",
            path.display()
        );
    }
    Ok(version)
}
