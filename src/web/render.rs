//! The one place that decides between a full page and an htmx fragment.
//!
//! A fragment is sent only for a plain htmx request: boosted navigation and history
//! restoration need the whole page. Every response says `Vary: HX-Request` so caches keep
//! the two apart.

use crate::views;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::Markup;
use std::convert::Infallible;

/// Is this request for a fragment or a page?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Page,
    Fragment,
}

impl Mode {
    pub fn of(headers: &axum::http::HeaderMap) -> Self {
        let on = |name: &str| headers.get(name).is_some_and(|v| v.as_bytes() == b"true");
        if on("hx-request") && !on("hx-boosted") && !on("hx-history-restore-request") {
            Mode::Fragment
        } else {
            Mode::Page
        }
    }
}

/// Extracted by every HTML handler; turns content into the right response.
pub struct Render {
    pub mode: Mode,
}

impl<S: Send + Sync> FromRequestParts<S> for Render {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            mode: Mode::of(&parts.headers),
        })
    }
}

impl Render {
    /// `content` alone for htmx, or wrapped in the layout with `title`.
    pub fn page(&self, title: &str, content: Markup) -> Response {
        self.page_with_status(StatusCode::OK, title, content)
    }

    pub fn page_with_status(&self, status: StatusCode, title: &str, content: Markup) -> Response {
        let body = match self.mode {
            Mode::Fragment => content,
            Mode::Page => views::layout::page(title, content),
        };
        let mut response = (status, Html(body.into_string())).into_response();
        vary_on_htmx(&mut response);
        response
    }
}

pub fn vary_on_htmx(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("HX-Request"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn only_plain_htmx_requests_get_fragments() {
        assert_eq!(Mode::of(&headers(&[])), Mode::Page);
        assert_eq!(
            Mode::of(&headers(&[("hx-request", "true")])),
            Mode::Fragment
        );
        assert_eq!(
            Mode::of(&headers(&[("hx-request", "true"), ("hx-boosted", "true")])),
            Mode::Page
        );
        assert_eq!(
            Mode::of(&headers(&[
                ("hx-request", "true"),
                ("hx-history-restore-request", "true")
            ])),
            Mode::Page
        );
    }
}
