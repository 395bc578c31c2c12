//! The account page: password, two-factor enrolment and backup codes, the list of
//! signed-in sessions with revocation, and personal API tokens.

use super::session::TypedSession;
use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::accounts::{self, signin};
use crate::auth::{password, totp};
use crate::db::api_tokens::{self, Scope};
use crate::db::audit::{self, Action, Event};
use crate::db::{backup_codes, sessions, users};
use crate::domain::FieldErrors;
use crate::domain::Password;
use crate::domain::words::count;
use crate::error::{AppError, Result};
use crate::views;
use crate::views::account::{AccountView, PasswordForm, TokenForm};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

async fn load(state: &AppState, current: &CurrentUser) -> Result<AccountView> {
    let uid = current.user.id;
    let (user, left, list, tokens) = state
        .db
        .run(move |c| {
            Ok((
                users::find(c, uid)?,
                backup_codes::count_unused(c, uid)?,
                sessions::list_for_user(c, uid)?,
                api_tokens::list_for_user(c, uid)?,
            ))
        })
        .await?;
    Ok(AccountView {
        user: user.ok_or(AppError::Unauthorized)?,
        backup_codes_left: left,
        sessions: list,
        current_session: current.session_id.clone(),
        tokens,
    })
}

pub async fn page(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
) -> Result<Response> {
    let view = load(&state, &current).await?;
    Ok(render.page(
        "Account",
        views::account::page(&render.ctx, &view, &views::account::Forms::default()),
    ))
}

/// Checks the current password (see `accounts::signin::current_password_ok`).
async fn current_password_ok(state: &AppState, uid: i64, typed: String) -> Result<bool> {
    signin::current_password_ok(&state.db, &state.login_limiter, uid, typed)
        .await
        .map_err(AppError::from)
}

pub async fn change_password(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<PasswordForm>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let new = errors.check("new", Password::parse(&form.new));
    if new.is_some() && form.new != form.confirm {
        errors.add("confirm", "The two passwords differ.");
    }
    if !current_password_ok(&state, current.user.id, form.current.clone()).await? {
        errors.add("current", "That is not your current password.");
    }
    let (Some(new), true) = (new, errors.is_empty()) else {
        if current.must_change_password {
            return Ok(render.page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Choose your password",
                views::account::choose_password(&render.ctx, &errors),
            ));
        }
        let view = load(&state, &current).await?;
        let forms = views::account::Forms {
            password: Some((&form, &errors)),
            ..Default::default()
        };
        return Ok(render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Account",
            views::account::page(&render.ctx, &view, &forms),
        ));
    };
    let ended = accounts::change_own_password(
        &state.db,
        &current.user,
        &current.session_id,
        new,
        &client.origin(),
    )
    .await?;
    if current.must_change_password {
        // Their own password now: on to what they came for (or the 2FA enrolment owed).
        return Ok(render.redirect("/"));
    }
    let (signed_out, revoked) = (ended.sessions, ended.tokens);
    let view = load(&state, &current).await?;
    let notice = format!(
        "Password changed. Signed out: {}. Revoked: {}.",
        count(signed_out, "other session", "other sessions"),
        count(revoked, "API token", "API tokens")
    );
    let forms = views::account::Forms {
        notice: Some(&notice),
        ..Default::default()
    };
    Ok(render.page("Account", views::account::page(&render.ctx, &view, &forms)))
}

