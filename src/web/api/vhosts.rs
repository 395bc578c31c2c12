//! Sites over JSON: list, get, create, update, toggle and delete, each one of
//! [`crate::sites`]'s use cases. A body is read as a [`SitePatch`]: over a new site's
//! defaults to create one, over the stored site's draft to change it.

use super::PREFIX;
use super::auth::ApiCaller;
use super::errors::{ApiError, ApiResult, json_response};
use crate::db::vhosts::{Snapshot, Vhost};
use crate::sites::{AgentPlan, ShapeErrors, SiteDraft, SitePatch};
use crate::views::vhosts::ListQuery;
use crate::web::AppState;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::future::Future;

/// A site as the API shows it.
#[derive(Serialize)]
pub(super) struct SiteJson {
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
    /// Served by the agents carrying any of these labels (then `all_agents` is false).
    labels: Vec<String>,
    created_at: i64,
    updated_at: i64,
}

pub(super) fn site_json(v: Vhost) -> SiteJson {
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
        labels: v.labels,
        created_at: v.created_at,
        updated_at: v.updated_at,
    }
}

pub(super) fn snapshot_json(s: &Snapshot) -> Value {
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
        "labels": s.labels,
    })
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

fn shape_errors(errors: ShapeErrors) -> ApiError {
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

/// `draft` with `body` laid over it, or why some members cannot be taken at all.
fn patched(body: &Bytes, caller: &ApiCaller, draft: SiteDraft) -> Result<SiteDraft, ApiError> {
    let body = object(body)?;
    let patch = SitePatch::from_json(&body, &caller.user, &draft).map_err(shape_errors)?;
    Ok(patch.apply(draft))
}

pub async fn list_vhosts(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    let rows = state.sites().list(&caller.user, &q.search()).await?;
    let sites: Vec<SiteJson> = rows.into_iter().map(site_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "vhosts": sites })))
}

pub async fn get_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
) -> ApiResult {
    let v = state.sites().owned(&caller.user, id).await?;
    let aside = state.sites().quarantine_of(&caller.user, id).await?;
    let mut site = json!(site_json(v));
    // Only when a Caddy refuses it, so it is set aside on that agent.
    if !aside.is_empty() {
        site["set_aside"] = aside
            .into_iter()
            .map(|e| json!({ "agent_id": e.agent_id, "agent": e.agent, "error": e.error, "line": e.body_line }))
            .collect();
    }
    Ok(json_response(StatusCode::OK, &site))
}

/// `?dry_run=1` on a change: plan it (every check, and what each agent's Caddyfile would
/// become), store and push nothing.
#[derive(Deserialize, Default)]
pub struct DryRun {
    dry_run: Option<String>,
}

impl DryRun {
    /// Whether a plan is asked for. Only an admin may have one: its diff shows the lines of
    /// every site around the change on each agent, other owners' included.
    pub(super) fn wanted(&self, caller: &ApiCaller) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("0" | "false") => Ok(false),
            Some("" | "1" | "true") if !caller.user.is_admin() => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "A plan shows other owners' sites on each agent; only an admin can ask for one.",
            )),
            Some("" | "1" | "true") => Ok(true),
            Some(other) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("dry_run is 1 or 0, not {other:?}."),
            )),
        }
    }
}

/// A plan as the API shows it: per agent, whether its Caddyfile changes, the line diff, and
/// the hash the agent will report running once the change is made.
pub(super) fn plan_json(plan: &[AgentPlan]) -> ApiResult {
    let agents: Vec<Value> = plan
        .iter()
        .map(|p| {
            json!({
                "agent_id": p.agent_id,
                "agent": p.agent,
                "changed": p.changed(),
                "diff": p.diff(),
                "after_hash": p.after_hash,
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "dry_run": true, "plan": agents }),
    ))
}

/// Creates a site. Fields not given take the defaults a new form shows; `enabled` is true
/// unless sent as false; every agent serves it unless `agent_ids` chooses.
pub async fn create_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Query(dry): Query<DryRun>,
    body: Bytes,
) -> ApiResult {
    let draft = patched(&body, &caller, SiteDraft::default())?;
    if dry.wanted(&caller)? {
        return plan_json(&state.sites().plan_create(&caller.user, &draft).await?);
    }
    let (sites, user) = (state.sites(), caller.user.clone());
    deploying(&state, &caller, async move {
        let v = sites.create(&user, &draft).await?;
        let id = v.id;
        let mut response = json_response(StatusCode::CREATED, &site_json(v));
        if let Ok(at) = HeaderValue::from_str(&format!("{PREFIX}/vhosts/{id}")) {
            response.headers_mut().insert(header::LOCATION, at);
        }
        Ok(response)
    })
    .await
}

/// `work`, a change the caller may follow when its deploy outlasts the wait (see
/// [`crate::web::progress`]): `202 Accepted` then, with where to ask.
async fn deploying<F>(state: &AppState, caller: &ApiCaller, work: F) -> ApiResult
where
    F: Future<Output = ApiResult> + Send + 'static,
{
    let work = async move { work.await.unwrap_or_else(IntoResponse::into_response) };
    Ok(crate::web::progress::api(state, caller, work).await)
}

/// Changes a site: members given replace the stored values, the others stay as they are.
pub async fn update_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    Query(dry): Query<DryRun>,
    body: Bytes,
) -> ApiResult {
    let sites = state.sites();
    let v = sites.owned(&caller.user, id).await?;
    let draft = patched(&body, &caller, SiteDraft::of(&v))?;
    if dry.wanted(&caller)? {
        return plan_json(&sites.plan_update(&caller.user, v.id, &draft).await?);
    }
    let (user, id) = (caller.user.clone(), v.id);
    deploying(&state, &caller, async move {
        let v = sites.update(&user, id, &draft).await?;
        Ok(json_response(StatusCode::OK, &site_json(v)))
    })
    .await
}

/// Switches a site on or off (whichever it is not), as the portal's one-tap toggle.
pub async fn toggle_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    Query(dry): Query<DryRun>,
) -> ApiResult {
    if dry.wanted(&caller)? {
        return plan_json(&state.sites().plan_toggle(&caller.user, id).await?);
    }
    let (sites, user) = (state.sites(), caller.user.clone());
    deploying(&state, &caller, async move {
        let now = sites.toggle(&user, id).await?;
        Ok(json_response(StatusCode::OK, &site_json(now)))
    })
    .await
}

pub async fn delete_vhost(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    Query(dry): Query<DryRun>,
) -> ApiResult {
    if dry.wanted(&caller)? {
        return plan_json(&state.sites().plan_delete(&caller.user, id).await?);
    }
    let (sites, user) = (state.sites(), caller.user.clone());
    deploying(&state, &caller, async move {
        sites.delete(&user, id).await?;
        Ok(json_response(StatusCode::OK, &json!({ "deleted": id })))
    })
    .await
}
