//! The `api_tokens` table: personal tokens for the JSON API, stored as a SHA-256 of the token
//! beside its public lookup part, never the token itself.
//!
//! A token reads `gh_<lookup>_<secret>`: 16 hex characters to find the row by an index, then
//! 48 hex characters (192 random bits) of secret. One SHA-256 is enough for a secret that
//! cannot be guessed (argon2 protects low-entropy passwords, which these are not).

use super::users::{self, User};
use super::{DbError, audit, now};
use crate::auth::token::{constant_time_eq, random_hex};
use rusqlite::{Connection, OptionalExtension, Row, params};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Look only: every `GET` of the API.
    Read,
    /// Look and change: vhost create, update, toggle and delete as well.
    Write,
}

impl Scope {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// What every token starts with, so it is recognisable in a config file or a secret scanner.
pub(crate) const PREFIX: &str = "gh_";
const LOOKUP_BYTES: usize = 8;
const SECRET_BYTES: usize = 24;

/// A stored token, without anything secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub(crate) id: i64,
    pub(crate) user_id: i64,
    pub(crate) name: String,
    pub(crate) scope: Scope,
    pub(crate) expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub(crate) created_at: i64,
}

impl ApiToken {
    pub(crate) fn is_expired(&self, at: i64) -> bool {
        self.expires_at.is_some_and(|e| e <= at)
    }
}

/// A token just made: the only moment its plain text exists.
pub struct Created {
    pub(crate) token: ApiToken,
    pub plain: String,
}

const COLUMNS: &str =
    "id, user_id, name, scope, expires_at, last_used_at, last_used_ip, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<ApiToken> {
    let scope: String = r.get(3)?;
    Ok(ApiToken {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        scope: Scope::parse(&scope).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown scope {scope:?}").into(),
            )
        })?,
        expires_at: r.get(4)?,
        last_used_at: r.get(5)?,
        last_used_ip: r.get(6)?,
        created_at: r.get(7)?,
    })
}

fn hash(plain: &str) -> String {
    Sha256::digest(plain.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Splits `gh_<lookup>_<secret>` into its lookup part; None when it is not shaped like one.
fn lookup_of(plain: &str) -> Option<&str> {
    let rest = plain.strip_prefix(PREFIX)?;
    let (lookup, secret) = rest.split_once('_')?;
    let hex =
        |s: &str, bytes: usize| s.len() == bytes * 2 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(lookup, LOOKUP_BYTES) && hex(secret, SECRET_BYTES)).then_some(lookup)
}

/// Makes a new token for `user_id`; its plain text is returned once and never stored.
pub fn create(
    conn: &Connection,
    user_id: i64,
    name: &str,
    scope: Scope,
    expires_at: Option<i64>,
) -> Result<Created, DbError> {
    let lookup = random_hex(LOOKUP_BYTES);
    let plain = format!("{PREFIX}{lookup}_{}", random_hex(SECRET_BYTES));
    conn.execute(
        "INSERT INTO api_tokens (user_id, name, lookup, token_hash, scope, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user_id,
            name,
            lookup,
            hash(&plain),
            scope.as_str(),
            expires_at
        ],
    )?;
    let id = conn.last_insert_rowid();
    let token = find(conn, id)?.ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
    Ok(Created { token, plain })
}

pub(crate) fn find(conn: &Connection, id: i64) -> Result<Option<ApiToken>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

