//! The `auth_sessions` table: which browsers are signed in as whom.

use super::users::{self, User};
use super::{DbError, now};
use rusqlite::{Connection, OptionalExtension, params};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSession {
    pub id: String,
    pub(crate) user_id: i64,
    pub(crate) created_at: i64,
    pub(crate) last_seen_at: i64,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

pub(crate) fn create(
    conn: &Connection,
    id: &str,
    user_id: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(), DbError> {
    let t = now();
    conn.execute(
        "INSERT INTO auth_sessions (id, user_id, created_at, last_seen_at, ip, user_agent)
         VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
        params![id, user_id, t, ip, user_agent],
    )?;
    Ok(())
}

/// The session and its user, or None when the session was revoked or never existed.
pub(crate) fn lookup(conn: &Connection, id: &str) -> Result<Option<(AuthSession, User)>, DbError> {
    let session = conn
        .query_row(
            "SELECT id, user_id, created_at, last_seen_at, ip, user_agent FROM auth_sessions WHERE id = ?1",
            [id],
            from_row,
        )
        .optional()?;
    let Some(session) = session else {
        return Ok(None);
    };
    Ok(users::find(conn, session.user_id)?.map(|user| (session, user)))
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthSession> {
    Ok(AuthSession {
        id: r.get(0)?,
        user_id: r.get(1)?,
        created_at: r.get(2)?,
        last_seen_at: r.get(3)?,
        ip: r.get(4)?,
        user_agent: r.get(5)?,
    })
}

pub(crate) fn touch(conn: &Connection, id: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE auth_sessions SET last_seen_at = ?2 WHERE id = ?1",
        params![id, now()],
    )?;
    Ok(())
}

pub fn list_for_user(conn: &Connection, user_id: i64) -> Result<Vec<AuthSession>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, user_id, created_at, last_seen_at, ip, user_agent FROM auth_sessions
         WHERE user_id = ?1 ORDER BY last_seen_at DESC",
    )?;
    let rows = stmt
        .query_map([user_id], from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Deletes one session of `user_id`; returns whether it existed.
pub(crate) fn delete(conn: &Connection, user_id: i64, id: &str) -> Result<bool, DbError> {
    Ok(conn.execute(
        "DELETE FROM auth_sessions WHERE id = ?1 AND user_id = ?2",
        params![id, user_id],
    )? == 1)
}

/// Signs a user out everywhere, except `keep` (their current browser) when given.
pub(crate) fn delete_all_for_user(
    conn: &Connection,
    user_id: i64,
    keep: Option<&str>,
) -> Result<usize, DbError> {
    Ok(conn.execute(
        "DELETE FROM auth_sessions WHERE user_id = ?1 AND (?2 IS NULL OR id != ?2)",
        params![user_id, keep],
    )?)
}
