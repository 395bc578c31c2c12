//! A user's delegated names (admin): `/users/{id}/grants` lists them, adds one, takes one
//! back. Each change is written with its audit entry in one transaction (see `accounts`).
//! What a pattern grants is defined in `domain::vhost::names`; it is enforced in
//! `crate::claims`.

use super::{AppState, ClientInfo, CurrentUser, Form, Render};
use crate::accounts::{self, AccountError};
use crate::db::grants;
use crate::db::users;
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

/// A grant change on a user who does not exist, by an admin who no longer is one, is not
/// found.
fn not_found(e: AccountError) -> AppError {
    match e {
        AccountError::Db(e) => AppError::from(e),
        _ => AppError::NotFound,
    }
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
    let added = accounts::grant(&state.db, &me.as_admin(&client), id, pattern)
        .await
        .map_err(not_found)?;
    if !added {
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
    let done = accounts::take_back(&state.db, &me.as_admin(&client), id, grant)
        .await
        .map_err(not_found)?;
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
