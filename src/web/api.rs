//! The JSON API under `/api/v1`: vhosts (list, get, create, update, toggle, delete) and the
//! changelog, for scripts and CI. Authentication is an `Authorization: Bearer` API token
//! only — no session, no CSRF token, no second-factor prompt — checked by [`guard`] on
//! every request, which re-reads the token and its user so a revocation, an expiry, a ban or
//! a deletion counts at once.
//!
//! Authorization and the save/deploy path are the portal's own: [`super::vhosts::owned`],
//! [`super::vhosts::filter_for`], [`super::vhosts::save_values`] and the deploy pipeline. A
//! JSON body is turned into the same field values the form sends, so every rule (domain,
//! template fields, the `user` directive allowlist) is checked by the same code.
//!
//! Errors are `{"error": {"code", "message", …}}` with these statuses: 400 a body that is
//! not a JSON object; 401 no token, or an unknown, revoked or expired one (with
//! `WWW-Authenticate: Bearer`); 403 a read token used to write, or an account that must set
//! up two-factor authentication first; 404 no such site, or another user's; 409 Caddy
//! refused the resulting configuration (code `rejected_by_caddy`; nothing changed anywhere);
//! 422 invalid values (code `invalid`, with `fields`: the reason per field; a name outside
//! a user's grants, a port they may not use or an overlap with another owner's site is a
//! reason for `domain`, and an admin's overlap also for `allow_overlap`, which they may send
//! as `true` to save it anyway).

use super::vhosts::{self as portal, ListQuery, SaveError};
use super::{AppState, ClientInfo};
use crate::changes::{self, ChangeError};
use crate::db::api_tokens::{self, ApiToken, Refusal, Scope};
use crate::db::audit::{self, Action, Event};
use crate::db::changelog;
use crate::db::users::User;
use crate::db::vhosts::{Snapshot, Vhost};
use crate::domain::FieldErrors;
use crate::domain::vhost::Template;
use crate::error::AppError;
use crate::fleet::deploy::DeployError;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Where the API lives; the CSRF layer and the error renderer recognise it by this.
pub const PREFIX: &str = "/api/v1";

pub fn is_api_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/api/v1/")
}

// ---------------------------------------------------------------------------------------
// Errors

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

    fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Send a valid API token: Authorization: Bearer gh_…. Unknown, revoked and expired \
             tokens are refused.",
        )
    }

    fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    /// 422 with the reason for each field; the whole-form reason (key "") is the message.
    fn invalid(errors: &FieldErrors) -> Self {
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

    fn rejected(agent: &str, error: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "rejected_by_caddy",
            portal::rejection(agent, error),
        )
        .with("agent", agent.into())
        .with("caddy_error", error.into())
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

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    // Answered as the API's own, whatever its status: the error middleware leaves it alone.
    response.extensions_mut().insert(super::render::Rendered);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

type ApiResult = Result<Response, ApiError>;

// ---------------------------------------------------------------------------------------
// Authentication

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
                let (uid, origin) = (token.user_id, client.origin());
                g.app
                    .db
                    .run(move |c| {
                        audit::record(
                            c,
                            &Event {
                                action: Action::ApiTokenRefused,
                                user_id: Some(uid),
                                email: None,
                                detail: &detail,
                            },
                            &origin,
                        )
                    })
                    .await?;
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
pub(super) async fn record(
    state: &AppState,
    client: &ClientInfo,
    action: Action,
    user: &User,
    detail: String,
) -> Result<(), AppError> {
    let (uid, email, origin) = (user.id, user.email.clone(), client.origin());
    state
        .db
        .run(move |c| {
            audit::record(
                c,
                &Event {
                    action,
                    user_id: Some(uid),
                    email: Some(&email),
                    detail: &detail,
                },
                &origin,
            )
        })
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Representations

/// A site as the API shows it.
#[derive(Serialize)]
struct SiteJson {
    id: i64,
    /// As written to Caddy (punycode for international names).
    domain: String,
    template: String,
    /// The template's values, as the form has them.
    fields: BTreeMap<String, String>,
    /// The generated site block body.
    config: String,
    enabled: bool,
    owner_id: Option<i64>,
    all_agents: bool,
    agent_ids: Vec<i64>,
    created_at: i64,
    updated_at: i64,
}

fn site_json(v: Vhost) -> SiteJson {
    SiteJson {
        fields: serde_json::from_str(&v.params).unwrap_or_default(),
        id: v.id,
        domain: v.domain,
        template: v.template,
        config: v.config,
        enabled: v.enabled,
        owner_id: v.owner_id,
        all_agents: v.all_agents,
        agent_ids: v.agent_ids,
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

fn snapshot_json(s: &Snapshot) -> Value {
    let fields: BTreeMap<String, String> = serde_json::from_str(&s.params).unwrap_or_default();
    json!({
        "domain": s.domain,
        "template": s.template,
        "fields": fields,
        "config": s.config,
        "enabled": s.enabled,
        "owner_id": s.owner_id,
        "all_agents": s.all_agents,
        "agent_ids": s.agent_ids,
    })
}

// ---------------------------------------------------------------------------------------
// Request bodies → the form's values

/// Top-level members besides the templates' own fields.
const SITE_KEYS: &[&str] = &["domain", "template", "enabled", "owner_id"];

fn is_template_field(name: &str) -> bool {
    Template::ALL
        .iter()
        .any(|t| t.fields().iter().any(|f| f.name == name))
}

fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "The body must be a JSON object, e.g. {\"domain\": \"app.example.com\", …}.",
        )),
    }
}

