//! Sealed secrets in the database. Each connection gets two SQL functions (`gh_seal`,
//! `gh_open`) so the table modules seal and open agent tokens and TOTP secrets in their
//! queries; the key itself never reaches SQLite. Here too: the inventory of sealed columns
//! the start-up check and a key rotation walk, and opening the hub's database with its key.

use super::Db;
use crate::secrets::{Field, KeySource, OpenError, Sealer, find_key_file_beside, sealed_key_id};
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// Registers `gh_seal(field, row, plaintext)` and `gh_open(field, row, stored)` on `conn`.
/// NULL stays NULL. Without a key both fail with a message saying so. DIRECTONLY keeps them
/// out of triggers and views, where a crafted schema could call them.
pub(crate) fn register_functions(
    conn: &Connection,
    sealer: Option<Arc<Sealer>>,
) -> rusqlite::Result<()> {
    fn args(
        ctx: &rusqlite::functions::Context<'_>,
    ) -> rusqlite::Result<Option<(Field, i64, String)>> {
        let field: String = ctx.get(0)?;
        let field =
            Field::parse(&field).ok_or_else(|| user_error(format!("unknown field {field}")))?;
        let row: i64 = ctx.get(1)?;
        let value: Option<String> = ctx.get(2)?;
        Ok(value.map(|v| (field, row, v)))
    }
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    let seal_with = sealer.clone();
    conn.create_scalar_function("gh_seal", 3, flags, move |ctx| {
        let Some((field, row, value)) = args(ctx)? else {
            return Ok(None);
        };
        let sealer = seal_with.as_ref().ok_or_else(no_key)?;
        Ok(Some(sealer.seal(field, row, &value)))
    })?;
    conn.create_scalar_function("gh_open", 3, flags, move |ctx| {
        let Some((field, row, value)) = args(ctx)? else {
            return Ok(None);
        };
        let sealer = sealer.as_ref().ok_or_else(no_key)?;
        sealer
            .open(field, row, &value)
            .map(Some)
            .map_err(|e| user_error(format!("{} of row {row} {e}", field.name())))
    })?;
    Ok(())
}

fn user_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}

fn no_key() -> rusqlite::Error {
    user_error("this connection has no secret key: stored secrets cannot be read or written".into())
}

// ----- the inventory: start-up pass, verification, rotation ------------------------------

/// One stored secret, as it is in the database.
#[derive(Debug, Clone)]
struct Stored {
    field: Field,
    row: i64,
    /// How to name the row to a person (agent name, user email).
    label: String,
    value: String,
}

impl Stored {
    /// How a person clears this value when it no longer opens.
    fn remedy(&self) -> String {
        match self.field {
            Field::AgentToken => format!(
                "sqlite3 <database> \"DELETE FROM agents WHERE id = {}\", then add the agent again \
                 (agents declared in the config file come back by themselves)",
                self.row
            ),
            Field::TotpSecret | Field::TotpEnrolment => format!(
                "gatehouse user reset-2fa {} (they enrol again)",
                self.label.trim_start_matches("user ")
            ),
        }
    }
}

fn stored_secrets(conn: &Connection) -> rusqlite::Result<Vec<Stored>> {
    let mut out = Vec::new();
    let mut stmt = conn.prepare("SELECT id, name, token FROM agents ORDER BY id")?;
    for row in stmt.query_map([], |r| {
        Ok(Stored {
            field: Field::AgentToken,
            row: r.get(0)?,
            label: format!("agent {:?}", r.get::<_, String>(1)?),
            value: r.get(2)?,
        })
    })? {
        out.push(row?);
    }
    let mut stmt = conn.prepare(
        "SELECT id, email, totp_secret FROM users WHERE totp_secret IS NOT NULL ORDER BY id",
    )?;
    for row in stmt.query_map([], |r| {
        Ok(Stored {
            field: Field::TotpSecret,
            row: r.get(0)?,
            label: format!("user {}", r.get::<_, String>(1)?),
            value: r.get(2)?,
        })
    })? {
        out.push(row?);
    }
    Ok(out)
}

fn update_stored(conn: &Connection, s: &Stored, value: &str) -> rusqlite::Result<()> {
    match s.field {
        Field::AgentToken => conn.execute(
            "UPDATE agents SET token = ?2 WHERE id = ?1",
            params![s.row, value],
        )?,
        Field::TotpSecret => conn.execute(
            "UPDATE users SET totp_secret = ?2 WHERE id = ?1",
            params![s.row, value],
        )?,
        Field::TotpEnrolment => 0,
    };
    Ok(())
}

/// Rows still in plaintext from before secrets were sealed (listed by migration 6).
fn pending(conn: &Connection) -> rusqlite::Result<BTreeSet<(String, i64)>> {
    let mut stmt = conn.prepare("SELECT field, row_id FROM secrets_pending")?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// The ids of the keys the database's sealed values name.
pub fn key_ids_in(conn: &Connection) -> rusqlite::Result<BTreeSet<String>> {
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('agents', 'users')",
        [],
        |r| r.get(0),
    )?;
    if tables < 2 {
        return Ok(BTreeSet::new());
    }
    // Plaintext an older version left (listed since schema 6) names no key, whatever it reads.
    let listed: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'secrets_pending'",
        [],
        |r| r.get(0),
    )?;
    let pending = if listed > 0 {
        pending(conn)?
    } else {
        BTreeSet::new()
    };
    Ok(stored_secrets(conn)?
        .iter()
        .filter(|s| !pending.contains(&(s.field.name().to_string(), s.row)))
        .filter_map(|s| sealed_key_id(&s.value).map(str::to_string))
        .collect())
}

