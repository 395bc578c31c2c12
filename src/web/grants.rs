//! A user's delegated names (admin): `/users/{id}/grants` lists them, adds one, takes one
//! back. Each change is written with its audit entry in one transaction. What a pattern
//! grants is defined in `domain::vhost::names`; it is enforced in `crate::claims`.

use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::db::audit::{self, Action, Event};
use crate::db::grants;
use crate::db::users::{self, User};
use crate::domain::FieldErrors;
use crate::domain::vhost::Grant;
use crate::error::{AppError, Result};
use crate::views;
use crate::views::grants::GrantForm;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

async fn show(
    state: &AppState,
    render: &Render,
    id: i64,
    form: &GrantForm,
    errors: &FieldErrors,
    notice: Option<String>,
    status: StatusCode,
) -> Result<Response> {
    let (user, list) = state
        .db
        .run(move |c| Ok((users::find(c, id)?, grants::list(c, id)?)))
        .await?;
    let user = user.ok_or(AppError::NotFound)?;
    let page = views::grants::Page {
        user: &user,
        grants: &list,
        form,
        errors,
        notice: notice.as_deref(),
    };
    Ok(render.page_with_status(status, "Names", views::grants::page(&render.ctx, &page)))
}

pub async fn page(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let form = GrantForm::default();
    show(
        &state,
        &render,
        id,
        &form,
        &FieldErrors::default(),
        None,
        StatusCode::OK,
    )
    .await
}

/// Writes `change` with its audit entry; None when the user does not exist (or the acting
/// admin no longer is one).
async fn audited<F>(
    state: &AppState,
    me: &User,
    client: &ClientInfo,
    id: i64,
    action: Action,
    change: F,
) -> Result<Option<Option<String>>>
where
    F: FnOnce(&rusqlite::Connection) -> Result<Option<String>, crate::db::DbError> + Send + 'static,
{
    let (actor, origin) = (me.id, client.origin());
    Ok(state
        .db
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // The acting admin may have been banned or demoted since the guard ran.
            let still_admin =
                users::find(&tx, actor)?.is_some_and(|a| a.is_admin() && !a.is_banned());
            let Some(user) = users::find(&tx, id)?.filter(|_| still_admin) else {
                return Ok(None);
            };
            let done = change(&tx)?;
            if let Some(pattern) = &done {
                let detail = format!("{pattern} (by admin #{actor})");
                let event = Event {
                    action,
                    user_id: Some(user.id),
                    email: Some(&user.email),
                    detail: &detail,
                };
                audit::record(&tx, &event, &origin)?;
            }
            tx.commit()?;
            Ok(Some(done))
        })
        .await?)
}

pub async fn add(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path(id): Path<i64>,
    Form(form): Form<GrantForm>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let Some(grant) = errors.check("pattern", Grant::parse(&form.pattern)) else {
        let refused = StatusCode::UNPROCESSABLE_ENTITY;
        return show(&state, &render, id, &form, &errors, None, refused).await;
    };
    let pattern = grant.as_str().to_string();
    let done = audited(
        &state,
        &me.user,
        &client,
        id,
        Action::GrantAdded,
        move |c| Ok(grants::insert(c, id, &pattern, Some(me.user.id))?.then_some(pattern)),
    )
    .await?
    .ok_or(AppError::NotFound)?;
    if done.is_none() {
        errors.add("pattern", "This name is already granted.");
        let refused = StatusCode::UNPROCESSABLE_ENTITY;
        return show(&state, &render, id, &form, &errors, None, refused).await;
    }
    let notice = format!("Granted {}.", grant.display());
    let blank = GrantForm::default();
    show(
        &state,
        &render,
        id,
        &blank,
        &errors,
        Some(notice),
        StatusCode::OK,
    )
    .await
}

pub async fn remove(
    State(state): State<AppState>,
    me: CurrentUser,
    client: ClientInfo,
    render: Render,
    Path((id, grant)): Path<(i64, i64)>,
) -> Result<Response> {
    let done = audited(
        &state,
        &me.user,
        &client,
        id,
        Action::GrantRemoved,
        move |c| grants::delete(c, id, grant),
    )
    .await?
    .ok_or(AppError::NotFound)?;
    let Some(pattern) = done else {
        return Err(AppError::NotFound);
    };
    let shown = Grant::parse(&pattern).map_or(pattern, |g| g.display());
    let notice = format!(
        "Took back {shown}. Sites already made under it keep working; they cannot be renamed \
         to it again."
    );
    let blank = GrantForm::default();
    show(
        &state,
        &render,
        id,
        &blank,
        &FieldErrors::default(),
        Some(notice),
        StatusCode::OK,
    )
    .await
}
