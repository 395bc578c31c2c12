//! The landing page and the fallback for unknown URLs.

use super::{AppState, Render};
use crate::db::users;
use crate::error::{AppError, Result};
use crate::views;
use axum::extract::State;
use axum::response::Response;

pub async fn index(State(state): State<AppState>, render: Render) -> Result<Response> {
    let has_users = state.db.run(|c| Ok(users::count(c)? > 0)).await?;
    Ok(render.page("Welcome", views::home::index(has_users)))
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}
