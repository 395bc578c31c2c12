//! CSRF protection for every state-changing request: the per-session token must arrive in
//! the `X-CSRF-Token` header (htmx sends it from `hx-headers`) or as the `csrf_token` form
//! field (plain forms), and a browser's `Origin`, when sent, must be this site.

use super::session::TypedSession;
use crate::auth::token::constant_time_eq;
use crate::error::AppError;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf_token";

pub async fn protect(request: Request, next: Next) -> Response {
    let api = super::api::is_api_path(request.uri().path());
    match check(request).await {
        Ok(request) => next.run(request).await,
        Err(AppError::Csrf) if api => super::api::cookies_refused(),
        Err(e) => e.into_response(),
    }
}

async fn check(request: Request) -> Result<Request, AppError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return Ok(request);
    }
    // The API authenticates by bearer token alone, which a browser never attaches by itself,
    // so a cookie-less API request needs no CSRF token. One with cookies is treated as a
    // browser's and checked as usual: a session cookie buys nothing on the API (its guard
    // ignores sessions), and a cross-site form cannot ride along on it.
    if super::api::is_api_path(request.uri().path())
        && !request.headers().contains_key(header::COOKIE)
    {
        return Ok(request);
    }
    if !same_origin(&request) {
        tracing::warn!("cross-origin state-changing request refused");
        return Err(AppError::Csrf);
    }
    let (mut parts, body) = request.into_parts();
    let session = TypedSession::from_request_parts(&mut parts, &()).await?;
    let Some(expected) = session.existing_csrf_token().await? else {
        return Err(AppError::Csrf);
    };
    if let Some(sent) = parts.headers.get(HEADER) {
        return if constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
            Ok(Request::from_parts(parts, body))
        } else {
            Err(AppError::Csrf)
        };
    }
    let is_form = parts.headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .starts_with(b"application/x-www-form-urlencoded")
    });
    if !is_form {
        return Err(AppError::Csrf);
    }
    // The body limit layer outside bounds this read.
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| AppError::PayloadTooLarge)?;
    let sent = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| fields.into_iter().find(|(k, _)| k == FIELD).map(|(_, v)| v));
    match sent {
        Some(sent) if constant_time_eq(sent.as_bytes(), expected.as_bytes()) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(AppError::Csrf),
    }
}

/// A browser names the page's origin on cross-site requests; it must be our host.
fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return true;
    };
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
    })
}
