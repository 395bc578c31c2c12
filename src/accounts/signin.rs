//! Signing in: the password step, the second factor (TOTP or a backup code) and the signed-in
//! session row. Failures never say whether the account exists; every failed attempt counts
//! against per-address and per-account limits (a right one is given back); every outcome is
//! audited. The browser's side of it
//! (the cookie session, the device cookie) stays with the portal.

use super::AccountError;
use crate::auth::password;
use crate::auth::ratelimit::Limiter;
use crate::auth::{token, totp};
use crate::db::audit::{self, Action, Event, Origin};
use crate::db::users::User;
use crate::db::{Db, DbError, backup_codes, login_devices, sessions, users};
use crate::domain::Email;

/// Where an attempt comes from.
#[derive(Debug, Clone)]
pub struct Client {
    pub origin: Origin,
    /// The client address the limits count against.
    pub ip: String,
    /// The device cookie the browser presented, if any (see `db::login_devices`).
    pub device: Option<String>,
}

/// How the password step ended.
#[derive(Debug)]
pub enum PasswordStep {
    /// Too many attempts: retry after this many seconds.
    Throttled(u64),
    /// No such account, or the wrong password; the two look the same from outside.
    NoMatch,
    Banned,
    /// The right one-time password, which an earlier sign-in already used.
    OneTimeUsed,
    /// The password is right and a second factor is owed.
    SecondFactorOwed(User),
    /// The password is right and no second factor is enrolled: sign in.
    Passed(User),
}

/// Checks an email and password. `email` is as typed.
pub async fn password_step(
    db: &Db,
    limiter: &Limiter,
    from: &Client,
    email: &str,
    typed: String,
) -> Result<PasswordStep, DbError> {
    let email = email.trim().to_lowercase();
    let lookup = email.clone();
    let found = db
        .run(move |c| {
            let Some(user) = users::find_by_email(c, &lookup)? else {
                return Ok(None);
            };
            let hash = users::password_hash(c, user.id)?.unwrap_or_default();
            Ok(Some((user, hash)))
        })
        .await?;
    let uid = found.as_ref().map(|(u, _)| u.id);
    let keys = limit_keys(db, from, uid, &email).await?;
    if let Err(secs) = limiter.attempt(&keys) {
        let detail = format!("refused; retry in {secs}s");
        note(db, from, Action::LoginThrottled, None, &email, &detail).await?;
        return Ok(PasswordStep::Throttled(secs));
    }
    let (user, matches) = crate::blocking::run(move || match found {
        Some((user, hash)) => {
            let ok = password::verify(&typed, &hash);
            (Some(user), ok)
        }
        None => {
            password::verify_dummy(&typed);
            (None, false)
        }
    })
    .await?;
    let user = match (user, matches) {
        (Some(user), true) => user,
        (user, _) => {
            let detail = if user.is_some() {
                "wrong password"
            } else {
                "no such account"
            };
            let uid = user.map(|u| u.id);
            note(db, from, Action::LoginFailed, uid, &email, detail).await?;
            return Ok(PasswordStep::NoMatch);
        }
    };
    if user.is_banned() {
        let detail = "account is banned";
        note(db, from, Action::LoginFailed, Some(user.id), &email, detail).await?;
        return Ok(PasswordStep::Banned);
    }
    // A generated password signs in once: this sign-in spends it (the person is then asked
    // for a password of their own before anything else).
    let uid = user.id;
    match db.run(move |c| users::spend_one_time(c, uid)).await? {
        users::OneTime::AlreadyUsed => {
            let detail = "one-time password already used";
            note(db, from, Action::LoginFailed, Some(user.id), &email, detail).await?;
            return Ok(PasswordStep::OneTimeUsed);
        }
        users::OneTime::Spent | users::OneTime::No => {}
    }
    // The right password: only failures use up the limits.
    limiter.refund(&keys);
    Ok(if user.totp_enabled {
        PasswordStep::SecondFactorOwed(user)
    } else {
        PasswordStep::Passed(user)
    })
}

