//! The `changelog` table: every vhost change with who made it and the state before and
//! after, written in the same transaction as the change.

use super::DbError;
use super::vhosts::Snapshot;
use rusqlite::{Connection, OptionalExtension, Row, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Create,
    Update,
    Delete,
    Toggle,
    Revert,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Toggle => "toggle",
            Action::Revert => "revert",
        }
    }
}

/// A stored entry, snapshots decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub user_id: Option<i64>,
    pub user_email: String,
    pub(crate) vhost_id: Option<i64>,
    pub action: String,
    pub domain: String,
    pub old: Option<Snapshot>,
    pub new: Option<Snapshot>,
    pub(crate) created_at: i64,
}

/// Who made a change.
pub struct Author<'a> {
    pub user_id: i64,
    pub email: &'a str,
}

pub(crate) fn record(
    conn: &Connection,
    author: &Author<'_>,
    action: Action,
    vhost_id: i64,
    old: Option<&Snapshot>,
    new: Option<&Snapshot>,
) -> Result<i64, DbError> {
    let encode = |s: Option<&Snapshot>| -> Result<Option<String>, DbError> {
        s.map(|s| serde_json::to_string(s).map_err(|e| DbError::Encode(e.to_string())))
            .transpose()
    };
    let domain = new.or(old).map(|s| s.domain.clone()).unwrap_or_default();
    let owner = new.or(old).and_then(|s| s.owner_id);
    let prev_owner = old.and_then(|s| s.owner_id);
    conn.execute(
        "INSERT INTO changelog (user_id, user_email, vhost_id, owner_id, prev_owner_id, action, domain, old, new)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            author.user_id,
            author.email,
            vhost_id,
            owner,
            prev_owner,
            action.as_str(),
            domain,
            encode(old)?,
            encode(new)?
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

const COLUMNS: &str = "id, user_id, user_email, vhost_id, action, domain, old, new, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    let decode = |i: usize, text: Option<String>| -> rusqlite::Result<Option<Snapshot>> {
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
            })
        })
        .transpose()
    };
    Ok(Entry {
        id: r.get(0)?,
        user_id: r.get(1)?,
        user_email: r.get(2)?,
        vhost_id: r.get(3)?,
        action: r.get(4)?,
        domain: r.get(5)?,
        old: decode(6, r.get(6)?)?,
        new: decode(7, r.get(7)?)?,
        created_at: r.get(8)?,
    })
}

/// Which entries a list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only entries about vhosts this user owns or owned.
    pub visible_to: Option<i64>,
    pub domain: Option<String>,
    pub user_email: Option<String>,
    pub limit: u32,
}

/// Newest first.
pub fn list(conn: &Connection, f: &Filter) -> Result<Vec<Entry>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM changelog
         WHERE (?1 IS NULL OR owner_id = ?1 OR prev_owner_id = ?1)
           AND (?2 IS NULL OR instr(domain, lower(?2)) > 0)
           AND (?3 IS NULL OR instr(lower(user_email), lower(?3)) > 0)
         ORDER BY id DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(
            params![f.visible_to, f.domain, f.user_email, f.limit.max(1)],
            from_row,
        )?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub(crate) fn find(conn: &Connection, id: i64) -> Result<Option<Entry>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM changelog WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

/// The id of the latest entry (0 when there is none).
pub(crate) fn last_id(conn: &Connection) -> Result<i64, DbError> {
    Ok(
        conn.query_row("SELECT coalesce(max(id), 0) FROM changelog", [], |r| {
            r.get(0)
        })?,
    )
}

/// The entries written after entry `after`, oldest first.
pub(crate) fn since(conn: &Connection, after: i64) -> Result<Vec<Entry>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM changelog WHERE id > ?1 ORDER BY id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map([after], from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn count(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row("SELECT count(*) FROM changelog", [], |r| r.get(0))?)
}
