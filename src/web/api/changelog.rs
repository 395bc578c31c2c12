//! The changelog as JSON, newest first; a `user` sees the entries of sites they own or
//! owned. An admin can revert an entry, or with `?dry_run=1` see what that would do.

use super::auth::ApiCaller;
use super::errors::{ApiError, ApiResult, json_response};
use super::vhosts::{DryRun, plan_json, site_json, snapshot_json};
use crate::db::changelog;
use crate::web::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

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

/// Puts a site back the way it was before entry `id`, as a new change (admins only, as in
/// the portal); with `?dry_run=1`, the plan instead.
pub async fn revert(
    State(state): State<AppState>,
    caller: ApiCaller,
    Path(id): Path<i64>,
    Query(dry): Query<DryRun>,
) -> ApiResult {
    if !caller.user.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Only an admin can revert a change.",
        ));
    }
    if dry.wanted(&caller)? {
        return plan_json(&state.sites().plan_revert(&caller.user, id).await?);
    }
    let now = state.sites().revert(&caller.user, id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "reverted": id, "vhost": now.map(site_json) }),
    ))
}