/// The page that asks for a password of one's own after a one-time password signed in; the
/// account page (its password section) for everyone else.
pub async fn choose_password_form(current: CurrentUser, render: Render) -> Result<Response> {
    if !current.must_change_password {
        return Ok(render.redirect("/account#password"));
    }
    Ok(render.page(
        "Choose your password",
        views::account::choose_password(&render.ctx, &FieldErrors::default()),
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ConfirmPasswordForm {
    pub current: String,
}

/// Makes ten new codes (the old ones stop working) and shows them once.
pub async fn regenerate_backup_codes(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<ConfirmPasswordForm>,
) -> Result<Response> {
    if !current.user.totp_enabled {
        return Err(AppError::Conflict(
            "Set up two-factor authentication first.".into(),
        ));
    }
    if !current_password_ok(&state, current.user.id, form.current).await? {
        let mut errors = FieldErrors::default();
        errors.add("backup_current", "That is not your current password.");
        let view = load(&state, &current).await?;
        let forms = views::account::Forms {
            backup: Some(&errors),
            ..Default::default()
        };
        return Ok(render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Account",
            views::account::page(&render.ctx, &view, &forms),
        ));
    }
    let codes = store_new_backup_codes(&state, current.user.id).await?;
    let event = Event::about(&current.user, Action::BackupCodesRegenerated, "");
    audit::write(&state.db, &event, &client.origin()).await?;
    Ok(render.page("Backup codes", views::account::backup_codes(&codes)))
}

async fn store_new_backup_codes(state: &AppState, uid: i64) -> Result<Vec<String>> {
    let codes = totp::new_backup_codes();
    let plain = codes.clone();
    let hashes =
        crate::blocking::run(move || plain.iter().map(|c| password::hash(c)).collect::<Vec<_>>())
            .await?;
    state
        .db
        .run(move |c| backup_codes::replace(c, uid, &hashes))
        .await?;
    Ok(codes)
}

pub async fn enrol_form(
    State(state): State<AppState>,
    session: TypedSession,
    current: CurrentUser,
    render: Render,
) -> Result<Response> {
    if current.user.totp_enabled {
        return Ok(render.page(
            "Two-factor authentication",
            views::account::already_enrolled(),
        ));
    }
    let (sealer, uid) = (state.db.sealer()?, current.user.id);
    let secret = match session.enrol_secret(sealer, uid).await? {
        Some(secret) => secret,
        None => {
            let secret = totp::new_secret();
            session.set_enrol_secret(sealer, uid, &secret).await?;
            secret
        }
    };
    Ok(render.page(
        "Two-factor authentication",
        enrol_view(&render, &current, &secret, "", &FieldErrors::default())?,
    ))
}

fn enrol_view(
    render: &Render,
    current: &CurrentUser,
    secret: &str,
    code: &str,
    errors: &FieldErrors,
) -> Result<maud::Markup> {
    let qr = totp::qr_png_base64(secret, &current.user.email)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("cannot draw the TOTP QR code")))?;
    let url = totp::otpauth_url(secret, &current.user.email).unwrap_or_default();
    Ok(views::account::enrol(
        &render.ctx,
        current.must_enrol,
        &qr,
        secret,
        &url,
        code,
        errors,
    ))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CodeForm {
    pub code: String,
}

pub async fn enrol_submit(
    State(state): State<AppState>,
    session: TypedSession,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<CodeForm>,
) -> Result<Response> {
    if current.user.totp_enabled {
        return Ok(render.page(
            "Two-factor authentication",
            views::account::already_enrolled(),
        ));
    }
    let Some(secret) = session
        .enrol_secret(state.db.sealer()?, current.user.id)
        .await?
    else {
        return Ok(render.redirect("/account/2fa"));
    };
    let now = u64::try_from(crate::db::now()).unwrap_or_default();
    let Some(step) = totp::matching_step(&secret, &form.code, now) else {
        let mut errors = FieldErrors::default();
        errors.add("code", "That code is not right. Check that your device's clock is correct and try the current code.");
        let body = enrol_view(&render, &current, &secret, form.code.trim(), &errors)?;
        return Ok(render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Two-factor authentication",
            body,
        ));
    };
    let (uid, stored) = (current.user.id, secret.clone());
    let step = i64::try_from(step).map_err(AppError::internal)?;
    state
        .db
        .run(move |c| users::enable_totp(c, uid, &stored, step))
        .await?;
    let codes = store_new_backup_codes(&state, uid).await?;
    session.clear_enrol_secret().await?;
    let event = Event::about(&current.user, Action::TotpEnrolled, "");
    audit::write(&state.db, &event, &client.origin()).await?;
    Ok(render.page("Backup codes", views::account::backup_codes(&codes)))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    session: TypedSession,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<String>,
) -> Result<Response> {
    let uid = current.user.id;
    let target = id.clone();
    // Scoped to the user: someone else's session id is simply not found.
    if !state
        .db
        .run(move |c| sessions::delete(c, uid, &target))
        .await?
    {
        return Err(AppError::NotFound);
    }
    let event = Event::about(&current.user, Action::SessionRevoked, "one session");
    audit::write(&state.db, &event, &client.origin()).await?;
    if id == current.session_id {
        session.clear().await?;
        return Ok(render.redirect("/login"));
    }
    Ok(render.redirect("/account"))
}

