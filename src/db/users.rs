//! The `users` table: accounts, roles, bans and the TOTP second factor.

use super::{DbError, now};
use crate::domain::{DisplayName, Email, Role};
use rusqlite::{Connection, OptionalExtension, Row, params};

/// An account as the rest of the app sees it. The password hash stays in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub(crate) name: String,
    pub email: String,
    pub(crate) role: Role,
    pub(crate) banned_at: Option<i64>,
    pub(crate) ban_reason: Option<String>,
    pub totp_enabled: bool,
    pub(crate) created_at: i64,
    /// Signed in with a one-time password: a password of their own comes before anything
    /// else.
    pub(crate) must_change_password: bool,
}

impl User {
    pub fn is_banned(&self) -> bool {
        self.banned_at.is_some()
    }
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

const COLUMNS: &str = "id, name, email, role, banned_at, ban_reason, totp_enabled, created_at, \
     password_one_time IS NOT NULL";

fn from_row(row: &Row<'_>) -> rusqlite::Result<User> {
    let role: String = row.get(3)?;
    Ok(User {
        id: row.get(0)?,
        name: row.get(1)?,
        email: row.get(2)?,
        role: role.parse().map_err(|e: String| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        banned_at: row.get(4)?,
        ban_reason: row.get(5)?,
        totp_enabled: row.get(6)?,
        created_at: row.get(7)?,
        must_change_password: row.get(8)?,
    })
}

/// What it takes to create an account; the password is already hashed.
pub struct NewUser<'a> {
    pub name: &'a DisplayName,
    pub email: &'a Email,
    pub password_hash: &'a str,
    pub role: Role,
}

/// Whether an insert hit the unique email.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error(transparent)]
    Db(#[from] DbError),
}

pub fn insert(conn: &Connection, user: &NewUser<'_>) -> Result<i64, InsertError> {
    let result = conn.execute(
        "INSERT INTO users (name, email, password_hash, role) VALUES (?1, ?2, ?3, ?4)",
        params![
            user.name.as_str(),
            user.email.as_str(),
            user.password_hash,
            user.role.as_str()
        ],
    );
    match result {
        Ok(_) => Ok(conn.last_insert_rowid()),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            Err(InsertError::EmailTaken)
        }
        Err(e) => Err(InsertError::Db(e.into())),
    }
}

pub fn count(conn: &Connection) -> Result<i64, DbError> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

pub fn count_admins(conn: &Connection) -> Result<i64, DbError> {
    Ok(
        conn.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
            r.get(0)
        })?,
    )
}

/// The active (unbanned) admins other than `id`: whether removing `id` leaves one.
pub(crate) fn count_other_active_admins(conn: &Connection, id: i64) -> Result<i64, DbError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM users WHERE role = 'admin' AND banned_at IS NULL AND id != ?1",
        [id],
        |r| r.get(0),
    )?)
}

pub fn find(conn: &Connection, id: i64) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn find_by_email(conn: &Connection, email: &str) -> Result<Option<User>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE email = ?1");
    Ok(conn.query_row(&sql, [email], from_row).optional()?)
}

/// The stored argon2 hash, for verifying a login.
pub(crate) fn password_hash(conn: &Connection, id: i64) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row("SELECT password_hash FROM users WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<User>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM users ORDER BY email");
    let mut stmt = conn.prepare(&sql)?;
    let users = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(users)
}

/// Returns whether a row changed (false: no such user).
/// Sets the password; one chosen by its owner or an admin, so any one-time mark goes (see
/// [`mark_one_time`] for a generated one).
pub(crate) fn set_password_hash(conn: &Connection, id: i64, hash: &str) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE users SET password_hash = ?2, password_one_time = NULL, updated_at = ?3
         WHERE id = ?1",
        params![id, hash, now()],
    )?;
    Ok(n == 1)
}

/// Marks the account's password as generated: it signs in once.
pub(crate) fn mark_one_time(conn: &Connection, id: i64) -> Result<(), DbError> {
    conn.execute(
        "UPDATE users SET password_one_time = 'fresh' WHERE id = ?1",
        [id],
    )?;
    Ok(())
}

/// What a sign-in with the right password does to a one-time mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OneTime {
    /// An ordinary password.
    No,
    /// A one-time password, now spent by this sign-in.
    Spent,
    /// A one-time password a sign-in already spent: it signs in no more.
    AlreadyUsed,
}

/// Spends the account's one-time password, if it has one, for the sign-in under way.
pub(crate) fn spend_one_time(conn: &Connection, id: i64) -> Result<OneTime, DbError> {
    let spent = conn.execute(
        "UPDATE users SET password_one_time = 'used' WHERE id = ?1 AND password_one_time = 'fresh'",
        [id],
    )?;
    if spent == 1 {
        return Ok(OneTime::Spent);
    }
    let mark: Option<String> = conn
        .query_row(
            "SELECT password_one_time FROM users WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    Ok(match mark.as_deref() {
        Some("used") => OneTime::AlreadyUsed,
        _ => OneTime::No,
    })
}

