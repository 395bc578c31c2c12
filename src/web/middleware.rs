//! Cross-cutting layers: request spans, security headers, and rendering errors as a toast
//! (htmx) or an error page (everything else).

use super::htmx::Mode;
use super::render::{Rendered, vary_on_htmx};
use crate::error::ErrorPage;
use crate::views;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

pub fn request_span(request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// No inline script anywhere (htmx reads its config from a meta tag), no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Every error answer, whoever made it (a handler, the router's fallback or 405, the
    // timeout or body-limit layers): an error page carries the layout with the CSRF token
    // and who is signed in, and a cached 404 or 403 would outlive the state that caused it.
    if response.status().is_client_error() || response.status().is_server_error() {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Turns an error response into something a person can read. Errors raised as `AppError`
/// carry an [`ErrorPage`]; other 4xx/5xx (a 405 from the router, a 408 from the timeout
/// layer) get a message by status.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let mode = Mode::of(request.headers());
    let api = super::api::is_api_path(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // A handler that rendered its own answer (a form shown again with 422 or 429) stands.
    if response.extensions().get::<Rendered>().is_some() {
        return response;
    }
    let page = match response.extensions().get::<ErrorPage>() {
        Some(page) => page.clone(),
        None => ErrorPage {
            status,
            message: status
                .canonical_reason()
                .unwrap_or("request failed")
                .to_lowercase(),
        },
    };
    // The status the error was made with (the response's own, for one made elsewhere).
    let status = page.status;
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    // Signed in: the guard left the person's header for the page; otherwise the signed-out one.
    let ctx = response
        .extensions()
        .get::<views::Ctx>()
        .cloned()
        .unwrap_or_default();
    if api {
        // An API client reads JSON, never an error page.
        let mut json = super::api::error_response(status, &page.message);
        if let Some(retry_after) = retry_after {
            json.headers_mut().insert(header::RETRY_AFTER, retry_after);
        }
        return json;
    }
    let mut rendered = match mode {
        Mode::Fragment => {
            let mut r = (
                status,
                Html(views::errors::toast(&page.message).into_string()),
            )
                .into_response();
            // htmx is configured to swap error responses; send them to the toast area.
            r.headers_mut()
                .insert("hx-retarget", HeaderValue::from_static("#toasts"));
            r.headers_mut()
                .insert("hx-reswap", HeaderValue::from_static("beforeend"));
            r
        }
        Mode::Page => (
            status,
            Html(views::errors::page(&ctx, status, &page.message).into_string()),
        )
            .into_response(),
    };
    if let Some(retry_after) = retry_after {
        rendered
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after);
    }
    vary_on_htmx(&mut rendered);
    rendered
}
