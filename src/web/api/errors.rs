//! The API's errors: `{"error": {"code", "message", …}}` with the status the module doc of
//! `web::api` lists, for the API's own handlers and for errors the hub's middleware meets on
//! an API path.

use crate::domain::FieldErrors;
use crate::error::AppError;
use crate::sites::SiteError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// An API error, answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// More members of the error object (`fields`, `agent`, `caddy_error`).
    extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    pub(super) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid API token: Authorization: Bearer gh_…. Unknown, revoked and expired \
             tokens are refused.",
        )
    }

    pub(super) fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// 422 with the reason for each field; the whole-form reason (key "") is the message.
    pub(super) fn invalid(errors: &FieldErrors) -> Self {
        let mut fields = Map::new();
        let mut message = None;
        for (field, why) in errors.iter() {
            match field {
                "" => message = Some(why.to_string()),
                // The form's "serve on" choice is `agent_ids`/`all_agents` here.
                "serve_on" => {
                    fields.insert("agent_ids".into(), why.into());
                }
                f => {
                    fields.insert(f.into(), why.into());
                }
            }
        }
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            message.unwrap_or_else(|| "Some values are not valid; see `fields`.".into()),
        )
        .with("fields", Value::Object(fields))
    }

    pub(super) fn rejected(agent: &str, error: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "rejected_by_caddy",
            crate::sites::rejection(agent, error),
        )
        .with("agent", agent.into())
        .with("caddy_error", error.into())
    }
}

impl ApiError {
    /// 409 `rolled_back_by_probe`: what the rollout's probe saw, each finding as an object
    /// (`agent`, `worse`, and `site`, `before`, `after` for a site).
    pub(super) fn rolled_back(seen: &crate::fleet::rollout::ProbeFailure) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "rolled_back_by_probe",
            crate::sites::rolled_back(seen),
        )
        .with(
            "findings",
            serde_json::to_value(&seen.findings).unwrap_or_default(),
        )
    }
}

/// The code for a status, for errors made outside the API's handlers (404, 405, 413, …).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        if let AppError::Internal(cause) = &e {
            tracing::error!(error = ?cause, "API request failed");
        }
        let status = e.status();
        Self::new(status, code_of(status), e.to_string())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        AppError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = self.extra;
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.into());
        let mut response = json_response(self.status, &json!({ "error": error }));
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"gatehouse\""),
            );
        }
        response
    }
}

/// An error the hub's error middleware met on an API path (no route, wrong method, a body
/// over the limit, a timeout, a CSRF refusal): JSON, not a page.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    ApiError::new(status, code_of(status), message).into_response()
}

/// The CSRF layer's answer on the API: a request with cookies is a browser's, and a
/// browser's request without the page's CSRF token is refused.
pub fn cookies_refused() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "This request carries cookies, so it was treated as a browser's and refused. The API \
         takes only an API token: send no cookies.",
    )
    .into_response()
}

pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    // Answered as the API's own, whatever its status: the error middleware leaves it alone.
    response
        .extensions_mut()
        .insert(crate::web::render::Rendered);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(super) type ApiResult = Result<Response, ApiError>;

/// The API's reading of a site use case's failure: the same status as the portal's for the
/// same failure, with the reasons by field or Caddy's own words as members.
impl From<SiteError> for ApiError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::Invalid(errors) => ApiError::invalid(&errors),
            SiteError::Rejected { agent, error } => ApiError::rejected(&agent, &error),
            SiteError::RolledBack(seen) => ApiError::rolled_back(&seen),
            e => AppError::from(e).into(),
        }
    }
}
