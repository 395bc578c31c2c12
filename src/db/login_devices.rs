//! The `login_devices` table: browsers that completed a sign-in, each known by the SHA-256
//! of a random value in its `gatehouse_device` cookie. Being one gives no access at all; it
//! only gives that browser its own sign-in limit (see `web::login`), so that guesses from
//! elsewhere cannot lock the account's owner out.

use super::{DbError, now};
use crate::auth::token::random_hex;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// 256 random bits: the cookie value is a secret that cannot be guessed.
const TOKEN_BYTES: usize = 32;
/// A browser not used to sign in for this long is forgotten.
pub const LIFETIME_SECS: i64 = 180 * 24 * 3600;
/// The browsers remembered per account; the least recently used go first.
const PER_USER: i64 = 20;

fn hash(plain: &str) -> String {
    Sha256::digest(plain.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `plain` is shaped like a value [`remember`] makes (checked before any lookup).
fn well_formed(plain: &str) -> bool {
    plain.len() == TOKEN_BYTES * 2 && plain.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remembers a new browser of `user_id`; returns the value for its cookie (never stored).
pub fn remember(conn: &Connection, user_id: i64) -> Result<String, DbError> {
    let plain = random_hex(TOKEN_BYTES);
    conn.execute(
        "INSERT INTO login_devices (user_id, token_hash, created_at, last_used_at)
         VALUES (?1, ?2, ?3, ?3)",
        params![user_id, hash(&plain), now()],
    )?;
    conn.execute(
        "DELETE FROM login_devices WHERE user_id = ?1 AND (last_used_at < ?2 OR id NOT IN (
             SELECT id FROM login_devices WHERE user_id = ?1
             ORDER BY last_used_at DESC, id DESC LIMIT ?3))",
        params![user_id, now() - LIFETIME_SECS, PER_USER],
    )?;
    Ok(plain)
}

/// The device id, when `plain` is the cookie of a browser `user_id` signed in from within
/// [`LIFETIME_SECS`].
pub fn recognise(conn: &Connection, user_id: i64, plain: &str) -> Result<Option<i64>, DbError> {
    if !well_formed(plain) {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT id FROM login_devices
             WHERE token_hash = ?1 AND user_id = ?2 AND last_used_at >= ?3",
            params![hash(plain), user_id, now() - LIFETIME_SECS],
            |r| r.get(0),
        )
        .optional()?)
}

/// Records a completed sign-in from a remembered browser.
pub fn touch(conn: &Connection, id: i64) -> Result<(), DbError> {
    conn.execute(
        "UPDATE login_devices SET last_used_at = ?2 WHERE id = ?1",
        params![id, now()],
    )?;
    Ok(())
}

/// Whether `user_id` completed a sign-in from `ip` within [`LIFETIME_SECS`] (from the audit
/// log's `login` events; a new browser there is then spared too).
pub fn known_address(conn: &Connection, user_id: i64, ip: &str) -> Result<bool, DbError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM audit_log
             WHERE created_at >= ?3 AND action = 'login' AND user_id = ?1 AND ip = ?2 LIMIT 1",
            params![user_id, ip, now() - LIFETIME_SECS],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    #[test]
    fn a_remembered_browser_is_recognised_for_its_user_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_and_migrate(&dir.path().join("gh.db")).unwrap();
        db.with_conn(|c| {
            c.execute_batch(
                "INSERT INTO users (id, name, email, password_hash, role)
                 VALUES (1, 'A', 'a@example.com', 'x', 'admin'), (2, 'B', 'b@example.com', 'x', 'user')",
            )?;
            let plain = remember(c, 1)?;
            let id = recognise(c, 1, &plain)?.expect("recognised");
            assert_eq!(recognise(c, 2, &plain)?, None, "another user's browser");
            assert_eq!(recognise(c, 1, &"0".repeat(64))?, None);
            assert_eq!(recognise(c, 1, "short")?, None);
            touch(c, id)?;
            // Only the newest PER_USER are kept.
            for _ in 0..PER_USER + 5 {
                remember(c, 1)?;
            }
            let kept: i64 = c.query_row(
                "SELECT count(*) FROM login_devices WHERE user_id = 1",
                [],
                |r| r.get(0),
            )?;
            assert_eq!(kept, PER_USER);
            Ok(())
        })
        .unwrap();
    }
}
