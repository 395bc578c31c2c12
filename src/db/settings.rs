//! The `settings` table: values the admin sets in the portal, stored as JSON text by key,
//! which win over the config file's once saved.

use super::DbError;
use rusqlite::{Connection, OptionalExtension, params};

/// The list stored under `key`; None when the portal never saved one.
pub(crate) fn list(conn: &Connection, key: &str) -> Result<Option<Vec<String>>, DbError> {
    Ok(value(conn, key)?.map(|text| serde_json::from_str(&text).unwrap_or_default()))
}

/// Stores `items` as the list under `key`, replacing what was there.
pub(crate) fn put_list(conn: &Connection, key: &str, items: &[&str]) -> Result<(), DbError> {
    put(conn, key, &serde_json::to_string(items).unwrap_or_default())
}

/// The text stored under `key`; None when the portal never saved one.
pub(crate) fn value(conn: &Connection, key: &str) -> Result<Option<String>, DbError> {
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row(params![key], |r| r.get(0))
        .optional()?)
}

/// Stores `value` under `key`, replacing what was there.
pub(crate) fn put(conn: &Connection, key: &str, value: &str) -> Result<(), DbError> {
    conn.prepare_cached(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![key, value])?;
    Ok(())
}
