//! The users page (admin): create accounts, change roles, ban and unban, reset a second
//! factor, delete. An admin cannot ban, demote or delete themselves, and the last admin
//! cannot be removed. Every user's API tokens are listed too, each revocable.

use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::auth::{password, token};
use crate::db::audit::{self, Action, Event};
use crate::db::users::{self, NewUser, User};
use crate::db::{DbError, sessions};
use crate::domain::FieldErrors;
use crate::domain::{DisplayName, Email, Password, Role};
use crate::error::{AppError, Result};
use crate::views;
use crate::views::users::{NewUserForm, Outcome};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use rusqlite::Connection;
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
    let hash = crate::blocking::run(move || password::hash(secret.expose())).await?;
    let (actor, origin, shown) = (me.user.id, client.origin(), email.to_string());
    let created = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            match users::insert(
                &tx,
                &NewUser {
                    name: &name,
                    email: &email,
                    password_hash: &hash,
                    role,
                },
            ) {
                Ok(id) => {
                    let detail = format!("role {role}, created by admin #{actor}");
                    let event = Event {
                        action: Action::UserCreated,
                        user_id: Some(id),
                        email: Some(email.as_str()),
                        detail: &detail,
                    };
                    audit::record(&tx, &event, &origin)?;
                    tx.commit()?;
                    Ok(true)
                }
                Err(users::InsertError::EmailTaken) => Ok(false),
                Err(users::InsertError::Db(e)) => Err(e),
            }
        })
        .await?;
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

/// Runs a change on another user inside one transaction with its audit entry, after the
/// safety rules. `change` returns the audit detail.
async fn act<F>(
    state: &AppState,
    me: &CurrentUser,
    client: &ClientInfo,
    target: i64,
    action: Action,
    change: F,
) -> Result<String>
where
    F: FnOnce(&Connection, &User) -> Result<String, ActError> + Send + 'static,
{
    let origin = client.origin();
    let actor = me.user.id;
    let result = state
        .db
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // The acting admin may have been banned or demoted since the guard ran.
            let still_admin =
                users::find(&tx, actor)?.is_some_and(|a| a.is_admin() && !a.is_banned());
            if !still_admin {
                return Ok(Err(ActError::Refused("You are no longer an admin.".into())));
            }
            let Some(user) = users::find(&tx, target)? else {
                return Ok(Err(ActError::NotFound));
            };
            let detail = match change(&tx, &user) {
                Ok(d) => d,
                Err(ActError::Db(e)) => return Err(e),
                Err(other) => return Ok(Err(other)),
            };
            let detail = format!("{detail} (by admin #{actor})");
            // A deleted user keeps their email in the log, not a dangling id.
            let still_there = users::find(&tx, user.id)?.map(|u| u.id);
            let event = Event {
                action,
                user_id: still_there,
                email: Some(&user.email),
                detail: &detail,
            };
            audit::record(&tx, &event, &origin)?;
            tx.commit()?;
            Ok(Ok(format!("{}: {}", user.email, action_done(action))))
        })
        .await?;
    result.map_err(|e| match e {
        ActError::NotFound => AppError::NotFound,
        ActError::Refused(why) => AppError::Conflict(why),
        ActError::Db(e) => AppError::from(e),
    })
}

fn action_done(action: Action) -> &'static str {
    match action {
        Action::RoleChanged => "role changed",
        Action::Ban => "banned",
        Action::Unban => "unbanned",
        Action::TotpReset => "two-factor authentication reset",
        Action::UserDeleted => "deleted",
        _ => "done",
    }
}

pub enum ActError {
    NotFound,
    Refused(String),
    Db(DbError),
}

impl From<DbError> for ActError {
    fn from(e: DbError) -> Self {
        ActError::Db(e)
    }
}

impl From<rusqlite::Error> for ActError {
    fn from(e: rusqlite::Error) -> Self {
        ActError::Db(e.into())
    }
}

fn not_self(me: i64, target: &User, what: &str) -> Result<(), ActError> {
    if me == target.id {
        return Err(ActError::Refused(format!(
            "You cannot {what} yourself. Ask another admin."
        )));
    }
    Ok(())
}

/// Removing `target` from the admins must leave at least one active admin.
fn keeps_an_admin(c: &Connection, target: &User) -> Result<(), ActError> {
    if target.is_admin() {
        let others: i64 = c.query_row(
            "SELECT count(*) FROM users WHERE role = 'admin' AND banned_at IS NULL AND id != ?1",
            [target.id],
            |r| r.get(0),
        )?;
        if others == 0 {
            return Err(ActError::Refused(
                "Gatehouse needs at least one admin.".into(),
            ));
        }
    }
    Ok(())
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
    let my_id = me.user.id;
    let message = act(
        &state,
        &me,
        &client,
        id,
        Action::RoleChanged,
        move |c, target| {
            not_self(my_id, target, "change the role of")?;
            if role == Role::User {
                keeps_an_admin(c, target)?;
            }
            users::set_role(c, target.id, role)?;
            Ok(format!("{} -> {role}", target.role))
        },
    )
    .await?;
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
    let my_id = me.user.id;
    let origin = client.origin();
    let message = act(&state, &me, &client, id, Action::Ban, move |c, target| {
        not_self(my_id, target, "ban")?;
        keeps_an_admin(c, target)?;
        users::set_banned(c, target.id, Some(&reason))?;
        // Every live session ends now, not at expiry, and every API token goes for good: an
        // unban must not bring back credentials made before (or by whoever caused) the ban.
        let n = sessions::delete_all_for_user(c, target.id, None)?;
        let tokens =
            crate::db::api_tokens::revoke_all_for_user(c, target, "account banned", &origin)?;
        Ok(format!(
            "reason: {reason}; {n} sessions ended; {tokens} API tokens revoked"
        ))
    })
    .await?;
    after(&state, &render, &me, message).await
}

pub async fn unban(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let message = act(&state, &me, &client, id, Action::Unban, move |c, target| {
        users::set_banned(c, target.id, None)?;
        Ok(String::new())
    })
    .await?;
    after(&state, &render, &me, message).await
}

pub async fn reset_2fa(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let origin = client.origin();
    let message = act(
        &state,
        &me,
        &client,
        id,
        Action::TotpReset,
        move |c, target| {
            users::reset_totp(c, target.id)?;
            // They sign in again with their password, then enrol afresh; no token made
            // by whoever had the second factor outlives the reset.
            let n = sessions::delete_all_for_user(c, target.id, None)?;
            let why = "two-factor authentication reset by an admin";
            let t = crate::db::api_tokens::revoke_all_for_user(c, target, why, &origin)?;
            Ok(format!("{n} sessions ended, {t} API tokens revoked"))
        },
    )
    .await?;
    after(&state, &render, &me, message).await
}

pub async fn delete(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let my_id = me.user.id;
    let message = act(
        &state,
        &me,
        &client,
        id,
        Action::UserDeleted,
        move |c, target| {
            not_self(my_id, target, "delete")?;
            keeps_an_admin(c, target)?;
            users::delete(c, target.id)?;
            Ok(format!("{} {}", target.role, target.email))
        },
    )
    .await?;
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
    let (uid, email, origin) = (me.user.id, me.user.email.clone(), client.origin());
    state
        .db
        .run(move |c| {
            audit::record(
                c,
                &Event {
                    action: Action::ApiTokenRevoked,
                    user_id: Some(uid),
                    email: Some(&email),
                    detail: &detail,
                },
                &origin,
            )
        })
        .await?;
    let message = format!("Revoked the token {} of {owner_email}.", token.name);
    after(&state, &render, &me, message).await
}