pub fn set_banned(conn: &Connection, id: i64, reason: Option<&str>) -> Result<bool, DbError> {
    let n = match reason {
        Some(reason) => conn.execute(
            "UPDATE users SET banned_at = ?2, ban_reason = ?3, updated_at = ?2 WHERE id = ?1",
            params![id, now(), reason],
        )?,
        None => conn.execute(
            "UPDATE users SET banned_at = NULL, ban_reason = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?,
    };
    Ok(n == 1)
}

/// Removes the second factor and its backup codes; the user enrols again.
pub fn reset_totp(conn: &Connection, id: i64) -> Result<bool, DbError> {
    conn.execute("DELETE FROM backup_codes WHERE user_id = ?1", [id])?;
    let n = conn.execute(
        "UPDATE users SET totp_secret = NULL, totp_enabled = 0, totp_last_step = NULL,
                updated_at = ?2 WHERE id = ?1",
        params![id, now()],
    )?;
    Ok(n == 1)
}

pub(crate) fn set_role(conn: &Connection, id: i64, role: Role) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, role.as_str(), now()],
    )?;
    Ok(n == 1)
}

/// Deletes the account. Its id may be handed out again (SQLite reuses the highest rowid), so
/// the changelog forgets it as an owner: a later account with the same id must not inherit
/// the history of sites it never owned.
pub(crate) fn delete(conn: &Connection, id: i64) -> Result<bool, DbError> {
    conn.execute_batch(&format!(
        "UPDATE changelog SET owner_id = NULL WHERE owner_id = {id};
         UPDATE changelog SET prev_owner_id = NULL WHERE prev_owner_id = {id};
         UPDATE changelog SET old = json_set(old, '$.owner_id', json('null'))
             WHERE old IS NOT NULL AND json_extract(old, '$.owner_id') = {id};
         UPDATE changelog SET new = json_set(new, '$.owner_id', json('null'))
             WHERE new IS NOT NULL AND json_extract(new, '$.owner_id') = {id};"
    ))?;
    Ok(conn.execute("DELETE FROM users WHERE id = ?1", [id])? == 1)
}

/// The TOTP secret, enrolled or not. It is stored sealed (see [`crate::secrets`]) and
/// opened here; a value that does not open is an error, never "no secret".
pub(crate) fn totp_secret(conn: &Connection, id: i64) -> Result<Option<String>, DbError> {
    Ok(conn
        .query_row(
            "SELECT gh_open('users.totp_secret', id, totp_secret) FROM users WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .flatten())
}

/// Turns on TOTP with a confirmed secret; `step` is the step of the confirming code, which
/// is thereby spent.
pub(crate) fn enable_totp(
    conn: &Connection,
    id: i64,
    secret: &str,
    step: i64,
) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE users SET totp_secret = gh_seal('users.totp_secret', id, ?2), totp_enabled = 1,
                totp_last_step = ?3, updated_at = ?4
         WHERE id = ?1",
        params![id, secret, step, now()],
    )?;
    Ok(n == 1)
}

/// Spends a TOTP step. False when that step (or a later one) was already used: a replay.
pub(crate) fn spend_totp_step(conn: &Connection, id: i64, step: i64) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE users SET totp_last_step = ?2
         WHERE id = ?1 AND (totp_last_step IS NULL OR totp_last_step < ?2)",
        params![id, step],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_and_migrate(&dir.path().join("gh.db")).unwrap();
        (dir, db)
    }

    fn new_user(conn: &Connection, email: &str, role: Role) -> Result<i64, InsertError> {
        insert(
            conn,
            &NewUser {
                name: &DisplayName::parse("Ada").unwrap(),
                email: &Email::parse(email).unwrap(),
                password_hash: "hash",
                role,
            },
        )
    }

    #[tokio::test]
    async fn a_missing_user_is_none_and_a_broken_database_is_an_error() {
        let (_dir, db) = db();
        let found = db
            .run(|c| find_by_email(c, "nobody@example.com"))
            .await
            .unwrap();
        assert_eq!(found, None);
        let broken = db
            .run(|c| {
                c.execute_batch("DROP TABLE backup_codes; DROP TABLE audit_log; DROP TABLE users")?;
                find_by_email(c, "nobody@example.com")
            })
            .await;
        assert!(
            broken.is_err(),
            "a failing query must not look like 'not found'"
        );
    }

    #[tokio::test]
    async fn emails_are_unique() {
        let (_dir, db) = db();
        let second = db
            .run(|c| {
                new_user(c, "ada@example.com", Role::Admin).unwrap();
                Ok(new_user(c, "ADA@example.com", Role::User))
            })
            .await
            .unwrap();
        assert!(matches!(second, Err(InsertError::EmailTaken)));
    }

    #[tokio::test]
    async fn ban_and_unban_round_trip() {
        let (_dir, db) = db();
        let user = db
            .run(|c| {
                let id = new_user(c, "bob@example.com", Role::User).unwrap();
                assert!(set_banned(c, id, Some("spam"))?);
                let banned = find(c, id)?.unwrap();
                assert!(banned.is_banned());
                assert_eq!(banned.ban_reason.as_deref(), Some("spam"));
                set_banned(c, id, None)?;
                find(c, id)
            })
            .await
            .unwrap()
            .unwrap();
        assert!(!user.is_banned());
        assert_eq!(user.ban_reason, None);
    }
}