/// A JSON value as a form value: None clears the field (false, null), as an unticked box.
fn scalar(v: &Value) -> Result<Option<String>, &'static str> {
    match v {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(true) => Ok(Some("on".into())),
        Value::Bool(false) | Value::Null => Ok(None),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err("Give text, a number, true or false."),
    }
}

fn set(values: &mut BTreeMap<String, String>, key: &str, value: Option<String>) {
    match value {
        Some(v) => values.insert(key.to_string(), v),
        None => values.remove(key),
    };
}

/// The defaults a new form shows for `template`'s fields, where nothing is set yet.
fn add_defaults(values: &mut BTreeMap<String, String>, template: &str) {
    if let Some(t) = Template::from_slug(template) {
        for f in t.fields() {
            if !f.default.is_empty() && !values.contains_key(f.name) {
                values.insert(f.name.to_string(), f.default.to_string());
            }
        }
    }
}

/// Lays a JSON body over form values. Reasons for members that cannot be taken at all
/// (unknown, wrong shape, an owner a `user` may not choose) go into `errors`.
fn overlay(
    values: &mut BTreeMap<String, String>,
    body: &Map<String, Value>,
    user: &User,
    errors: &mut BTreeMap<String, String>,
) {
    if let Some(t) = body.get("template").and_then(Value::as_str)
        && values.get("template").map(String::as_str) != Some(t)
    {
        add_defaults(values, t);
    }
    // The template the site will have: a field of another one would be dropped unseen, so
    // it is refused instead. (An unknown template is reported by the form's own check.)
    let chosen = body
        .get("template")
        .and_then(Value::as_str)
        .or(values.get("template").map(String::as_str))
        .and_then(Template::from_slug);
    let foreign = |name: &str| -> Option<String> {
        let t = chosen?;
        (!t.fields().iter().any(|f| f.name == name))
            .then(|| format!("Not a field of the {} template.", t.slug()))
    };
    for (key, value) in body {
        match key.as_str() {
            "fields" => match value {
                Value::Object(fields) => {
                    for (name, value) in fields {
                        if !is_template_field(name) {
                            errors.insert(format!("fields.{name}"), "Unknown field.".into());
                            continue;
                        }
                        if let Some(why) = foreign(name) {
                            errors.insert(format!("fields.{name}"), why);
                            continue;
                        }
                        match scalar(value) {
                            Ok(v) => set(values, name, v),
                            Err(why) => {
                                errors.insert(format!("fields.{name}"), why.into());
                            }
                        }
                    }
                }
                _ => {
                    errors.insert("fields".into(), "Give an object of field values.".into());
                }
            },
            "agent_ids" | "all_agents" => {}
            // An admin's knowing override of the overlap rule, for this request only.
            "allow_overlap" => match value {
                Value::Bool(true) if user.is_admin() => {
                    set(values, "allow_overlap", Some("on".into()))
                }
                Value::Bool(true) => {
                    errors.insert(
                        "allow_overlap".into(),
                        "Only an admin can override the overlap rule.".into(),
                    );
                }
                Value::Bool(false) => set(values, "allow_overlap", None),
                _ => {
                    errors.insert("allow_overlap".into(), "Give true or false.".into());
                }
            },
            // The form's checkbox is "present or not"; here only a real boolean is clear.
            "enabled" => match value {
                Value::Bool(on) => set(values, "enabled", on.then(|| "on".to_string())),
                _ => {
                    errors.insert("enabled".into(), "Give true or false.".into());
                }
            },
            "owner_id" if !user.is_admin() => {
                if value.as_i64() != Some(user.id) {
                    errors.insert(
                        "owner_id".into(),
                        "Only an admin can choose who owns a site.".into(),
                    );
                }
            }
            // An admin's null means "nobody owns it", never "me".
            "owner_id" => match value {
                Value::Null => set(values, "owner_id", Some(portal::NO_OWNER.into())),
                Value::Number(n) if n.is_i64() => set(values, "owner_id", Some(n.to_string())),
                _ => {
                    errors.insert(
                        "owner_id".into(),
                        "Give a user id, or null for a site nobody owns.".into(),
                    );
                }
            },
            k if is_template_field(k) && !SITE_KEYS.contains(&k) && foreign(k).is_some() => {
                errors.insert(k.into(), foreign(k).unwrap_or_default());
            }
            k if SITE_KEYS.contains(&k) || is_template_field(k) => match scalar(value) {
                Ok(v) => set(values, k, v),
                Err(why) => {
                    errors.insert(k.into(), why.into());
                }
            },
            k => {
                errors.insert(k.into(), "Unknown field.".into());
            }
        }
    }
    // Which agents serve it: `all_agents: true`, or `agent_ids: [..]` to choose.
    let all = body.get("all_agents");
    let ids = body.get("agent_ids").filter(|v| !v.is_null());
    if all.is_some() || ids.is_some() {
        values.retain(|k, _| k != "serve_on" && !k.starts_with("agent_"));
    }
    match (all, ids) {
        (Some(Value::Bool(true)), Some(_)) => {
            errors.insert(
                "agent_ids".into(),
                "Give agent_ids or all_agents: true, not both.".into(),
            );
        }
        (Some(v), _) if !v.is_boolean() => {
            errors.insert("all_agents".into(), "Give true or false.".into());
        }
        (_, Some(Value::Array(list))) => {
            values.insert("serve_on".into(), "chosen".into());
            for id in list {
                match id.as_i64() {
                    Some(id) => {
                        values.insert(format!("agent_{id}"), "on".into());
                    }
                    None => {
                        errors.insert("agent_ids".into(), "Give a list of agent ids.".into());
                    }
                }
            }
        }
        (_, Some(_)) => {
            errors.insert("agent_ids".into(), "Give a list of agent ids.".into());
        }
        (Some(Value::Bool(false)), None) => {
            values.insert("serve_on".into(), "chosen".into());
        }
        _ => {}
    }
}

