//! Who calls the API: the bearer token of every request, checked by [`guard`] against the
//! database each time (a revocation, an expiry, a ban or a deletion counts at once), its
//! scope against the route's, and every write audited as `api_write`.

use super::errors::ApiError;
use crate::db::api_tokens::{self, ApiToken, Refusal, Scope};
use crate::db::audit::{self, Action, Event};
use crate::db::users::User;
use crate::error::AppError;
use crate::web::{AppState, ClientInfo};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Who is calling, with which token. Exists only when the guard let the request through.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    pub user: User,
    pub token: ApiToken,
}

impl<S: Send + Sync> FromRequestParts<S> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<ApiCaller>()
            .cloned()
            .ok_or_else(ApiError::unauthorized)
    }
}

/// State for one API route's guard.
#[derive(Clone)]
pub struct Guard {
    pub app: AppState,
    pub scope: Scope,
}

/// The bearer token of a request; None without one. Only the `Authorization` header counts:
/// never a cookie, never the query string (which ends up in logs).
fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub async fn guard(State(g): State<Guard>, request: Request, next: Next) -> Response {
    match authenticate(&g, request).await {
        Ok((request, caller, client)) => {
            let method = request.method().clone();
            let path = request.uri().path().to_string();
            let response = next.run(request).await;
            if method != Method::GET && method != Method::HEAD {
                let detail = format!(
                    "token #{} \"{}\": {method} {path} -> {}",
                    caller.token.id,
                    caller.token.name,
                    response.status().as_u16()
                );
                if let Err(e) =
                    record(&g.app, &client, Action::ApiWrite, &caller.user, detail).await
                {
                    tracing::error!(error = %e, "cannot audit an API write");
                }
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate(
    g: &Guard,
    request: Request,
) -> Result<(Request, ApiCaller, ClientInfo), ApiError> {
    let (mut parts, body) = request.into_parts();
    let client = match ClientInfo::from_request_parts(&mut parts, &g.app).await {
        Ok(client) => client,
        Err(never) => match never {},
    };
    let Some(plain) = bearer(&parts).map(str::to_string) else {
        return Err(ApiError::unauthorized());
    };
    let ip = client.ip.clone();
    let verified = g
        .app
        .db
        .run(move |c| {
            let verified = api_tokens::verify(c, &plain)?;
            // As for sessions: a write per request would queue reads behind the writer, and
            // "last used" to the minute (and from where) is what a person needs to know.
            if let Ok((token, _)) = &verified {
                let stale = token
                    .last_used_at
                    .is_none_or(|at| crate::db::now() - at >= 60);
                if stale || token.last_used_ip.as_deref() != Some(ip.as_str()) {
                    api_tokens::touch(c, token.id, &ip)?;
                }
            }
            Ok(verified)
        })
        .await?;
    let (token, user) = match verified {
        Ok(found) => found,
        Err(refusal) => {
            if let Refusal::Expired(token) | Refusal::Banned(token) = &refusal {
                let why = if matches!(refusal, Refusal::Expired(_)) {
                    "expired"
                } else {
                    "user banned"
                };
                let detail = format!("token #{} \"{}\": {why}", token.id, token.name);
                let event = Event {
                    action: Action::ApiTokenRefused,
                    user_id: Some(token.user_id),
                    email: None,
                    detail: &detail,
                };
                audit::write(&g.app.db, &event, &client.origin()).await?;
            }
            return Err(ApiError::unauthorized());
        }
    };
    // The same rule as the session guard: a role that requires 2FA works only once enrolled.
    if g.app.config.security.require_2fa_roles.contains(&user.role) && !user.totp_enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "enrolment_required",
            "Your role requires two-factor authentication: set it up in the portal first.",
        ));
    }
    if token.scope < g.scope {
        let detail = format!(
            "token #{} \"{}\": {} scope used for {} {}",
            token.id,
            token.name,
            token.scope.as_str(),
            parts.method,
            parts.uri.path()
        );
        record(&g.app, &client, Action::ApiTokenRefused, &user, detail).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "This token may only read. Changes need a token with the write scope.",
        ));
    }
    let caller = ApiCaller { user, token };
    parts.extensions.insert(caller.clone());
    Ok((Request::from_parts(parts, body), caller, client))
}

/// Writes one audit event for `user`.
async fn record(
    state: &AppState,
    client: &ClientInfo,
    action: Action,
    user: &User,
    detail: String,
) -> Result<(), AppError> {
    audit::write(
        &state.db,
        &Event::about(user, action, &detail),
        &client.origin(),
    )
    .await?;
    Ok(())
}
