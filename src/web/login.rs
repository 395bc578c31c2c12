//! The sign-in pages (password, then TOTP or a backup code when enrolled) and signing out.
//! The checks, limits and audit entries are `accounts::signin`; here are the forms, the
//! cookie session and the device cookie.

use super::auth::{resolve, safe_next};
use super::session::{Pending2fa, TypedSession};
use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::accounts::signin::{self, CodeStep, PasswordStep};
use crate::db::login_devices;
use crate::db::users::User;
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
#[serde(default)]
pub struct CodeForm {
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
        signed_out: session.take_ended_elsewhere().await?,
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
    let mut errors = FieldErrors::default();
    let from = attempt_from(&client, &device);
    let typed = std::mem::take(&mut form.password);
    let step =
        signin::password_step(&state.db, &state.login_limiter, &from, &form.email, typed).await?;
    let refuse = |errors: &mut FieldErrors, message: &str| {
        errors.add("", message.to_string());
        render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Sign in",
            views::login::form(&render.ctx, &form, errors, false),
        )
    };
    let user = match step {
        PasswordStep::Throttled(secs) => {
            errors.add("", throttle_message(secs));
            let body = views::login::form(&render.ctx, &form, &errors, false);
            return Ok(throttled(&render, body, secs));
        }
        PasswordStep::NoMatch => {
            return Ok(refuse(
                &mut errors,
                "That email and password do not match an account.",
            ));
        }
        PasswordStep::Banned => {
            return Ok(refuse(
                &mut errors,
                "This account is suspended. Ask an administrator.",
            ));
        }
        PasswordStep::OneTimeUsed => {
            return Ok(refuse(
                &mut errors,
                "This one-time password has been used. Ask an administrator for a new one.",
            ));
        }
        PasswordStep::SecondFactorOwed(user) => {
            let pending = Pending2fa {
                user_id: user.id,
                next: form.next.clone(),
                since: crate::db::now(),
            };
            session.set_pending_2fa(&pending).await?;
            return Ok(render.redirect("/login/2fa"));
        }
        PasswordStep::Passed(user) => user,
    };
    let cookie = complete(&state, &session, &from, &user, "password").await?;
    Ok(with_cookie(render.redirect(&form.next), cookie))
}

/// Where a sign-in attempt comes from, as the account rules see it.
fn attempt_from(client: &ClientInfo, device: &DeviceCookie) -> signin::Client {
    signin::Client {
        origin: client.origin(),
        ip: client.ip.clone(),
        device: device.0.clone(),
    }
}

/// Signs this browser in: a session row others can revoke, a fresh cookie session id, and
/// the device cookie (see `accounts::signin::start_session`); returns its `Set-Cookie`.
async fn complete(
    state: &AppState,
    session: &TypedSession,
    from: &signin::Client,
    user: &User,
    how: &str,
) -> Result<HeaderValue> {
    let started = signin::start_session(&state.db, user, how, from).await?;
    session.sign_in(&started.session_id).await?;
    device_cookie(&started.device, state.config.cookies_secure())
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
    let mut errors = FieldErrors::default();
    let code = form.code.trim().to_string();
    let from = attempt_from(&client, &device);
    let step = signin::second_factor_step(
        &state.db,
        &state.totp_limiter,
        &from,
        pending.user_id,
        &code,
    )
    .await?;
    let message = match step {
        CodeStep::Passed { user, how } => {
            let cookie = complete(&state, &session, &from, &user, how).await?;
            return Ok(with_cookie(render.redirect(&pending.next), cookie));
        }
        CodeStep::Gone => {
            session.clear().await?;
            return Ok(render.redirect("/login"));
        }
        CodeStep::Throttled(secs) => {
            errors.add("", throttle_message(secs));
            return Ok(throttled(
                &render,
                views::login::second_factor(&render.ctx, &code, &errors),
                secs,
            ));
        }
        CodeStep::Replayed => "That code was already used. Wait for the next code in your app.",
        CodeStep::Wrong => {
            "That code is not right. Enter the 6-digit code from your app, or a backup code."
        }
    };
    errors.add("code", message);
    Ok(render.page_with_status(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Two-factor authentication",
        views::login::second_factor(&render.ctx, &code, &errors),
    ))
}

pub async fn logout(
    State(state): State<AppState>,
    session: TypedSession,
    client: ClientInfo,
    current: CurrentUser,
    render: Render,
) -> Result<Response> {
    signin::sign_out(
        &state.db,
        &current.user,
        &current.session_id,
        &client.origin(),
    )
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
