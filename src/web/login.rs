//! Signing in (password, then TOTP or a backup code when enrolled) and signing out.
//! Failures never say whether the account exists; every attempt counts against per-IP and
//! per-account limits; every outcome is audited.

use super::auth::{resolve, safe_next};
use super::session::{Pending2fa, TypedSession};
use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::auth::{password, token, totp};
use crate::db::audit::{self, Action, Event};
use crate::db::users::User;
use crate::db::{backup_codes, login_devices, sessions, users};
use crate::domain::Email;
use crate::domain::FieldErrors;
use crate::error::{AppError, Result};
use crate::views;
use crate::views::login::LoginForm;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct CodeForm {
    #[serde(default)]
    pub code: String,
}

pub async fn form(
    State(state): State<AppState>,
    session: TypedSession,
    render: Render,
    Query(q): Query<NextQuery>,
) -> Result<Response> {
    let next = safe_next(q.next.as_deref());
    if resolve(&state, &session).await?.is_some() {
        return Ok(render.redirect(&next));
    }
    let form = LoginForm {
        next,
        ..LoginForm::default()
    };
    Ok(render.page(
        "Sign in",
        views::login::form(
            &render.ctx,
            &form,
            &FieldErrors::default(),
            state.setup.is_open(),
        ),
    ))
}

/// Audits a sign-in event. `email` is what was typed, and it is stored only when it is an
/// email address: people type passwords into the wrong field, and the audit log must never
/// keep one.
async fn record(
    state: &AppState,
    client: &ClientInfo,
    action: Action,
    user_id: Option<i64>,
    email: &str,
    detail: &str,
) -> Result<()> {
    let (email, detail) = match Email::parse(email) {
        Ok(email) => (Some(email.to_string()), detail.to_string()),
        Err(_) => (
            None,
            format!("{detail} (the email field held no email address)"),
        ),
    };
    let origin = client.origin();
    state
        .db
        .run(move |c| {
            audit::record(
                c,
                &Event {
                    action,
                    user_id,
                    email: email.as_deref(),
                    detail: &detail,
                },
                &origin,
            )
        })
        .await?;
    Ok(())
}

fn throttled(render: &Render, body: maud::Markup, secs: u64) -> Response {
    let mut response = render.page_with_status(StatusCode::TOO_MANY_REQUESTS, "Sign in", body);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

fn throttle_message(secs: u64) -> String {
    format!("Too many attempts. For your safety, wait {secs} seconds before trying again.")
}

pub async fn submit(
    State(state): State<AppState>,
    session: TypedSession,
    client: ClientInfo,
    device: DeviceCookie,
    render: Render,
    Form(mut form): Form<LoginForm>,
) -> Result<Response> {
    form.next = safe_next(Some(&form.next));
    let email = form.email.trim().to_lowercase();
    let mut errors = FieldErrors::default();
    let lookup = email.clone();
    let found = state
        .db
        .run(move |c| {
            let Some(user) = users::find_by_email(c, &lookup)? else {
                return Ok(None);
            };
            let hash = users::password_hash(c, user.id)?.unwrap_or_default();
            Ok(Some((user, hash)))
        })
        .await?;
    let uid = found.as_ref().map(|(u, _)| u.id);
    let keys = limit_keys(&state, &client, &device, uid, &email).await?;
    if let Err(secs) = state.login_limiter.attempt(&keys) {
        record(
            &state,
            &client,
            Action::LoginThrottled,
            None,
            &email,
            &format!("refused; retry in {secs}s"),
        )
        .await?;
        errors.add("", throttle_message(secs));
        let body = views::login::form(&render.ctx, &form, &errors, false);
        return Ok(throttled(&render, body, secs));
    }

    let typed = std::mem::take(&mut form.password);
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

    let refuse = |errors: &mut FieldErrors, message: &str| {
        errors.add("", message.to_string());
        render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign in",
            views::login::form(&render.ctx, &form, errors, false),
        )
    };
    let user = match (user, matches) {
        (Some(user), true) => user,
        (user, _) => {
            let detail = if user.is_some() {
                "wrong password"
            } else {
                "no such account"
            };
            record(
                &state,
                &client,
                Action::LoginFailed,
                user.map(|u| u.id),
                &email,
                detail,
            )
            .await?;
            return Ok(refuse(
                &mut errors,
                "That email and password do not match an account.",
            ));
        }
    };
    if user.is_banned() {
        record(
            &state,
            &client,
            Action::LoginFailed,
            Some(user.id),
            &email,
            "account is banned",
        )
        .await?;
        return Ok(refuse(
            &mut errors,
            "This account is suspended. Ask an administrator.",
        ));
    }
    if user.totp_enabled {
        let pending = Pending2fa {
            user_id: user.id,
            next: form.next.clone(),
            since: crate::db::now(),
        };
        session.set_pending_2fa(&pending).await?;
        return Ok(render.redirect("/login/2fa"));
    }
    let cookie = complete(&state, &session, &client, &device, &user, "password").await?;
    Ok(with_cookie(render.redirect(&form.next), cookie))
}