/// Why the stored secrets and the key do not go together. Start-up stops on it.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "the database holds secrets sealed under key {found}, but {source_desc} is key {configured}. \
         Refusing to start rather than lose the agent tokens and two-factor secrets. \
         Put back the key file that goes with this database (a backup needs the key file \
         of the server it came from){hint}"
    )]
    WrongKey {
        found: String,
        configured: String,
        source_desc: String,
        hint: String,
    },
    #[error(
        "stored secrets do not open with the configured key, so the database was altered or \
         damaged. Refusing to start; restore it from a backup, or clear each value:\n{0}"
    )]
    Unreadable(String),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// What the start-up pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Prepared {
    /// Plaintext values from an older version, now sealed.
    pub sealed_legacy: usize,
    /// Sealed values checked.
    pub verified: usize,
}

/// Seals the plaintext rows an upgrade left (in one transaction) and checks that every
/// stored secret opens with `sealer`. Refuses, changing nothing, when values are sealed
/// under another key or fail authentication.
pub fn prepare(
    conn: &mut Connection,
    sealer: &Sealer,
    source: &KeySource,
) -> Result<Prepared, CheckError> {
    let tx = conn.transaction()?;
    let pending = pending(&tx)?;
    let mut wrong_keys = BTreeSet::new();
    let mut unreadable = Vec::new();
    let mut legacy = Vec::new();
    let mut verified = 0;
    for s in stored_secrets(&tx)? {
        if pending.contains(&(s.field.name().to_string(), s.row)) {
            legacy.push(s);
            continue;
        }
        match sealer.open(s.field, s.row, &s.value) {
            Ok(_) => verified += 1,
            Err(OpenError::WrongKey { found, .. }) => {
                wrong_keys.insert(found);
            }
            Err(e) => unreadable.push(format!(
                "  {label} ({field} of row {row}) {e}\n    to clear it: {fix}",
                label = s.label,
                field = s.field.name(),
                row = s.row,
                fix = s.remedy(),
            )),
        }
    }
    if let Some(found) = wrong_keys.into_iter().next() {
        let hint = find_key_file_beside(source, &found)
            .map(|p| format!("; {} holds key {found}", p.display()))
            .unwrap_or_default();
        return Err(CheckError::WrongKey {
            found,
            configured: sealer.key_id().to_string(),
            source_desc: source.to_string(),
            hint,
        });
    }
    if !unreadable.is_empty() {
        return Err(CheckError::Unreadable(unreadable.join("\n")));
    }
    for s in &legacy {
        update_stored(&tx, s, &sealer.seal(s.field, s.row, &s.value))?;
    }
    tx.execute("DELETE FROM secrets_pending", [])?;
    tx.commit()?;
    if !legacy.is_empty() {
        // The plaintext is gone from the table; make it gone from the WAL file too.
        checkpoint(conn)?;
    }
    Ok(Prepared {
        sealed_legacy: legacy.len(),
        verified,
    })
}

/// Copies the WAL into the database and truncates it, so replaced values leave no trace.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .optional()
        .map(|_| ())
}

/// How many values of each field a rotation re-sealed.
pub type Resealed = BTreeMap<&'static str, usize>;

/// Re-seals every stored secret from `old` to `new` in one transaction, then checkpoints.
/// Nothing changes unless every value opens with `old`.
pub fn reseal_all(conn: &mut Connection, old: &Sealer, new: &Sealer) -> anyhow::Result<Resealed> {
    let tx = conn.transaction()?;
    let mut counts = Resealed::new();
    for s in stored_secrets(&tx)? {
        let plain = old.open(s.field, s.row, &s.value).map_err(|e| {
            anyhow::anyhow!(
                "{} ({} of row {}) {e}; nothing was changed",
                s.label,
                s.field.name(),
                s.row
            )
        })?;
        update_stored(&tx, &s, &new.seal(s.field, s.row, &plain))?;
        *counts.entry(s.field.name()).or_default() += 1;
    }
    tx.commit()?;
    checkpoint(conn)?;
    Ok(counts)
}

