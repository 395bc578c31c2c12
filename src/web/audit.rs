//! The audit log page (admin), filtered by event and by email.

use super::{AppState, Render};
use crate::db::audit;
use crate::error::Result;
use crate::views;
use crate::views::audit::AuditQuery;
use axum::extract::{Query, State};
use axum::response::Response;

const PAGE: u32 = 200;

pub async fn page(
    State(state): State<AppState>,
    render: Render,
    Query(q): Query<AuditQuery>,
) -> Result<Response> {
    let action = audit::Action::ALL
        .iter()
        .find(|a| a.as_str() == q.action)
        .map(|a| a.as_str());
    let email = Some(q.email.trim().to_string()).filter(|e| !e.is_empty());
    let entries = state
        .db
        .run(move |c| audit::list(c, action, email.as_deref(), PAGE))
        .await?;
    Ok(render.page("Audit log", views::audit::page(&q, &entries)))
}
