//! Import and export pages (admin): paste a Caddyfile, preview, confirm; download an agent's
//! Caddyfile or the JSON export.
//!
//! The preview only reads. Confirming plans the import again inside the deploy pipeline's
//! transaction: if that plan differs from the one previewed (someone changed a site
//! meanwhile), nothing is written and the new preview is shown; otherwise every vhost is
//! written in one transaction, one changelog entry each, and a Caddy that refuses the result
//! leaves everything as it was.

use super::{AppState, CurrentUser, Form, Render};
use crate::domain::FieldErrors;
use crate::error::{AppError, Result};
use crate::sites::import::{self, Parsed, Plan, Target};
use crate::sites::{AgentPlan, SiteError};
use crate::views::{
    self,
    import::{ImportFields, ImportForm},
};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

async fn agent_choices(state: &AppState) -> Result<Vec<(i64, String)>> {
    Ok(state
        .db
        .run(|c| crate::db::agents::list(c))
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect())
}

async fn show(
    state: &AppState,
    render: &Render,
    fields: &ImportFields,
    plan: Option<&Plan>,
    plans: &[AgentPlan],
    errors: &FieldErrors,
    status: StatusCode,
) -> Result<Response> {
    let agents = agent_choices(state).await?;
    let form = ImportForm {
        caddyfile: &fields.caddyfile,
        agent: &fields.agent,
        agents: &agents,
    };
    Ok(render.page_with_status(
        status,
        "Import",
        views::import::page(&render.ctx, &form, plan, plans, errors),
    ))
}

pub async fn form(State(state): State<AppState>, render: Render) -> Result<Response> {
    show(
        &state,
        &render,
        &ImportFields::default(),
        None,
        &[],
        &FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

/// The file read and the target resolved, or the form's reasons.
async fn read(
    state: &AppState,
    user: &crate::db::users::User,
    fields: &ImportFields,
    errors: &mut FieldErrors,
) -> Result<Option<(Parsed, Target)>> {
    if fields.caddyfile.trim().is_empty() {
        errors.add("caddyfile", "Paste a Caddyfile to import.");
        return Ok(None);
    }
    // Reading a large file with many snippets takes a while: off the async workers.
    let text = fields.caddyfile.clone();
    let parsed = match crate::blocking::run(move || import::parse(&text)).await? {
        Ok(p) => p,
        Err(e) => {
            errors.add(
                "caddyfile",
                format!("This is not a readable Caddyfile: {e}"),
            );
            return Ok(None);
        }
    };
    let agent_id = match fields.agent.as_str() {
        "" => None,
        id => {
            let agents = agent_choices(state).await?;
            match id
                .parse::<i64>()
                .ok()
                .filter(|id| agents.iter().any(|a| a.0 == *id))
            {
                Some(id) => Some(id),
                None => {
                    errors.add("", "Choose an agent from the list.");
                    return Ok(None);
                }
            }
        }
    };
    Ok(Some((
        parsed,
        Target {
            owner_id: Some(user.id),
            agent_id,
        },
    )))
}

/// What the import would do, written nowhere.
pub async fn preview(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<ImportFields>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let Some((parsed, target)) = read(&state, &current.user, &fields, &mut errors).await? else {
        return show(
            &state,
            &render,
            &fields,
            None,
            &[],
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let sites = state.sites();
    let plan = sites.import_plan(&parsed, target).await?;
    // Each agent's Caddyfile before and after, when there is something to import.
    let agents = if plan.writes() {
        sites
            .import_agent_plans(&current.user, &parsed, target)
            .await?
    } else {
        Vec::new()
    };
    show(
        &state,
        &render,
        &fields,
        Some(&plan),
        &agents,
        &errors,
        StatusCode::OK,
    )
    .await
}

/// Confirms a previewed import: through the deploy pipeline, all or nothing.
pub async fn apply(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<ImportFields>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    let Some((parsed, target)) = read(&state, &current.user, &fields, &mut errors).await? else {
        return show(&state, &render, &fields, None, &[], &errors, refused).await;
    };
    let sites = state.sites();
    let message = match sites
        .import(&current.user, &parsed, target, &fields.fingerprint)
        .await
    {
        Ok((applied, plan)) => {
            return Ok(render.page("Imported", views::import::done(&applied, &plan)));
        }
        Err(
            e @ (SiteError::Rejected { .. } | SiteError::RolledBack(_) | SiteError::Conflict(_)),
        ) => e.to_string(),
        Err(e) => return Err(e.into()),
    };
    errors.add("", message);
    // The preview as things stand now, to confirm again or fix.
    let plan = sites.import_plan(&parsed, target).await?;
    show(
        &state,
        &render,
        &fields,
        Some(&plan),
        &[],
        &errors,
        StatusCode::CONFLICT,
    )
    .await
}

/// A file download: `text` with the given type, never cached.
fn download(text: String, content_type: &'static str, filename: &str) -> Response {
    let safe: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut response = (StatusCode::OK, text).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The Caddyfile agent `id` runs, as a download.
pub async fn agent_caddyfile(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response> {
    let config = state.config.clone();
    let (name, text) = state
        .db
        .run(move |c| crate::export::agent_caddyfile(c, &config, id))
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(download(
        text,
        "text/caddyfile; charset=utf-8",
        &format!("{name}.Caddyfile"),
    ))
}

/// Vhosts, settings and agents as JSON, without agent tokens.
pub async fn export_json(State(state): State<AppState>) -> Result<Response> {
    let config = state.config.clone();
    let export = state
        .db
        .run(move |c| crate::export::json(c, &config))
        .await?;
    let text = serde_json::to_string_pretty(&export)
        .map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
    Ok(download(text, "application/json", "gatehouse-export.json"))
}