/// A user's tokens, newest first.
pub fn list_for_user(conn: &Connection, user_id: i64) -> Result<Vec<ApiToken>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens WHERE user_id = ?1 ORDER BY id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map([user_id], from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Every token, newest first (the admin's view).
pub fn list_all(conn: &Connection) -> Result<Vec<ApiToken>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM api_tokens ORDER BY id DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Revokes (deletes) a token; `owner` scopes it to one user's tokens. Returns the token
/// that was revoked, None when there was no such token (of that user).
pub(crate) fn revoke(
    conn: &Connection,
    id: i64,
    owner: Option<i64>,
) -> Result<Option<ApiToken>, DbError> {
    let Some(token) = find(conn, id)?.filter(|t| owner.is_none_or(|o| o == t.user_id)) else {
        return Ok(None);
    };
    conn.execute("DELETE FROM api_tokens WHERE id = ?1", [id])?;
    Ok(Some(token))
}

/// Revokes every token of `user`, because their account was recovered or re-secured (`why`,
/// e.g. "password changed"): a token made from a stolen session must not outlive the
/// recovery. When there were any, one `api_token_revoked` entry says how many and why.
/// Returns how many were revoked.
pub(crate) fn revoke_all_for_user(
    conn: &Connection,
    user: &User,
    why: &str,
    origin: &audit::Origin,
) -> Result<usize, DbError> {
    let n = conn.execute("DELETE FROM api_tokens WHERE user_id = ?1", [user.id])?;
    if n > 0 {
        let detail = format!("all {n} API token(s): {why}");
        let event = audit::Event {
            action: audit::Action::ApiTokenRevoked,
            user_id: Some(user.id),
            email: Some(&user.email),
            detail: &detail,
        };
        audit::record(conn, &event, origin)?;
    }
    Ok(n)
}

/// Why a presented token does not authenticate anyone. All of them are a 401; the reason is
/// for the log, never told to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Malformed,
    Unknown,
    /// A real token, past its expiry.
    Expired(ApiToken),
    /// A real token of a banned user.
    Banned(ApiToken),
}

/// Finds who a presented token belongs to: one indexed lookup, then a constant-time
/// comparison of hashes. The user is read afresh, so a ban or a deletion counts at once.
pub(crate) fn verify(
    conn: &Connection,
    plain: &str,
) -> Result<Result<(ApiToken, User), Refusal>, DbError> {
    let Some(lookup) = lookup_of(plain) else {
        return Ok(Err(Refusal::Malformed));
    };
    let sql = format!("SELECT {COLUMNS}, token_hash FROM api_tokens WHERE lookup = ?1");
    let found = conn
        .query_row(&sql, [lookup], |r| {
            Ok((from_row(r)?, r.get::<_, String>(8)?))
        })
        .optional()?;
    let Some((token, stored)) = found else {
        return Ok(Err(Refusal::Unknown));
    };
    if !constant_time_eq(hash(plain).as_bytes(), stored.as_bytes()) {
        return Ok(Err(Refusal::Unknown));
    }
    if token.is_expired(now()) {
        return Ok(Err(Refusal::Expired(token)));
    }
    match users::find(conn, token.user_id)? {
        Some(user) if !user.is_banned() => Ok(Ok((token, user))),
        // A deleted user's tokens are gone with them (cascade); this is the ban.
        _ => Ok(Err(Refusal::Banned(token))),
    }
}

/// Records that a token was just used, and from where.
pub(crate) fn touch(conn: &Connection, id: i64, ip: &str) -> Result<(), DbError> {
    conn.execute(
        "UPDATE api_tokens SET last_used_at = ?2, last_used_ip = ?3 WHERE id = ?1",
        params![id, now(), ip],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn with_user<T>(f: impl FnOnce(&Connection) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        drop(Db::open_and_migrate(&dir.path().join("gh.db")).unwrap());
        let conn = Connection::open(dir.path().join("gh.db")).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        conn.execute(
            "INSERT INTO users (id, name, email, password_hash, role) VALUES (1, 'A', 'a@x.io', 'h', 'user')",
            [],
        )
        .unwrap();
        f(&conn)
    }

    #[test]
    fn a_token_is_shown_once_stored_hashed_and_verified() {
        with_user(|c| {
            let made = create(c, 1, "ci", Scope::Write, None).unwrap();
            assert!(made.plain.starts_with("gh_"));
            assert_eq!(made.plain.len(), 3 + 16 + 1 + 48);
            let stored: String = c
                .query_row("SELECT lookup || token_hash FROM api_tokens", [], |r| {
                    r.get(0)
                })
                .unwrap();
            let secret = made.plain.rsplit('_').next().unwrap();
            assert!(!stored.contains(secret), "the secret part is not stored");
            let (token, user) = verify(c, &made.plain).unwrap().unwrap();
            assert_eq!(
                (token.id, token.scope, user.id),
                (made.token.id, Scope::Write, 1)
            );
        });
    }

    #[test]
    fn a_changed_secret_an_unknown_or_malformed_token_is_refused() {
        with_user(|c| {
            let made = create(c, 1, "ci", Scope::Read, None).unwrap();
            let mut forged = made.plain.clone();
            let last = forged.pop().unwrap();
            forged.push(if last == '0' { '1' } else { '0' });
            assert_eq!(verify(c, &forged).unwrap().unwrap_err(), Refusal::Unknown);
            let other = format!("gh_{}_{}", random_hex(8), random_hex(24));
            assert_eq!(verify(c, &other).unwrap().unwrap_err(), Refusal::Unknown);
            for bad in ["", "gh_", "gh_xyz_abc", "Bearer x", &made.plain[3..]] {
                assert_eq!(
                    verify(c, bad).unwrap().unwrap_err(),
                    Refusal::Malformed,
                    "{bad}"
                );
            }
        });
    }

    #[test]
    fn expired_revoked_banned_and_deleted_stop_working() {
        with_user(|c| {
            let old = create(c, 1, "old", Scope::Read, Some(now() - 1)).unwrap();
            assert!(matches!(
                verify(c, &old.plain).unwrap(),
                Err(Refusal::Expired(t)) if t.id == old.token.id
            ));
            let fresh = create(c, 1, "fresh", Scope::Read, Some(now() + 3600)).unwrap();
            assert!(verify(c, &fresh.plain).unwrap().is_ok());
            users::set_banned(c, 1, Some("spam")).unwrap();
            assert!(matches!(
                verify(c, &fresh.plain).unwrap(),
                Err(Refusal::Banned(_))
            ));
            users::set_banned(c, 1, None).unwrap();
            assert!(
                revoke(c, fresh.token.id, Some(2)).unwrap().is_none(),
                "not theirs"
            );
            assert!(revoke(c, fresh.token.id, Some(1)).unwrap().is_some());
            assert_eq!(
                verify(c, &fresh.plain).unwrap().unwrap_err(),
                Refusal::Unknown
            );
            let kept = create(c, 1, "kept", Scope::Read, None).unwrap();
            users::delete(c, 1).unwrap();
            assert_eq!(
                verify(c, &kept.plain).unwrap().unwrap_err(),
                Refusal::Unknown
            );
            assert!(list_all(c).unwrap().is_empty(), "tokens go with their user");
        });
    }

    #[test]
    fn revoking_all_of_a_users_tokens_is_audited_and_spares_others() {
        with_user(|c| {
            c.execute(
                "INSERT INTO users (id, name, email, password_hash, role) VALUES (2, 'B', 'b@x.io', 'h', 'user')",
                [],
            )
            .unwrap();
            let a1 = create(c, 1, "a1", Scope::Write, None).unwrap();
            create(c, 1, "a2", Scope::Read, None).unwrap();
            let b = create(c, 2, "b", Scope::Read, None).unwrap();
            let user = users::find(c, 1).unwrap().unwrap();
            let origin = audit::Origin::cli();
            assert_eq!(
                revoke_all_for_user(c, &user, "password changed", &origin).unwrap(),
                2
            );
            assert_eq!(verify(c, &a1.plain).unwrap().unwrap_err(), Refusal::Unknown);
            assert!(verify(c, &b.plain).unwrap().is_ok(), "someone else's stays");
            let entries = audit::list(c, Some("api_token_revoked"), None, 10).unwrap();
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].detail, "all 2 API token(s): password changed");
            assert_eq!(entries[0].user_id, Some(1));
            assert_eq!(revoke_all_for_user(c, &user, "again", &origin).unwrap(), 0);
            assert_eq!(
                audit::list(c, Some("api_token_revoked"), None, 10)
                    .unwrap()
                    .len(),
                1,
                "nothing to revoke, nothing logged"
            );
        });
    }
}