fn shape_errors(errors: BTreeMap<String, String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        "Some values are not valid; see `fields`.",
    )
    .with(
        "fields",
        Value::Object(errors.into_iter().map(|(k, v)| (k, v.into())).collect()),
    )
}

// ---------------------------------------------------------------------------------------
// Handlers

pub async fn list_vhosts(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let filter = portal::filter_for(&caller.user, &q);
    let rows = state
        .db
        .run(move |c| crate::db::vhosts::list(c, &filter))
        .await?;
    let sites: Vec<SiteJson> = rows.into_iter().map(site_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "vhosts": sites })))
}

pub async fn get_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    let v = portal::owned(&state, &caller.user, id).await?;
    Ok(json_response(StatusCode::OK, &site_json(v)))
}

fn saved(result: Result<Vhost, SaveError>, status: StatusCode) -> ApiResult {
    match result {
        Ok(v) => {
            let id = v.id;
            let mut response = json_response(status, &site_json(v));
            if status == StatusCode::CREATED
                && let Ok(at) = HeaderValue::from_str(&format!("{PREFIX}/vhosts/{id}"))
            {
                response.headers_mut().insert(header::LOCATION, at);
            }
            Ok(response)
        }
        Err(SaveError::Invalid(errors)) => Err(ApiError::invalid(&errors)),
        Err(SaveError::Rejected { agent, error }) => Err(ApiError::rejected(&agent, &error)),
    }
}

