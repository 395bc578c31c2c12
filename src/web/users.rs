//! The users page (admin): create accounts, change roles, ban and unban, reset a second
//! factor, delete. An admin cannot ban, demote or delete themselves, and the last admin
//! cannot be removed. Every user's API tokens are listed too, each revocable.

use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::accounts::{self, AccountError, NewAccount};
use crate::auth::token;
use crate::db::audit::{self, Action, Event};
use crate::db::users::{self, User};
use crate::domain::FieldErrors;
use crate::domain::{DisplayName, Email, Password, Role};
use crate::error::{AppError, Result};
use crate::views;
use crate::views::users::{NewUserForm, Outcome};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

async fn render_page(
    state: &AppState,
    render: &Render,
    me: &CurrentUser,
    form: &NewUserForm,
    errors: &FieldErrors,
    outcome: &Outcome,
    status: StatusCode,
) -> Result<Response> {
    let (all, tokens) = state
        .db
        .run(|c| Ok((users::list(c)?, crate::db::api_tokens::list_all(c)?)))
        .await?;
    let page = views::users::Page {
        me: me.user.id,
        users: &all,
        tokens: &tokens,
        form,
        errors,
        outcome,
    };
    Ok(render.page_with_status(status, "Users", views::users::page(&render.ctx, &page)))
}

pub async fn page(
    State(state): State<AppState>,
    me: CurrentUser,
    render: Render,
) -> Result<Response> {
    let form = NewUserForm {
        role: "user".into(),
        ..Default::default()
    };
    render_page(
        &state,
        &render,
        &me,
        &form,
        &FieldErrors::default(),
        &Outcome::None,
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Form(form): Form<NewUserForm>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let name = errors.check("name", DisplayName::parse(&form.name));
    let email = errors.check("email", Email::parse(&form.email));
    let role = match form.role.parse::<Role>() {
        Ok(r) => Some(r),
        Err(_) => {
            errors.add("role", "Choose admin or user.");
            None
        }
    };
    let (secret, generated) = if form.password.is_empty() {
        let generated = token::random_hex(12);
        (Password::parse(&generated).ok(), Some(generated))
    } else {
        (
            errors.check("password", Password::parse(&form.password)),
            None,
        )
    };
    let (Some(name), Some(email), Some(role), Some(secret), true) =
        (name, email, role, secret, errors.is_empty())
    else {
        return render_page(
            &state,
            &render,
            &me,
            &form,
            &errors,
            &Outcome::None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let shown = email.to_string();
    let new = NewAccount {
        name,
        email,
        role,
        password: secret,
        one_time: generated.is_some(),
    };
    let created = match accounts::create(&state.db, &me.as_admin(&client), new).await {
        Ok(_) => true,
        Err(AccountError::EmailTaken) => false,
        Err(e) => return Err(e.into()),
    };
    if !created {
        errors.add("email", "An account with this email already exists.");
        return render_page(
            &state,
            &render,
            &me,
            &form,
            &errors,
            &Outcome::None,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
    let outcome = Outcome::Created {
        email: shown,
        one_time_password: generated,
    };
    let blank = NewUserForm {
        role: "user".into(),
        ..Default::default()
    };
    render_page(
        &state,
        &render,
        &me,
        &blank,
        &FieldErrors::default(),
        &outcome,
        StatusCode::OK,
    )
    .await
}

/// What the admin is told after a change to `user`.
fn done(user: &User, what: &str) -> String {
    format!("{}: {what}", user.email)
}

async fn after(
    state: &AppState,
    render: &Render,
    me: &CurrentUser,
    message: String,
) -> Result<Response> {
    let form = NewUserForm {
        role: "user".into(),
        ..Default::default()
    };
    render_page(
        state,
        render,
        me,
        &form,
        &FieldErrors::default(),
        &Outcome::Done(message),
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn change_role(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
    Form(form): Form<RoleForm>,
) -> Result<Response> {
    let role: Role = form.role.parse().map_err(AppError::BadRequest)?;
    let user = accounts::change_role(&state.db, &me.as_admin(&client), id, role).await?;
    let message = done(&user, "role changed");
    after(&state, &render, &me, message).await
}

#[derive(Deserialize)]
pub struct BanForm {
    #[serde(default)]
    reason: String,
}

pub async fn ban(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
    Form(form): Form<BanForm>,
) -> Result<Response> {
    let reason = form.reason.trim().to_string();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(AppError::BadRequest(
            "Give a reason for the ban (at most 200 characters).".into(),
        ));
    }
    let user = accounts::ban(&state.db, &me.as_admin(&client), id, reason).await?;
    let message = done(&user, "banned");
    after(&state, &render, &me, message).await
}

pub async fn unban(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let user = accounts::unban(&state.db, &me.as_admin(&client), id).await?;
    let message = done(&user, "unbanned");
    after(&state, &render, &me, message).await
}

pub async fn reset_2fa(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let user = accounts::reset_2fa(&state.db, &me.as_admin(&client), id).await?;
    let message = done(&user, "two-factor authentication reset");
    after(&state, &render, &me, message).await
}

pub async fn delete(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let user = accounts::delete(&state.db, &me.as_admin(&client), id).await?;
    let message = done(&user, "deleted");
    after(&state, &render, &me, message).await
}

/// Revokes anyone's API token.
pub async fn revoke_token(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let revoked = state
        .db
        .run(move |c| {
            let Some(token) = crate::db::api_tokens::revoke(c, id, None)? else {
                return Ok(None);
            };
            let owner = users::find(c, token.user_id)?;
            Ok(Some((token, owner)))
        })
        .await?;
    let Some((token, owner)) = revoked else {
        return Err(AppError::NotFound);
    };
    let owner_email = owner.map(|u| u.email).unwrap_or_default();
    let detail = format!("token #{} \"{}\" of {owner_email}", token.id, token.name);
    let event = Event::about(&me.user, Action::ApiTokenRevoked, &detail);
    audit::write(&state.db, &event, &client.origin()).await?;
    let message = format!("Revoked the token {} of {owner_email}.", token.name);
    after(&state, &render, &me, message).await
}