/// Creates the signed-in session: a row others can revoke, a fresh cookie session id. The
/// browser is remembered as one of the user's (see [`limit_keys`]); returns its
/// `Set-Cookie`.
async fn complete(
    state: &AppState,
    session: &TypedSession,
    client: &ClientInfo,
    device: &DeviceCookie,
    user: &User,
    how: &str,
) -> Result<HeaderValue> {
    let id = token::random_hex(32);
    let presented = device.0.clone();
    let (sid, uid, email, detail, origin) = (
        id.clone(),
        user.id,
        user.email.clone(),
        format!("with {how}"),
        client.origin(),
    );
    let value = state
        .db
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
    session.sign_in(&id).await?;
    device_cookie(&value, state.config.cookies_secure())
}

/// The `gatehouse_device` cookie: it marks a browser that completed a sign-in (see
/// `db::login_devices`). It goes to the sign-in pages only, never to scripts.
const DEVICE_COOKIE: &str = "gatehouse_device";

fn device_cookie(value: &str, secure: bool) -> Result<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{DEVICE_COOKIE}={value}; Path=/login; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
        login_devices::LIFETIME_SECS
    ))
    .map_err(AppError::internal)
}

fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

/// The `gatehouse_device` cookie a request carries, if any.
pub struct DeviceCookie(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for DeviceCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == DEVICE_COOKIE)
            .map(|(_, value)| value.to_string());
        Ok(Self(value))
    }
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
    state: &AppState,
    client: &ClientInfo,
    device: &DeviceCookie,
    user: Option<i64>,
    account: &str,
) -> Result<Vec<String>> {
    let ip = client.ip.clone();
    let shared = format!("account:{account}");
    let presented = device.0.clone();
    let bucket = match user {
        None => shared,
        Some(uid) => {
            let from = ip.clone();
            state
                .db
                .run(move |c| {
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

pub async fn second_factor_form(session: TypedSession, render: Render) -> Result<Response> {
    if session.pending_2fa().await?.is_none() {
        return Ok(render.redirect("/login"));
    }
    Ok(render.page(
        "Two-factor authentication",
        views::login::second_factor(&render.ctx, "", &FieldErrors::default()),
    ))
}

pub async fn second_factor_submit(
    State(state): State<AppState>,
    session: TypedSession,
    client: ClientInfo,
    device: DeviceCookie,
    render: Render,
    Form(form): Form<CodeForm>,
) -> Result<Response> {
    let Some(pending) = session.pending_2fa().await? else {
        return Ok(render.redirect("/login"));
    };
    let uid = pending.user_id;
    let user = state.db.run(move |c| users::find(c, uid)).await?;
    let Some(user) = user.filter(|u| !u.is_banned() && u.totp_enabled) else {
        session.clear().await?;
        return Ok(render.redirect("/login"));
    };
    let mut errors = FieldErrors::default();
    let code = form.code.trim().to_string();
    let keys = limit_keys(&state, &client, &device, Some(uid), &uid.to_string()).await?;
    if let Err(secs) = state.totp_limiter.attempt(&keys) {
        record(
            &state,
            &client,
            Action::LoginThrottled,
            Some(uid),
            &user.email,
            &format!("second factor; retry in {secs}s"),
        )
        .await?;
        errors.add("", throttle_message(secs));
        return Ok(throttled(
            &render,
            views::login::second_factor(&render.ctx, &code, &errors),
            secs,
        ));
    }
    let how = match check_second_factor(&state, uid, &code).await? {
        SecondFactor::Totp => "password and TOTP",
        SecondFactor::BackupCode(left) => {
            let detail = format!("{left} backup codes left");
            record(
                &state,
                &client,
                Action::BackupCodeUsed,
                Some(uid),
                &user.email,
                &detail,
            )
            .await?;
            "password and a backup code"
        }
        failure => {
            let (detail, message) = match failure {
                SecondFactor::Replayed => (
                    "replayed TOTP code",
                    "That code was already used. Wait for the next code in your app.",
                ),
                _ => (
                    "wrong second factor",
                    "That code is not right. Enter the 6-digit code from your app, or a backup code.",
                ),
            };
            record(
                &state,
                &client,
                Action::LoginFailed,
                Some(uid),
                &user.email,
                detail,
            )
            .await?;
            errors.add("code", message);
            return Ok(render.page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Two-factor authentication",
                views::login::second_factor(&render.ctx, &code, &errors),
            ));
        }
    };
    let cookie = complete(&state, &session, &client, &device, &user, how).await?;
    Ok(with_cookie(render.redirect(&pending.next), cookie))
}

enum SecondFactor {
    Totp,
    /// A backup code was spent; how many remain.
    BackupCode(i64),
    Replayed,
    Wrong,
}

async fn check_second_factor(state: &AppState, uid: i64, code: &str) -> Result<SecondFactor> {
    let secret = state
        .db
        .run(move |c| users::totp_secret(c, uid))
        .await?
        .unwrap_or_default();
    let now = u64::try_from(crate::db::now()).unwrap_or_default();
    if let Some(step) = totp::matching_step(&secret, code, now) {
        let step = i64::try_from(step).map_err(AppError::internal)?;
        let spent = state
            .db
            .run(move |c| users::spend_totp_step(c, uid, step))
            .await?;
        return Ok(if spent {
            SecondFactor::Totp
        } else {
            SecondFactor::Replayed
        });
    }
    let Some(code) = totp::normalize_backup_code(code) else {
        return Ok(SecondFactor::Wrong);
    };
    let unused = state.db.run(move |c| backup_codes::unused(c, uid)).await?;
    let matched = crate::blocking::run(move || {
        unused
            .into_iter()
            .find(|(_, hash)| password::verify(&code, hash))
            .map(|(id, _)| id)
    })
    .await?;
    let Some(id) = matched else {
        return Ok(SecondFactor::Wrong);
    };
    let spent = state
        .db
        .run(move |c| {
            let spent = backup_codes::mark_used(c, id)?;
            spent
                .then(|| backup_codes::count_unused(c, uid))
                .transpose()
        })
        .await?;
    Ok(spent.map_or(SecondFactor::Wrong, SecondFactor::BackupCode))
}

pub async fn logout(
    State(state): State<AppState>,
    session: TypedSession,
    client: ClientInfo,
    current: CurrentUser,
    render: Render,
) -> Result<Response> {
    let (uid, sid, email, origin) = (
        current.user.id,
        current.session_id.clone(),
        current.user.email.clone(),
        client.origin(),
    );
    state
        .db
        .run(move |c| {
            sessions::delete(c, uid, &sid)?;
            audit::record(
                c,
                &Event {
                    action: Action::Logout,
                    user_id: Some(uid),
                    email: Some(&email),
                    detail: "",
                },
                &origin,
            )
        })
        .await?;
    session.clear().await?;
    Ok(render.redirect("/login"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_cookie_is_for_the_sign_in_pages_only_and_secure_over_https() {
        let plain = device_cookie("ab12", false).unwrap();
        let plain = plain.to_str().unwrap();
        assert!(plain.starts_with("gatehouse_device=ab12;"), "{plain}");
        for attribute in [
            "Path=/login",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=15552000",
        ] {
            assert!(plain.contains(attribute), "{plain}");
        }
        assert!(!plain.contains("Secure"), "{plain}");
        let secure = device_cookie("ab12", true).unwrap();
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