/// Creates a site. Fields not given take the defaults a new form shows; `enabled` is true
/// unless sent as false; every agent serves it unless `agent_ids` chooses.
pub async fn create_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    body: Bytes,
) -> ApiResult {
    let body = object(&body)?;
    let mut values = BTreeMap::from([("enabled".to_string(), "on".to_string())]);
    let mut errors = BTreeMap::new();
    overlay(&mut values, &body, &caller.user, &mut errors);
    if !errors.is_empty() {
        return Err(shape_errors(errors));
    }
    let result = portal::save_values(&state, &caller.user, None, &values).await?;
    saved(result, StatusCode::CREATED)
}

/// Changes a site: members given replace the stored values, the others stay as they are.
pub async fn update_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    body: Bytes,
) -> ApiResult {
    let v = portal::owned(&state, &caller.user, id).await?;
    let body = object(&body)?;
    let mut values = portal::stored_values(&v);
    let mut errors = BTreeMap::new();
    overlay(&mut values, &body, &caller.user, &mut errors);
    if !errors.is_empty() {
        return Err(shape_errors(errors));
    }
    let result = portal::save_values(&state, &caller.user, Some(v.id), &values).await?;
    saved(result, StatusCode::OK)
}

fn change_failed(e: DeployError) -> ApiError {
    match e {
        DeployError::Rejected { agent, error } => ApiError::rejected(&agent, &error),
        DeployError::Refused(ChangeError::NotFound) => AppError::NotFound.into(),
        DeployError::Refused(ChangeError::Db(e)) => e.into(),
        DeployError::Refused(e) => AppError::Conflict(e.to_string()).into(),
    }
}

/// Switches a site on or off (whichever it is not), as the portal's one-tap toggle.
pub async fn toggle_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    let v = portal::owned(&state, &caller.user, id).await?;
    let result = portal::deploy_owned(&state, &caller.user, v.id, changes::toggle).await?;
    match result {
        Ok(now) => Ok(json_response(StatusCode::OK, &site_json(now))),
        Err(e) => Err(change_failed(e)),
    }
}

pub async fn delete_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    let v = portal::owned(&state, &caller.user, id).await?;
    let id = v.id;
    let result = portal::deploy_owned(&state, &caller.user, id, changes::delete).await?;
    match result {
        Ok(_) => Ok(json_response(StatusCode::OK, &json!({ "deleted": id }))),
        Err(e) => Err(change_failed(e)),
    }
}

#[derive(Deserialize, Default)]
pub struct ChangelogQuery {
    #[serde(default)]
    domain: String,
    #[serde(default)]
    user: String,
    limit: Option<u32>,
}

