//! The `backup_codes` table: argon2 hashes of single-use second-factor codes.

use super::{DbError, now};
use rusqlite::{Connection, params};

/// Replaces all of a user's codes with new hashes.
pub fn replace(conn: &Connection, user_id: i64, hashes: &[String]) -> Result<(), DbError> {
    conn.execute("DELETE FROM backup_codes WHERE user_id = ?1", [user_id])?;
    let mut stmt = conn.prepare("INSERT INTO backup_codes (user_id, code_hash) VALUES (?1, ?2)")?;
    for hash in hashes {
        stmt.execute(params![user_id, hash])?;
    }
    Ok(())
}

/// The unused codes: (row id, hash).
pub fn unused(conn: &Connection, user_id: i64) -> Result<Vec<(i64, String)>, DbError> {
    let mut stmt = conn
        .prepare("SELECT id, code_hash FROM backup_codes WHERE user_id = ?1 AND used_at IS NULL")?;
    let rows = stmt
        .query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Marks a code used; false if it was already used (a concurrent login won the race).
pub fn mark_used(conn: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(conn.execute(
        "UPDATE backup_codes SET used_at = ?2 WHERE id = ?1 AND used_at IS NULL",
        params![id, now()],
    )? == 1)
}

pub fn count_unused(conn: &Connection, user_id: i64) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM backup_codes WHERE user_id = ?1 AND used_at IS NULL",
        [user_id],
        |r| r.get(0),
    )?)
}