/// How the second-factor step ended.
#[derive(Debug)]
pub enum CodeStep {
    /// The account is gone, banned or no longer enrolled: start over.
    Gone,
    /// Too many attempts: retry after this many seconds.
    Throttled(u64),
    /// A TOTP code already spent.
    Replayed,
    Wrong,
    /// Signed in; says how, for the audit log.
    Passed {
        user: User,
        how: &'static str,
    },
}

/// Checks the second factor of account `uid`, whose password was right.
pub async fn second_factor_step(
    db: &Db,
    limiter: &Limiter,
    from: &Client,
    uid: i64,
    code: &str,
) -> Result<CodeStep, DbError> {
    let user = db.run(move |c| users::find(c, uid)).await?;
    let Some(user) = user.filter(|u| !u.is_banned() && u.totp_enabled) else {
        return Ok(CodeStep::Gone);
    };
    let keys = limit_keys(db, from, Some(uid), &uid.to_string()).await?;
    if let Err(secs) = limiter.attempt(&keys) {
        let detail = format!("second factor; retry in {secs}s");
        note(
            db,
            from,
            Action::LoginThrottled,
            Some(uid),
            &user.email,
            &detail,
        )
        .await?;
        return Ok(CodeStep::Throttled(secs));
    }
    let how = match check_code(db, uid, code).await? {
        Factor::Totp => "password and TOTP",
        Factor::BackupCode(left) => {
            let detail = format!("{left} backup codes left");
            note(
                db,
                from,
                Action::BackupCodeUsed,
                Some(uid),
                &user.email,
                &detail,
            )
            .await?;
            "password and a backup code"
        }
        failure => {
            let (detail, step) = match failure {
                Factor::Replayed => ("replayed TOTP code", CodeStep::Replayed),
                _ => ("wrong second factor", CodeStep::Wrong),
            };
            note(
                db,
                from,
                Action::LoginFailed,
                Some(uid),
                &user.email,
                detail,
            )
            .await?;
            return Ok(step);
        }
    };
    limiter.refund(&keys);
    Ok(CodeStep::Passed { user, how })
}

enum Factor {
    Totp,
    /// A backup code was spent; how many remain.
    BackupCode(i64),
    Replayed,
    Wrong,
}

async fn check_code(db: &Db, uid: i64, code: &str) -> Result<Factor, DbError> {
    let secret = db
        .run(move |c| users::totp_secret(c, uid))
        .await?
        .unwrap_or_default();
    let now = u64::try_from(crate::db::now()).unwrap_or_default();
    if let Some(step) = totp::matching_step(&secret, code, now) {
        let step = i64::try_from(step).map_err(|e| DbError::Encode(e.to_string()))?;
        let spent = db
            .run(move |c| users::spend_totp_step(c, uid, step))
            .await?;
        return Ok(if spent {
            Factor::Totp
        } else {
            Factor::Replayed
        });
    }
    let Some(code) = totp::normalize_backup_code(code) else {
        return Ok(Factor::Wrong);
    };
    let unused = db.run(move |c| backup_codes::unused(c, uid)).await?;
    let matched = crate::blocking::run(move || {
        unused
            .into_iter()
            .find(|(_, hash)| password::verify(&code, hash))
            .map(|(id, _)| id)
    })
    .await?;
    let Some(id) = matched else {
        return Ok(Factor::Wrong);
    };
    let spent = db
        .run(move |c| {
            let spent = backup_codes::mark_used(c, id)?;
            spent
                .then(|| backup_codes::count_unused(c, uid))
                .transpose()
        })
        .await?;
    Ok(spent.map_or(Factor::Wrong, Factor::BackupCode))
}

/// A signed-in session, made.
#[derive(Debug)]
pub struct Started {
    /// The `auth_sessions` id, for the cookie session.
    pub session_id: String,
    /// The device cookie's value: the one presented when it was this user's, else a new one.
    pub device: String,
}