/// The changelog, newest first; a `user` sees the entries of sites they own or owned.
pub async fn changelog(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<ChangelogQuery>,
) -> ApiResult {
    let filter = changelog::Filter {
        visible_to: (!caller.user.is_admin()).then_some(caller.user.id),
        domain: Some(q.domain.trim().to_lowercase()).filter(|s| !s.is_empty()),
        user_email: Some(q.user.trim().to_string()).filter(|s| !s.is_empty()),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let entries = state.db.run(move |c| changelog::list(c, &filter)).await?;
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "action": e.action,
                "domain": e.domain,
                "vhost_id": e.vhost_id,
                "user_email": e.user_email,
                "old": e.old.as_ref().map(snapshot_json),
                "new": e.new.as_ref().map(snapshot_json),
                "created_at": e.created_at,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "changelog": entries }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn user(admin: bool) -> User {
        User {
            id: 7,
            name: "U".into(),
            email: "u@example.com".into(),
            role: if admin { Role::Admin } else { Role::User },
            banned_at: None,
            ban_reason: None,
            totp_enabled: true,
            created_at: 0,
        }
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn json_members_become_the_forms_values() {
        let mut values = BTreeMap::from([("enabled".to_string(), "on".to_string())]);
        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({
                "domain": "app.example.com",
                "template": "redirect",
                "target": "https://example.org",
                "enabled": false,
                "agent_ids": [3, 4],
            })),
            &user(false),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(values.get("enabled"), None, "false unticks");
        assert_eq!(values["keep_path"], "on", "the template's default");
        assert_eq!(values["redirect_kind"], "permanent");
        assert_eq!(values["serve_on"], "chosen");
        assert_eq!(
            (values["agent_3"].as_str(), values["agent_4"].as_str()),
            ("on", "on")
        );
    }

    #[test]
    fn unknown_members_wrong_shapes_and_a_users_owner_are_refused() {
        let mut values = BTreeMap::new();
        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({
                "upstram": "x",
                "serve_on": "chosen",
                "agent_9": "on",
                "domain": ["a"],
                "owner_id": 1,
                "fields": {"nope": "1"},
            })),
            &user(false),
            &mut errors,
        );
        let keys: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "agent_9",
                "domain",
                "fields.nope",
                "owner_id",
                "serve_on",
                "upstram"
            ]
        );
        assert!(values.is_empty(), "nothing refused is taken: {values:?}");

        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({"owner_id": 1})),
            &user(true),
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(values["owner_id"], "1", "an admin chooses the owner");
    }

    #[test]
    fn another_templates_field_is_refused_and_an_admins_null_owner_means_nobody() {
        let mut values = BTreeMap::from([("template".to_string(), "reverse_proxy".to_string())]);
        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({"root": "/srv", "fields": {"browse": true}, "upstream": "a:1"})),
            &user(true),
            &mut errors,
        );
        assert_eq!(
            errors.get("root").map(String::as_str),
            Some("Not a field of the reverse_proxy template.")
        );
        assert!(errors.contains_key("fields.browse"), "{errors:?}");
        assert!(!values.contains_key("root") && !values.contains_key("browse"));
        assert_eq!(values["upstream"], "a:1", "its own fields are taken");

        // Switching template in the same body: the new template's fields are its own.
        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({"template": "static_files", "root": "/srv"})),
            &user(true),
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");

        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({"owner_id": null})),
            &user(true),
            &mut errors,
        );
        assert_eq!(values["owner_id"], portal::NO_OWNER);
        overlay(
            &mut values,
            &body(json!({"owner_id": null})),
            &user(false),
            &mut errors,
        );
        assert!(
            errors.contains_key("owner_id"),
            "a user cannot disown a site"
        );
    }

    #[test]
    fn all_agents_clears_a_choice_and_conflicts_with_ids() {
        let mut values = BTreeMap::from([
            ("serve_on".to_string(), "chosen".to_string()),
            ("agent_2".to_string(), "on".to_string()),
        ]);
        let mut errors = BTreeMap::new();
        overlay(
            &mut values,
            &body(json!({"all_agents": true})),
            &user(true),
            &mut errors,
        );
        assert!(errors.is_empty() && values.is_empty(), "{values:?}");
        overlay(
            &mut values,
            &body(json!({"all_agents": true, "agent_ids": [1]})),
            &user(true),
            &mut errors,
        );
        assert!(errors.contains_key("agent_ids"));
    }
}