/// The key ids sealed values in the database at `path` name (empty for no database).
pub fn key_ids_at(path: &Path) -> anyhow::Result<BTreeSet<String>> {
    if !path.is_file() {
        return Ok(BTreeSet::new());
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(key_ids_in(&conn)?)
}

/// Refuses, before anything is written, a key that is not the one the database's sealed
/// values name.
fn check_key_ids(path: &Path, sealer: &Sealer, source: &KeySource) -> anyhow::Result<()> {
    if let Some(found) = key_ids_at(path)?
        .into_iter()
        .find(|id| id != sealer.key_id())
    {
        let hint = find_key_file_beside(source, &found)
            .map(|p| format!("; {} holds key {found}", p.display()))
            .unwrap_or_default();
        return Err(CheckError::WrongKey {
            found,
            configured: sealer.key_id().to_string(),
            source_desc: source.to_string(),
            hint,
        }
        .into());
    }
    Ok(())
}

// ----- opening the database with its key ---------------------------------------------------

/// The database at `path`, ready to serve with `key`: a key that does not fit is refused
/// before the schema is touched; then the schema is migrated, plaintext left by an older
/// version sealed, and every stored secret checked against the key. Blocks.
pub fn open(path: &Path, sealer: Arc<Sealer>, source: &KeySource) -> anyhow::Result<Db> {
    use anyhow::Context;
    check_key_ids(path, &sealer, source)?;
    let db = Db::open_with(path, Some(sealer.clone()))
        .with_context(|| format!("opening database {}", path.display()))?;
    db.migrate()
        .with_context(|| format!("migrating database {}", path.display()))?;
    let prepared = db
        .with_conn(|c| Ok(prepare(c, &sealer, source)))?
        .map_err(anyhow::Error::new)?;
    if prepared.sealed_legacy > 0 {
        tracing::info!(
            count = prepared.sealed_legacy,
            key_id = sealer.key_id(),
            "sealed secrets an older version stored in plaintext"
        );
    }
    tracing::debug!(key_id = sealer.key_id(), source = %source, verified = prepared.verified, "secret key loaded");
    Ok(db)
}

/// The existing database at `path` for reading only, with the configured key if there is
/// one (`key_file` names where it would be, for the message when it is missing): the schema
/// as it is (never migrated), nothing sealed. A database an older version left (schema
/// behind, or plaintext secrets not yet sealed) is refused. Blocks.
pub fn open_read_only(
    path: &Path,
    key: Option<(Sealer, KeySource)>,
    key_file: &Path,
) -> anyhow::Result<Db> {
    use anyhow::Context;
    const UPGRADE: &str = "start the hub once (gatehouse serve) to upgrade the database";
    let sealer = match key {
        Some((sealer, source)) => {
            let sealer = Arc::new(sealer);
            check_key_ids(path, &sealer, &source)?;
            Some(sealer)
        }
        None => {
            if let Some(id) = key_ids_at(path)?.into_iter().next() {
                anyhow::bail!(
                    "no secret key: {} does not exist and secret_key is not set, but the \
                     database holds secrets sealed under key {id}. Put back the key file that \
                     goes with this database",
                    key_file.display()
                );
            }
            None
        }
    };
    let db = Db::open_with(path, sealer)
        .with_context(|| format!("opening database {}", path.display()))?;
    let known = super::MIGRATIONS.last().map_or(0, |m| m.version);
    let (version, pending) = db.with_conn(|c| {
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let pending = if version >= 6 { pending(c)?.len() } else { 0 };
        Ok((version, pending))
    })?;
    if version > known {
        return Err(super::DbError::TooNew {
            found: version,
            known,
        }
        .into());
    }
    if version < known {
        anyhow::bail!(
            "the database is at schema version {version}, older than this binary's {known}; \
             {UPGRADE}"
        );
    }
    if pending > 0 {
        anyhow::bail!(
            "the database holds {pending} secret(s) an older version stored in plaintext; \
             {UPGRADE}"
        );
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretKey;

    fn sealer() -> Sealer {
        Sealer::new(&SecretKey::generate())
    }

    #[tokio::test]
    async fn a_rotation_that_cannot_open_every_value_changes_nothing() {
        use crate::db::Db;
        use crate::domain::tls::TlsSettings;
        let dir = tempfile::tempdir().unwrap();
        let old = Arc::new(sealer());
        let db = Db::open_with(&dir.path().join("gh.db"), Some(old.clone())).unwrap();
        db.migrate().unwrap();
        let new = sealer();
        let (before, failed, after) = db
            .run(move |c| {
                let tls = TlsSettings::default();
                for name in ["a", "b"] {
                    let token = crate::domain::Secret::new(format!("token-{name}-0123456789abc"));
                    crate::db::agents::insert(c, name, "http://127.0.0.1:1", &token, false, &tls)
                        .unwrap();
                }
                // Agent b's token replaced by agent a's: it no longer opens.
                c.execute_batch(
                    "UPDATE agents SET token = (SELECT token FROM agents WHERE name = 'a')
                     WHERE name = 'b'",
                )?;
                let tokens = |c: &Connection| -> Vec<String> {
                    c.prepare("SELECT token FROM agents ORDER BY id")
                        .unwrap()
                        .query_map([], |r| r.get(0))
                        .unwrap()
                        .map(Result::unwrap)
                        .collect()
                };
                let before = tokens(c);
                let failed = reseal_all(c, &old, &new).unwrap_err().to_string();
                Ok((before, failed, tokens(c)))
            })
            .await
            .unwrap();
        assert!(
            failed.contains("agent \"b\"") && failed.contains("nothing was changed"),
            "{failed}"
        );
        assert_eq!(before, after);
    }
}
