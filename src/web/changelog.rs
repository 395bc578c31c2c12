//! The changelog: every vhost change with a readable diff, filters, and revert (admin).
//! A `user` sees only the entries of vhosts they own or owned.

use super::{AppState, CurrentUser, Render};
use crate::changes::{self, ChangeError};
use crate::db::changelog::{self, Entry};
use crate::error::{AppError, Result};
use crate::fleet::deploy::DeployError;
use crate::site_config;
use crate::views;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

#[derive(Deserialize, Default, Clone)]
pub struct ChangelogQuery {
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub user: String,
}

/// An entry with the site block before and after, for the diff.
pub struct EntryView {
    pub entry: Entry,
    pub before: String,
    pub after: String,
}

fn block_of(s: Option<&crate::db::vhosts::Snapshot>) -> String {
    let Some(s) = s else { return String::new() };
    let Some(body) = site_config::stored_body(&s.config) else {
        return s.config.clone();
    };
    let block = site_config::site_block(&s.domain, &body);
    if s.enabled {
        block
    } else {
        format!("# disabled: not served\n{block}")
    }
}

fn view(entry: Entry) -> EntryView {
    let before = block_of(entry.old.as_ref());
    let after = block_of(entry.new.as_ref());
    EntryView {
        entry,
        before,
        after,
    }
}

fn visible(current: &CurrentUser, e: &Entry) -> bool {
    let me = Some(current.user.id);
    current.user.is_admin()
        || e.old.as_ref().is_some_and(|s| s.owner_id == me)
        || e.new.as_ref().is_some_and(|s| s.owner_id == me)
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
    let views: Vec<EntryView> = entries.into_iter().map(view).collect();
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
    let v = view(entry);
    Ok(render.page(
        "Change",
        views::changelog::detail(&render.ctx, current.user.is_admin(), &v),
    ))
}

/// Re-applies the state before an entry, as a new change (admin).
pub async fn revert(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let result = super::vhosts::deploy(&state, &current.user, move |tx, author| {
        changes::revert(tx, author, id)
    })
    .await?;
    match result {
        Ok(_) => Ok(render.redirect("/changelog?reverted=1")),
        Err(DeployError::Rejected { agent, error }) => {
            Err(AppError::Conflict(super::vhosts::rejection(&agent, &error)))
        }
        Err(DeployError::Refused(ChangeError::NotFound)) => Err(AppError::NotFound),
        Err(DeployError::Refused(ChangeError::DomainTaken)) => Err(AppError::Conflict(
            "Another site now uses that domain, so this change cannot be reverted.".into(),
        )),
        Err(DeployError::Refused(ChangeError::Refused(why))) => Err(AppError::Conflict(why)),
        Err(DeployError::Refused(ChangeError::Claim(r))) => Err(AppError::Conflict(format!(
            "This change cannot be reverted: {}",
            r.reason
        ))),
        Err(DeployError::Refused(ChangeError::Db(e))) => Err(e.into()),
    }
}