/// Creates the signed-in session row others can revoke, and remembers the browser as one of
/// the user's (see [`limit_keys`]).
pub async fn start_session(
    db: &Db,
    user: &User,
    how: &str,
    from: &Client,
) -> Result<Started, DbError> {
    let id = token::random_hex(32);
    let (sid, uid, email) = (id.clone(), user.id, user.email.clone());
    let (detail, origin, presented) = (
        format!("with {how}"),
        from.origin.clone(),
        from.device.clone(),
    );
    let device = db
        .run(move |c| {
            let tx = c.transaction()?;
            sessions::create(
                &tx,
                &sid,
                uid,
                origin.ip.as_deref(),
                origin.user_agent.as_deref(),
            )?;
            let event = Event {
                action: Action::Login,
                user_id: Some(uid),
                email: Some(&email),
                detail: &detail,
            };
            audit::record(&tx, &event, &origin)?;
            let known = match &presented {
                Some(plain) => login_devices::recognise(&tx, uid, plain)?,
                None => None,
            };
            let value = match (known, presented) {
                (Some(device), Some(plain)) => {
                    login_devices::touch(&tx, device)?;
                    plain
                }
                _ => login_devices::remember(&tx, uid)?,
            };
            tx.commit()?;
            Ok(value)
        })
        .await?;
    Ok(Started {
        session_id: id,
        device,
    })
}

/// Ends one signed-in session of `user`, audited as a sign-out.
pub async fn sign_out(
    db: &Db,
    user: &User,
    session_id: &str,
    origin: &Origin,
) -> Result<(), DbError> {
    let (user, sid, origin) = (user.clone(), session_id.to_string(), origin.clone());
    db.run(move |c| {
        sessions::delete(c, user.id, &sid)?;
        audit::record(c, &Event::about(&user, Action::Logout, ""), &origin)
    })
    .await
}

/// Checks a signed-in user's current password, counting the try against the same
/// per-account limit as sign-in, so a stolen session cannot be used to guess the password at
/// full speed.
pub async fn current_password_ok(
    db: &Db,
    limiter: &Limiter,
    uid: i64,
    typed: String,
) -> Result<bool, AccountError> {
    limiter
        .attempt(&[format!("password-check:{uid}")])
        .map_err(AccountError::Throttled)?;
    let hash = db
        .run(move |c| users::password_hash(c, uid))
        .await?
        .unwrap_or_default();
    Ok(crate::blocking::run(move || password::verify(&typed, &hash)).await?)
}

/// Audits a sign-in event. `email` is what was typed, and it is stored only when it is an
/// email address: people type passwords into the wrong field, and the audit log must never
/// keep one.
async fn note(
    db: &Db,
    from: &Client,
    action: Action,
    user_id: Option<i64>,
    email: &str,
    detail: &str,
) -> Result<(), DbError> {
    let (email, detail) = match Email::parse(email) {
        Ok(email) => (Some(email.to_string()), detail.to_string()),
        Err(_) => (
            None,
            format!("{detail} (the email field held no email address)"),
        ),
    };
    let event = Event {
        action,
        user_id,
        email: email.as_deref(),
        detail: &detail,
    };
    audit::write(db, &event, &from.origin).await
}

/// The limiter keys of a sign-in attempt on `account` (the typed email at the password step,
/// the user's id at the second factor). Every attempt counts against its client address.
/// Against the account it counts in one of three buckets, each with the same limit:
/// - from a browser that completed a sign-in to this account (its device cookie): that
///   browser's own;
/// - else from an address this account completed a sign-in from recently: that address's;
/// - else, for everyone else: the account's shared one.
///
/// So guessing from elsewhere exhausts only the shared bucket, and cannot keep the owner out
/// of their own browsers and addresses; and guessing anywhere stays limited per address and
/// per account.
async fn limit_keys(
    db: &Db,
    from: &Client,
    user: Option<i64>,
    account: &str,
) -> Result<Vec<String>, DbError> {
    let ip = from.ip.clone();
    let shared = format!("account:{account}");
    let presented = from.device.clone();
    let bucket = match user {
        None => shared,
        Some(uid) => {
            let from = ip.clone();
            db.run(move |c| {
                if let Some(plain) = &presented
                    && let Some(id) = login_devices::recognise(c, uid, plain)?
                {
                    return Ok(format!("device:{id}"));
                }
                if login_devices::known_address(c, uid, &from)? {
                    return Ok(format!("{shared}:from:{from}"));
                }
                Ok(shared)
            })
            .await?
        }
    };
    Ok(vec![format!("ip:{ip}"), bucket])
}
