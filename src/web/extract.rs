//! Extractors whose rejections become `AppError`, so a bad form gets our error page.

use crate::error::AppError;
use axum::extract::FromRequest;

/// `axum::Form`, rejecting with `AppError` (413 over the body limit, 400 otherwise).
#[derive(FromRequest)]
#[from_request(via(axum::Form), rejection(AppError))]
pub struct Form<T>(pub T);
