//! The changelog: every vhost change with a readable diff, filters, and revert (admin).
//! A `user` sees only the entries of vhosts they own or owned.

use super::{AppState, CurrentUser, Render};
use crate::db::changelog::{self, Entry};
use crate::db::deploys;
use crate::error::{AppError, Result};
use crate::sites::SiteError;
use crate::views;
use crate::views::changelog::{ChangelogQuery, EntryView};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use std::collections::HashMap;

fn visible(current: &CurrentUser, e: &Entry) -> bool {
    let me = Some(current.user.id);
    current.user.is_admin()
        || e.old.as_ref().is_some_and(|s| s.owner_id == me)
        || e.new.as_ref().is_some_and(|s| s.owner_id == me)
}

/// The entries with what each one's deploy did on each agent. An entry shown is one the
/// person may see; its deploy's outcomes name agents only, never other sites.
async fn with_deploys(state: &AppState, entries: Vec<Entry>) -> Result<Vec<EntryView>> {
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    let outcomes = state
        .db
        .run(move |c| deploys::outcomes_for_entries(c, &ids))
        .await?;
    let mut by_entry: HashMap<i64, Vec<_>> = HashMap::new();
    for (entry, outcome) in outcomes {
        by_entry.entry(entry).or_default().push(outcome);
    }
    Ok(entries
        .into_iter()
        .map(|e| EntryView {
            deploy: by_entry.remove(&e.id).unwrap_or_default(),
            ..EntryView::of(e)
        })
        .collect())
}

pub async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Query(q): Query<ChangelogQuery>,
) -> Result<Response> {
    let filter = changelog::Filter {
        visible_to: (!current.user.is_admin()).then_some(current.user.id),
        domain: Some(q.domain.trim().to_lowercase()).filter(|s| !s.is_empty()),
        user_email: Some(q.user.trim().to_string()).filter(|s| !s.is_empty()),
        limit: 100,
    };
    let entries = state.db.run(move |c| changelog::list(c, &filter)).await?;
    let views = with_deploys(&state, entries).await?;
    Ok(render.page(
        "Changelog",
        views::changelog::list(&render.ctx, current.user.is_admin(), &views, &q),
    ))
}

pub async fn show(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let entry = state
        .db
        .run(move |c| changelog::find(c, id))
        .await?
        .ok_or(AppError::NotFound)?;
    if !visible(&current, &entry) {
        return Err(AppError::NotFound);
    }
    let v = with_deploys(&state, vec![entry]).await?;
    Ok(render.page(
        "Change",
        views::changelog::detail(&render.ctx, current.user.is_admin(), &v[0]),
    ))
}

/// What reverting an entry would do on each agent (admin, htmx): every check the revert
/// makes, then each agent's Caddyfile diff; nothing is stored or sent.
pub async fn plan(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let planned = match state.sites().plan_revert(&current.user, id).await {
        Ok(plan) => Ok(plan),
        Err(SiteError::Internal(e)) => return Err(e.into()),
        Err(SiteError::NotFound) => return Err(AppError::NotFound),
        Err(refused) => Err(refused.to_string()),
    };
    Ok(render.page("Plan", views::changelog::revert_plan(&planned)))
}

/// Re-applies the state before an entry, as a new change (admin).
pub async fn revert(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    state.sites().revert(&current.user, id).await?;
    Ok(render.redirect("/changelog?reverted=1"))
}
