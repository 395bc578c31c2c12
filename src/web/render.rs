//! The one place that decides between a full page and an htmx fragment.
//!
//! A fragment is sent only for a plain htmx request: boosted navigation and history
//! restoration need the whole page. Every response says `Vary: HX-Request` so caches keep
//! the two apart.

use super::auth::CurrentUser;
use super::htmx::{Mode, is_htmx};
use super::session::TypedSession;
use crate::error::AppError;
use crate::views::{self, Ctx, NavUser};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::Markup;

/// Extracted by every HTML handler; turns content into the right response. It also
/// carries what every view needs: the CSRF token and who is signed in.
#[derive(Clone)]
pub struct Render {
    pub mode: Mode,
    pub htmx: bool,
    pub ctx: Ctx,
}

impl<S: Send + Sync> FromRequestParts<S> for Render {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = TypedSession::from_request_parts(parts, state).await?;
        let csrf = session.csrf_token().await?;
        let user = parts.extensions.get::<CurrentUser>().map(|c| NavUser {
            name: c.user.name.clone(),
            is_admin: c.user.is_admin(),
            must_enrol: c.must_enrol,
            must_change_password: c.must_change_password,
        });
        let ctx = Ctx {
            csrf,
            user,
            path: parts.uri.path().to_string(),
        };
        Ok(Self {
            mode: Mode::of(&parts.headers),
            htmx: is_htmx(&parts.headers),
            ctx,
        })
    }
}

/// Marks a response a handler rendered itself (a form shown again with 422 or 429), so the
/// error middleware leaves it alone whatever its status.
#[derive(Clone, Copy)]
pub struct Rendered;

impl Render {
    /// `content` alone for htmx, or wrapped in the layout with `title`.
    pub fn page(&self, title: &str, content: Markup) -> Response {
        self.page_with_status(StatusCode::OK, title, content)
    }

    pub fn page_with_status(&self, status: StatusCode, title: &str, content: Markup) -> Response {
        let body = match self.mode {
            Mode::Fragment => content,
            Mode::Page => views::layout::page(&self.ctx, title, content),
        };
        let mut response = (status, Html(body.into_string())).into_response();
        response.extensions_mut().insert(Rendered);
        // Pages carry personal data, CSRF tokens and one-time secrets (backup codes, new
        // passwords): never keep them in a cache or the back-forward history on disk.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        vary_on_htmx(&mut response);
        response
    }

    pub fn redirect(&self, to: &str) -> Response {
        redirect(self.htmx, to)
    }
}

/// Sends the browser elsewhere: 200 with `HX-Redirect` for htmx (a full navigation), a 303
/// for everything else.
pub fn redirect(htmx: bool, to: &str) -> Response {
    let mut response = if htmx {
        let mut r = StatusCode::OK.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert("hx-redirect", v);
        }
        r
    } else {
        Redirect::to(to).into_response()
    };
    vary_on_htmx(&mut response);
    response
}

pub fn vary_on_htmx(response: &mut Response) {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("HX-Request"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htmx_gets_hx_redirect_and_others_get_303() {
        let r = redirect(true, "/login");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["hx-redirect"], "/login");
        let r = redirect(false, "/login");
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/login");
    }
}
