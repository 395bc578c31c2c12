//! The one application error. Each variant's doc gives its status. Internal causes are
//! logged inside the request span and never shown: the client sees a generic message.
//!
//! `IntoResponse` cannot see the request, so it attaches an [`ErrorPage`] to the response;
//! the `render_errors` middleware in `web` then turns it into a toast for htmx or a full
//! error page for everything else.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub type Result<T, E = AppError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request itself is malformed (not a form the user can fix).
    #[error("{0}")]
    BadRequest(String),
    /// 401: sign in first.
    #[error("please sign in")]
    Unauthorized,
    /// 403: signed in, but not allowed.
    #[error("you are not allowed to do that")]
    Forbidden,
    /// 403: the CSRF token was missing or wrong.
    #[error("this form has expired; reload the page and try again")]
    Csrf,
    /// 404: no such page or object, or one this user may not know exists.
    #[error("not found")]
    NotFound,
    /// 409: the change conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is over the configured limit.
    #[error("the request is too large")]
    PayloadTooLarge,
    /// 429: too many attempts; try again after the given number of seconds.
    #[error("too many attempts; try again in {0} seconds")]
    TooManyRequests(u64),
    /// 500: anything unexpected. The cause is logged, never shown.
    #[error("something went wrong on our side")]
    Internal(#[source] anyhow::Error),
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized => StatusCode::UNAUTHORIZED,
            AppError::Forbidden | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(err.into())
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(err: crate::db::DbError) -> Self {
        AppError::internal(err)
    }
}

impl From<crate::blocking::BlockingError> for AppError {
    fn from(err: crate::blocking::BlockingError) -> Self {
        AppError::internal(err)
    }
}

impl From<axum::extract::rejection::FormRejection> for AppError {
    fn from(rejection: axum::extract::rejection::FormRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge
        } else {
            AppError::BadRequest(rejection.body_text())
        }
    }
}

impl From<axum::extract::rejection::QueryRejection> for AppError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        AppError::BadRequest(rejection.body_text())
    }
}

/// How the portal words a refused account change (the command line words its own).
impl From<crate::accounts::AccountError> for AppError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::{AccountError, Refusal};
        match e {
            AccountError::NotFound => AppError::NotFound,
            AccountError::Refused(Refusal::NoLongerAdmin) => {
                AppError::Conflict("You are no longer an admin.".into())
            }
            AccountError::Refused(Refusal::Yourself(what)) => {
                AppError::Conflict(format!("You cannot {what} yourself. Ask another admin."))
            }
            AccountError::Refused(Refusal::LastAdmin) => {
                AppError::Conflict("Gatehouse needs at least one admin.".into())
            }
            AccountError::EmailTaken => {
                AppError::Conflict("An account with this email already exists.".into())
            }
            AccountError::Throttled(secs) => AppError::TooManyRequests(secs),
            AccountError::Db(e) => AppError::from(e),
        }
    }
}

/// What the error middleware needs to render the error for a person.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub message: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let AppError::Internal(cause) = &self {
            // Logged here, inside the request span, with the full cause chain.
            tracing::error!(error = ?cause, "request failed");
        }
        let message = self.to_string();
        let mut response = (status, message.clone()).into_response();
        if let AppError::TooManyRequests(secs) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
            .extensions_mut()
            .insert(ErrorPage { status, message });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_carry_their_cause_to_the_client() {
        let err = AppError::internal(anyhow::anyhow!("SQLITE_CORRUPT at /secret/path"));
        let response = err.into_response();
        let page = response.extensions().get::<ErrorPage>().unwrap();
        assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!page.message.contains("SQLITE"), "{}", page.message);
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let response = AppError::TooManyRequests(42).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }
}
