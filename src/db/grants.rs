//! The `name_grants` table: the names an admin delegated to each `user` (see
//! `domain::vhost::Grant` for what a pattern grants).

use super::DbError;
use rusqlite::{Connection, params};

/// One stored grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredGrant {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    /// Canonical pattern: `app.example.com` or `*.team.example.com`.
    pub(crate) pattern: String,
    pub(crate) created_at: i64,
}

/// A user's grants, by pattern.
pub(crate) fn list(conn: &Connection, user_id: i64) -> Result<Vec<StoredGrant>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, user_id, pattern, created_at FROM name_grants
         WHERE user_id = ?1 ORDER BY pattern",
    )?;
    let rows = stmt
        .query_map([user_id], |r| {
            Ok(StoredGrant {
                id: r.get(0)?,
                user_id: r.get(1)?,
                pattern: r.get(2)?,
                created_at: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Grants `pattern` (canonical) to `user_id`; false when they already have it.
pub fn insert(
    conn: &Connection,
    user_id: i64,
    pattern: &str,
    by: Option<i64>,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO name_grants (user_id, pattern, created_by) VALUES (?1, ?2, ?3)",
        params![user_id, pattern, by],
    )?;
    Ok(n == 1)
}

/// Takes grant `id` away from `user_id`; the pattern it held, or None when there was none.
pub(crate) fn delete(conn: &Connection, user_id: i64, id: i64) -> Result<Option<String>, DbError> {
    let pattern: Option<String> = conn
        .query_row(
            "DELETE FROM name_grants WHERE id = ?1 AND user_id = ?2 RETURNING pattern",
            params![id, user_id],
            |r| r.get(0),
        )
        .map(Some)
        .or_else(|e| match e {
            rusqlite::Error::QueryReturnedNoRows => Ok(None),
            e => Err(e),
        })?;
    Ok(pattern)
}