pub async fn revoke_other_sessions(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
) -> Result<Response> {
    let (uid, keep) = (current.user.id, current.session_id.clone());
    let n = state
        .db
        .run(move |c| sessions::delete_all_for_user(c, uid, Some(&keep)))
        .await?;
    let detail = format!("{n} other sessions");
    let event = Event::about(&current.user, Action::SessionRevoked, &detail);
    audit::write(&state.db, &event, &client.origin()).await?;
    Ok(render.redirect("/account"))
}

/// The longest token name kept.
const TOKEN_NAME_MAX: usize = 60;

/// The token's expiry: the end (UTC) of the day given, or None for "never".
fn parse_expiry(input: &str, now: i64) -> std::result::Result<Option<i64>, &'static str> {
    let input = input.trim();
    if input.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = time::Date::parse(input, &format).map_err(|_| "Give a date as YYYY-MM-DD.")?;
    let end = day
        .next_day()
        .ok_or("Choose an earlier date.")?
        .midnight()
        .assume_utc()
        .unix_timestamp();
    if end <= now {
        return Err("Choose today or a later date.");
    }
    Ok(Some(end))
}

/// Makes a named token and shows it, once.
pub async fn create_token(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<TokenForm>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let name = form.name.trim().to_string();
    if name.is_empty() {
        errors.add(
            "token_name",
            "Give the token a name, e.g. where it will be used.",
        );
    } else if name.chars().count() > TOKEN_NAME_MAX || name.chars().any(char::is_control) {
        errors.add("token_name", "Use at most 60 characters, on one line.");
    }
    let scope = Scope::parse(&form.scope);
    if scope.is_none() {
        errors.add("token_scope", "Choose read or write.");
    }
    let expires = match parse_expiry(&form.expires, crate::db::now()) {
        Ok(at) => at,
        Err(why) => {
            errors.add("token_expires", why);
            None
        }
    };
    if !current_password_ok(&state, current.user.id, form.current.clone()).await? {
        errors.add("token_current", "That is not your current password.");
    }
    let (Some(scope), true) = (scope, errors.is_empty()) else {
        let view = load(&state, &current).await?;
        let forms = views::account::Forms {
            token: Some((&form, &errors)),
            ..Default::default()
        };
        return Ok(render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Account",
            views::account::page(&render.ctx, &view, &forms),
        ));
    };
    let uid = current.user.id;
    let stored_name = name.clone();
    let made = state
        .db
        .run(move |c| api_tokens::create(c, uid, &stored_name, scope, expires))
        .await?;
    let detail = format!(
        "token #{} \"{name}\", {} scope",
        made.token.id,
        scope.as_str()
    );
    let event = Event::about(&current.user, Action::ApiTokenCreated, &detail);
    audit::write(&state.db, &event, &client.origin()).await?;
    let view = load(&state, &current).await?;
    let forms = views::account::Forms {
        new_token: Some((&made.token, &made.plain)),
        ..Default::default()
    };
    Ok(render.page("Account", views::account::page(&render.ctx, &view, &forms)))
}

/// Revokes one of the user's own tokens; someone else's is not found.
pub async fn revoke_token(
    State(state): State<AppState>,
    current: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let uid = current.user.id;
    let revoked = state
        .db
        .run(move |c| api_tokens::revoke(c, id, Some(uid)))
        .await?
        .ok_or(AppError::NotFound)?;
    let detail = format!("token #{} \"{}\"", revoked.id, revoked.name);
    let event = Event::about(&current.user, Action::ApiTokenRevoked, &detail);
    audit::write(&state.db, &event, &client.origin()).await?;
    Ok(render.redirect("/account?token_revoked=1"))
}

#[cfg(test)]
mod tests {
    use super::parse_expiry;

    #[test]
    fn a_token_lasts_through_the_day_given_and_never_without_one() {
        let now = 1_795_316_604; // 2026-11-22 03:03 UTC
        assert_eq!(parse_expiry("", now), Ok(None));
        assert_eq!(
            parse_expiry("2026-11-22", now),
            Ok(Some(1_795_392_000)),
            "today: until midnight UTC"
        );
        assert!(parse_expiry("2026-11-21", now).is_err(), "yesterday");
        assert!(parse_expiry("23/11/2026", now).is_err());
        assert!(parse_expiry("2026-02-30", now).is_err());
    }
}
