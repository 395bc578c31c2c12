//! The agent's HTTP handlers and the Bearer-token guard. The JSON shapes they answer are
//! in [`crate::wire`], where the hub's client reads them with the very types that write them.

use super::AgentState;
use super::caddy::CaddyError;
use crate::auth::token::constant_time_eq;
pub use crate::wire::{
    AdaptOutcome, CaddyHealth, ErrorBody, Health, ReloadOutcome, Running, ValidateOutcome,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;

pub async fn health(State(state): State<AgentState>) -> Json<Health> {
    let config = state.config();
    let reachable = state.caddy().reachable().await;
    if reachable {
        state.notice_caddy_restart().await;
    }
    let (running, moved_to) = state.running(reachable).await;
    Json(Health {
        status: "ok".into(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        caddy: CaddyHealth {
            reachable,
            version: state.caddy_version().map(str::to_string),
            admin: config.caddy_admin.authority().to_string(),
            moved_to,
        },
        applied_hash: state.applied_hash(),
        running,
        access_log: config.access_log.clone(),
        tls: config.tls(),
        log: super::logs::LogHealth::of(&state),
    })
}

pub async fn reload(
    State(state): State<AgentState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ReloadOutcome>), Refusal> {
    let outcome = state.reload(caddyfile(body)?).await;
    let status = match outcome {
        ReloadOutcome::Applied { .. } => StatusCode::OK,
        ReloadOutcome::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadOutcome::CaddyUnreachable { .. } => StatusCode::BAD_GATEWAY,
    };
    Ok((status, Json(outcome)))
}

pub async fn validate(
    State(state): State<AgentState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ValidateOutcome>), Refusal> {
    let (status, outcome) = match state.caddy().adapt(caddyfile(body)?.into()).await {
        Ok(warnings) => (StatusCode::OK, ValidateOutcome::Valid { warnings }),
        Err(CaddyError::Rejected { message, .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            ValidateOutcome::Invalid { error: message },
        ),
        Err(CaddyError::Unreachable(error)) => (
            StatusCode::BAD_GATEWAY,
            ValidateOutcome::CaddyUnreachable { error },
        ),
    };
    Ok((status, Json(outcome)))
}

pub async fn adapt(
    State(state): State<AgentState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<AdaptOutcome>), Refusal> {
    let (status, outcome) = match state.caddy().adapt_json(caddyfile(body)?.into()).await {
        Ok((result, warnings)) => (StatusCode::OK, AdaptOutcome::Adapted { result, warnings }),
        Err(CaddyError::Rejected { message, .. }) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            AdaptOutcome::Invalid { error: message },
        ),
        Err(CaddyError::Unreachable(error)) => (
            StatusCode::BAD_GATEWAY,
            AdaptOutcome::CaddyUnreachable { error },
        ),
    };
    Ok((status, Json(outcome)))
}

/// The request body as a Caddyfile: within the size limit and UTF-8, because the hash that
/// hub and agent compare is taken over text. Any content type is accepted.
fn caddyfile(body: Result<Bytes, BytesRejection>) -> Result<String, Refusal> {
    let bytes = body.map_err(|rejection| Refusal(rejection.status(), rejection.body_text()))?;
    String::from_utf8(Vec::from(bytes)).map_err(|_| {
        Refusal(
            StatusCode::BAD_REQUEST,
            "the Caddyfile must be UTF-8 text".into(),
        )
    })
}

/// Lets a request through only with `Authorization: Bearer <token>`, compared in constant
/// time. Runs before the body is read, so a stranger cannot make the agent buffer 64 MiB.
pub async fn require_token(
    State(state): State<AgentState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let expected = state.config().token.expose().as_bytes();
    if presented.is_some_and(|token| constant_time_eq(token.as_bytes(), expected)) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string());
    tracing::warn!(
        peer = peer.as_deref().unwrap_or("unknown"),
        path = request.uri().path(),
        token_sent = presented.is_some(),
        "refused a request without the right token"
    );
    let mut response = Refusal(StatusCode::UNAUTHORIZED, "unauthorized".into()).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// A request the agent turns down itself, answered as [`ErrorBody`].
#[derive(Debug)]
pub struct Refusal(StatusCode, String);

impl Refusal {
    pub(crate) fn new(status: StatusCode, why: String) -> Self {
        Self(status, why)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_is_written_in_snake_case_and_unknown_values_read_as_unknown() {
        for (running, text) in [
            (Running::Matches, "\"matches\""),
            (Running::Changed, "\"changed\""),
            (Running::AdminMoved, "\"admin_moved\""),
            (Running::Unknown, "\"unknown\""),
        ] {
            assert_eq!(serde_json::to_string(&running).unwrap(), text);
            assert_eq!(serde_json::from_str::<Running>(text).unwrap(), running);
        }
        // A newer agent's verdict that this hub does not know is no verdict, not an error.
        assert_eq!(
            serde_json::from_str::<Running>("\"tampered\"").unwrap(),
            Running::Unknown
        );
    }

    #[test]
    fn a_health_answer_without_running_or_moved_to_reads_as_unknown() {
        // What an agent from before `running` answers.
        let old = r#"{"status":"ok","agent_version":"0.1.0",
            "caddy":{"reachable":true,"version":"v2.6.2","admin":"localhost:2019"},
            "applied_hash":null,"access_log":"/var/log/a.log",
            "log":{"malformed":0,"last_id":0,"file":"/var/log/a.log"}}"#;
        let health: Health = serde_json::from_str(old).unwrap();
        assert_eq!(health.running, Running::Unknown);
        assert_eq!(health.caddy.moved_to, None);
        let written = serde_json::to_value(&health).unwrap();
        assert_eq!(written["running"], "unknown");
        assert!(
            written["caddy"].get("moved_to").is_none(),
            "only written when it moved"
        );
    }
}
