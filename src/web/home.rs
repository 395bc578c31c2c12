//! The start page and the fallback for unknown URLs.

use super::{CurrentUser, Render};
use crate::error::AppError;
use crate::views;
use axum::response::Response;

pub async fn index(current: CurrentUser, render: Render) -> Response {
    render.page("Home", views::home::index(&render.ctx, &current.user))
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}
