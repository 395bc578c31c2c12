//! Signing in (password, then TOTP or a backup code when enrolled) and signing out.
//! Failures never say whether the account exists; every attempt counts against per-IP and
//! per-account limits; every outcome is audited.

use super::auth::{resolve, safe_next};
use super::session::{Pending2fa, TypedSession};
use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::auth::{password, token, totp};
use crate::db::audit::{self, Action, Event};
use crate::db::users::User;
use crate::db::{backup_codes, sessions, users};
use crate::domain::Email;
use crate::error::{AppError, Result};
use crate::views::{self, forms::FormErrors};
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
pub struct LoginForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub next: String,
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
            &FormErrors::default(),
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
    render: Render,
    Form(mut form): Form<LoginForm>,
) -> Result<Response> {
    form.next = safe_next(Some(&form.next));
    let email = form.email.trim().to_lowercase();
    let mut errors = FormErrors::default();
    let keys = [format!("ip:{}", client.ip), format!("account:{email}")];
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

    let refuse = |errors: &mut FormErrors, message: &str| {
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
    complete(&state, &session, &client, &user, "password").await?;
    Ok(render.redirect(&form.next))
}

/// Creates the signed-in session: a row others can revoke, a fresh cookie session id.
async fn complete(
    state: &AppState,
    session: &TypedSession,
    client: &ClientInfo,
    user: &User,
    how: &str,
) -> Result<()> {
    let id = token::random_hex(32);
    let (sid, uid, email, detail, origin) = (
        id.clone(),
        user.id,
        user.email.clone(),
        format!("with {how}"),
        client.origin(),
    );
    state
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
            tx.commit()?;
            Ok(())
        })
        .await?;
    session.sign_in(&id).await
}

pub async fn second_factor_form(session: TypedSession, render: Render) -> Result<Response> {
    if session.pending_2fa().await?.is_none() {
        return Ok(render.redirect("/login"));
    }
    Ok(render.page(
        "Two-factor authentication",
        views::login::second_factor(&render.ctx, "", &FormErrors::default()),
    ))
}

pub async fn second_factor_submit(
    State(state): State<AppState>,
    session: TypedSession,
    client: ClientInfo,
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
    let mut errors = FormErrors::default();
    let code = form.code.trim().to_string();
    if let Err(secs) = state
        .totp_limiter
        .attempt(&[format!("ip:{}", client.ip), format!("account:{uid}")])
    {
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
    match check_second_factor(&state, uid, &code).await? {
        SecondFactor::Totp => {
            complete(&state, &session, &client, &user, "password and TOTP").await?;
            Ok(render.redirect(&pending.next))
        }
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
            complete(
                &state,
                &session,
                &client,
                &user,
                "password and a backup code",
            )
            .await?;
            Ok(render.redirect(&pending.next))
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
            Ok(render.page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Two-factor authentication",
                views::login::second_factor(&render.ctx, &code, &errors),
            ))
        }
    }
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
