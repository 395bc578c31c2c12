//! The `audit_log` table: security events (logins, bans, role changes, …).

use super::users::User;
use super::{Db, DbError};
use rusqlite::{Connection, params};
use std::fmt;

/// Every kind of security event, with its stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    LoginFailed,
    LoginThrottled,
    Logout,
    TotpEnrolled,
    TotpReset,
    BackupCodeUsed,
    BackupCodesRegenerated,
    Ban,
    Unban,
    RoleChanged,
    PasswordChanged,
    UserCreated,
    UserDeleted,
    SessionRevoked,
    ApiTokenCreated,
    ApiTokenRevoked,
    /// A change made through the API with a token (the detail names the token and request).
    ApiWrite,
    /// A known token was refused: expired, its user banned, or a read token used to write.
    ApiTokenRefused,
    /// An admin changed a setting on the Settings page (the detail says what it is now).
    SettingsChanged,
    /// An agent reported that its Caddy runs a config loaded outside Gatehouse (straight into
    /// Caddy's admin API); once per episode, which ends when a push puts the database's back.
    CaddyChangedOutside,
    /// An admin delegated a name to a user (the detail names it).
    GrantAdded,
    /// An admin took a delegated name back.
    GrantRemoved,
    /// An admin knowingly saved a site that overlaps another owner's (the detail says which).
    OverlapAllowed,
    /// An agent's Caddy refused a site, which was set aside on that agent (the detail says
    /// which, where and Caddy's message).
    SiteQuarantined,
    /// A site set aside was saved and is tried on every agent again.
    SiteReleased,
}

impl Action {
    pub(crate) const ALL: &[Action] = &[
        Action::Login,
        Action::LoginFailed,
        Action::LoginThrottled,
        Action::Logout,
        Action::TotpEnrolled,
        Action::TotpReset,
        Action::BackupCodeUsed,
        Action::BackupCodesRegenerated,
        Action::Ban,
        Action::Unban,
        Action::RoleChanged,
        Action::PasswordChanged,
        Action::UserCreated,
        Action::UserDeleted,
        Action::SessionRevoked,
        Action::ApiTokenCreated,
        Action::ApiTokenRevoked,
        Action::ApiWrite,
        Action::ApiTokenRefused,
        Action::SettingsChanged,
        Action::CaddyChangedOutside,
        Action::GrantAdded,
        Action::GrantRemoved,
        Action::OverlapAllowed,
        Action::SiteQuarantined,
        Action::SiteReleased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::LoginThrottled => "login_throttled",
            Action::Logout => "logout",
            Action::TotpEnrolled => "2fa_enrolled",
            Action::TotpReset => "2fa_reset",
            Action::BackupCodeUsed => "backup_code_used",
            Action::BackupCodesRegenerated => "backup_codes_regenerated",
            Action::Ban => "ban",
            Action::Unban => "unban",
            Action::RoleChanged => "role_changed",
            Action::PasswordChanged => "password_changed",
            Action::UserCreated => "user_created",
            Action::UserDeleted => "user_deleted",
            Action::SessionRevoked => "session_revoked",
            Action::ApiTokenCreated => "api_token_created",
            Action::ApiTokenRevoked => "api_token_revoked",
            Action::ApiWrite => "api_write",
            Action::ApiTokenRefused => "api_token_refused",
            Action::SettingsChanged => "settings_changed",
            Action::CaddyChangedOutside => "caddy_changed_outside",
            Action::GrantAdded => "grant_added",
            Action::GrantRemoved => "grant_removed",
            Action::OverlapAllowed => "overlap_allowed",
            Action::SiteQuarantined => "site_quarantined",
            Action::SiteReleased => "site_released",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from, as recorded with each event.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl Origin {
    /// An event caused from the command line on the server itself.
    pub(crate) fn cli() -> Self {
        Self {
            ip: None,
            user_agent: Some("gatehouse-cli".into()),
        }
    }
}

/// One event to record.
pub(crate) struct Event<'a> {
    pub(crate) action: Action,
    pub(crate) user_id: Option<i64>,
    pub(crate) email: Option<&'a str>,
    pub(crate) detail: &'a str,
}

impl<'a> Event<'a> {
    /// An event about `user`, by id and email.
    pub(crate) fn about(user: &'a User, action: Action, detail: &'a str) -> Self {
        Self {
            action,
            user_id: Some(user.id),
            email: Some(&user.email),
            detail,
        }
    }
}

/// Writes one event inside the caller's transaction (or on its own connection).
pub(crate) fn record(conn: &Connection, event: &Event<'_>, origin: &Origin) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO audit_log (user_id, email, action, detail, ip, user_agent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            event.user_id,
            event.email,
            event.action.as_str(),
            event.detail,
            origin.ip,
            origin.user_agent,
        ],
    )?;
    Ok(())
}

/// Writes one event on its own, for an event with no other change to go with it.
pub(crate) async fn write(db: &Db, event: &Event<'_>, origin: &Origin) -> Result<(), DbError> {
    let (action, user_id) = (event.action, event.user_id);
    let (email, detail) = (event.email.map(str::to_string), event.detail.to_string());
    let origin = origin.clone();
    db.run(move |c| {
        let event = Event {
            action,
            user_id,
            email: email.as_deref(),
            detail: &detail,
        };
        record(c, &event, &origin)
    })
    .await
}

/// A stored event, for the audit page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: i64,
    pub user_id: Option<i64>,
    pub email: Option<String>,
    pub action: String,
    pub detail: String,
    pub ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) created_at: i64,
}

/// Newest first, optionally only one action and/or events matching an email substring.
pub fn list(
    conn: &Connection,
    action: Option<&str>,
    email: Option<&str>,
    limit: u32,
) -> Result<Vec<Entry>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, user_id, email, action, detail, ip, user_agent, created_at FROM audit_log
         WHERE (?1 IS NULL OR action = ?1)
           AND (?2 IS NULL OR instr(lower(coalesce(email, '')), lower(?2)) > 0)
         ORDER BY id DESC LIMIT ?3",
    )?;
    let rows = stmt
        .query_map(params![action, email, limit], |r| {
            Ok(Entry {
                id: r.get(0)?,
                user_id: r.get(1)?,
                email: r.get(2)?,
                action: r.get(3)?,
                detail: r.get(4)?,
                ip: r.get(5)?,
                user_agent: r.get(6)?,
                created_at: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
