//! The agents page (admin): add, edit and remove agents, test a connection, sync one or all
//! with live per-agent progress, and see each one's state: online, Caddy's version, last
//! seen, in sync, drifted or changed outside Gatehouse, and how it is trusted over https.
//! Tokens are written, never shown back.

use super::{AppState, Form, Render};
use crate::config::Secret;
use crate::db::agents::{self, Agent};
use crate::db::vhosts;
use crate::domain::FieldErrors;
use crate::domain::agent_url::{self, AgentUrl};
use crate::domain::tls::{CaCertificates, CertFingerprint, TlsSettings, is_https};
use crate::error::{AppError, Result};
use crate::fleet::client::{self, Validation};
use crate::fleet::reconcile::{self, Sync};
use crate::fleet::site_config;
use crate::views;
use crate::views::agents::{AgentForm, AgentState, AgentView, LabelsForm};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

pub fn state_of(agent: &Agent, expected_hash: &str) -> AgentState {
    match (agent.last_seen_at, agent.online, agent.caddy_reachable) {
        (None, false, _) => AgentState::NeverSeen,
        (_, false, _) => AgentState::Offline,
        // Before "Caddy unreachable": an outside config that moved Caddy's admin API makes
        // Caddy unreachable at its address, and this says why.
        _ if agent.changed_outside_at.is_some() => AgentState::ChangedOutside,
        (_, true, false) => AgentState::CaddyDown,
        _ if agent.applied_hash.as_deref() == Some(expected_hash) => AgentState::InSync,
        _ => AgentState::Drifted,
    }
}

/// Every agent with the state it is in now.
pub async fn views_of(state: &AppState) -> Result<Vec<AgentView>> {
    let caddy = state.config.caddy.clone();
    Ok(state
        .db
        .run(move |c| {
            let all = vhosts::list(c, &vhosts::Filter::default())?;
            Ok(agents::list(c)?
                .into_iter()
                .map(|agent| {
                    let (_, expected_hash) = site_config::for_agent(&caddy, &agent, &all);
                    AgentView {
                        state: state_of(&agent, &expected_hash),
                        agent,
                    }
                })
                .collect())
        })
        .await?)
}

async fn view_of(state: &AppState, id: i64) -> Result<AgentView> {
    views_of(state)
        .await?
        .into_iter()
        .find(|v| v.agent.id == id)
        .ok_or(AppError::NotFound)
}

struct CheckedAgent {
    name: String,
    url: String,
    token: Option<Secret>,
    tls: TlsSettings,
}

fn check(form: &AgentForm, token_required: bool, errors: &mut FieldErrors) -> Option<CheckedAgent> {
    let name = form.name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        errors.add("name", "Give the agent a name of at most 64 characters.");
    }
    let parsed = errors.check("url", AgentUrl::parse(&form.url));
    let url = parsed.as_ref().map_or("", AgentUrl::as_str);
    let token = form.token.trim();
    if (token_required || !token.is_empty()) && token.len() < 16 {
        errors.add(
            "token",
            "The token is at least 16 characters (the agent's `token`).",
        );
    }
    let tls = check_tls(form, url, errors);
    errors.is_empty().then(|| CheckedAgent {
        name: name.to_string(),
        url: url.to_string(),
        token: (!token.is_empty()).then(|| Secret::new(token)),
        tls,
    })
}

/// The optional CA certificate or pin; either one only means something over https.
fn check_tls(form: &AgentForm, url: &str, errors: &mut FieldErrors) -> TlsSettings {
    let (ca, pin) = (form.tls_ca.trim(), form.tls_pin.trim());
    let tls = TlsSettings {
        ca: (!ca.is_empty())
            .then(|| errors.check("tls_ca", CaCertificates::parse(ca)))
            .flatten(),
        pin: (!pin.is_empty())
            .then(|| errors.check("tls_pin", CertFingerprint::parse(pin)))
            .flatten(),
    };
    if !ca.is_empty() && !pin.is_empty() {
        errors.add(
            "tls_pin",
            "Give a CA certificate or a fingerprint, not both: a pinned certificate is \
             accepted whoever signed it.",
        );
    }
    if (!ca.is_empty() || !pin.is_empty()) && !is_https(url) {
        errors.add(
            "url",
            "A CA certificate or fingerprint needs an https:// URL.",
        );
    }
    tls
}

async fn page_with(
    state: &AppState,
    render: &Render,
    form: &AgentForm,
    errors: &FieldErrors,
    status: StatusCode,
) -> Result<Response> {
    let list = views_of(state).await?;
    Ok(render.page_with_status(
        status,
        "Agents",
        views::agents::page(&render.ctx, &list, form, errors),
    ))
}

pub async fn page(State(state): State<AppState>, render: Render) -> Result<Response> {
    page_with(
        &state,
        &render,
        &AgentForm::default(),
        &FieldErrors::default(),
        StatusCode::OK,
    )
    .await
}

pub async fn create(
    State(state): State<AppState>,
    render: Render,
    Form(form): Form<AgentForm>,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let Some(agent) = check(&form, true, &mut errors) else {
        let kept = form.kept();
        return page_with(
            &state,
            &render,
            &kept,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    };
    let token = agent.token.clone().unwrap_or_default();
    let (name, url, tls) = (agent.name.clone(), agent.url.clone(), agent.tls.clone());
    let created = state
        .db
        .run(move |c| Ok(agents::insert(c, &name, &url, &token, false, &tls)))
        .await?;
    match created {
        Ok(id) => {
            tracing::info!(agent = %agent.name, "agent added");
            // Ask it at once, so the page shows where it stands.
            let _ = reconcile::sync_agent(&state.db, &state.fleet, &state.config, id).await;
            Ok(render.redirect("/agents"))
        }
        Err(agents::WriteError::NameTaken) => {
            errors.add("name", "Another agent already has this name.");
            let kept = form.kept();
            page_with(
                &state,
                &render,
                &kept,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(agents::WriteError::Db(e)) => Err(e.into()),
    }
}

async fn editable(state: &AppState, id: i64) -> Result<Agent> {
    let agent = state
        .db
        .run(move |c| agents::find(c, id))
        .await?
        .ok_or(AppError::NotFound)?;
    if agent.from_config {
        return Err(AppError::Conflict(
            "This agent is declared in the hub's config file; change it there.".into(),
        ));
    }
    Ok(agent)
}

pub async fn edit_form(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let agent = editable(&state, id).await?;
    let form = AgentForm {
        name: agent.name.clone(),
        // One stored before credentials were refused is shown without them; saving it as
        // shown is refused until they are taken out.
        url: agent_url::redact(&agent.url),
        token: String::new(),
        tls_ca: agent.tls_ca.clone().unwrap_or_default(),
        // Shown the way openssl prints it, so it can be compared by eye.
        tls_pin: agent
            .tls_pin
            .as_deref()
            .and_then(|p| CertFingerprint::parse(p).ok())
            .map(|p| p.to_string())
            .unwrap_or_default(),
    };
    Ok(render.page(
        "Edit agent",
        views::agents::edit(&render.ctx, id, &form, &FieldErrors::default()),
    ))
}

pub async fn update(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
    Form(form): Form<AgentForm>,
) -> Result<Response> {
    // Not while a deploy is between its dry run and its commit: it would push to a stale
    // address or record results against a removed agent.
    let _turn = state.fleet.between_deploys().await;
    editable(&state, id).await?;
    let mut errors = FieldErrors::default();
    let Some(agent) = check(&form, false, &mut errors) else {
        let kept = form.kept();
        return Ok(render.page_with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Edit agent",
            views::agents::edit(&render.ctx, id, &kept, &errors),
        ));
    };
    let updated = state
        .db
        .run(move |c| {
            Ok(agents::update(
                c,
                id,
                &agent.name,
                &agent.url,
                agent.token.as_ref(),
                &agent.tls,
            ))
        })
        .await?;
    match updated {
        Ok(_) => Ok(render.redirect("/agents")),
        Err(agents::WriteError::NameTaken) => {
            errors.add("name", "Another agent already has this name.");
            let kept = form.kept();
            Ok(render.page_with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Edit agent",
                views::agents::edit(&render.ctx, id, &kept, &errors),
            ))
        }
        Err(agents::WriteError::Db(e)) => Err(e.into()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    // Not while a deploy is between its dry run and its commit: it would push to a stale
    // address or record results against a removed agent.
    let _turn = state.fleet.between_deploys().await;
    editable(&state, id).await?;
    state.db.run(move |c| agents::delete(c, id)).await?;
    Ok(render.redirect("/agents"))
}

/// One agent and the deploys that concerned it, newest first.
pub async fn show(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let view = view_of(&state, id).await?;
    let deploys = state
        .db
        .run(move |c| crate::db::deploys::for_agent(c, id, 50))
        .await?;
    Ok(render.page(
        &format!("Agent {}", view.agent.name),
        views::history::agent_page(&view, &deploys),
    ))
}

/// "Test connection": is the agent up, does it accept our token, and does its Caddy accept
/// the config it should run?
pub async fn test(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let view = view_of(&state, id).await?;
    let health = client::health(&state.fleet, &view.agent, crate::fleet::HEALTH_TIMEOUT).await;
    // What it says now is what the page should show (drift included, audited as the
    // reconciler would).
    reconcile::record_health(&state.db, &view.agent, &health).await?;
    // Read again: a first contact has just told us its Caddy's admin address, which the
    // config to validate must carry.
    let view = view_of(&state, id).await?;
    let outcome = if !health.online {
        Err(health
            .error
            .unwrap_or_else(|| "the agent is offline".into()))
    } else {
        let caddy = state.config.caddy.clone();
        let agent = view.agent.clone();
        let (text, _) = state
            .db
            .run(move |c| {
                Ok(site_config::for_agent(
                    &caddy,
                    &agent,
                    &vhosts::list(c, &vhosts::Filter::default())?,
                ))
            })
            .await?;
        match client::validate(&state.fleet, &view.agent, &text, state.fleet.push_timeout).await {
            Validation::Valid { .. } => Ok(format!(
                "Connected. Caddy {} accepts the current configuration.",
                health
                    .caddy_version
                    .as_deref()
                    .unwrap_or("(version unknown)")
            )),
            Validation::Invalid { error } => Err(format!(
                "Connected, but Caddy refuses the current configuration: {error}"
            )),
            Validation::Unavailable { error } => Err(error),
        }
    };
    let view = view_of(&state, id).await?;
    Ok(render.page(
        "Agents",
        views::agents::row(&render.ctx, &view, Some(outcome)),
    ))
}

/// "Sync now": check the agent and push the database's config if it runs anything else.
pub async fn sync(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
) -> Result<Response> {
    let result = reconcile::sync_agent(&state.db, &state.fleet, &state.config, id).await?;
    if result.ok() {
        state.fleet.succeeded(id);
    }
    let message = match &result {
        Sync::InSync => Ok("Already in sync.".to_string()),
        Sync::Pushed => Ok("Synced: the agent now runs the current configuration.".to_string()),
        Sync::Restored => Ok(
            "Caddy's configuration had been changed outside Gatehouse; the current \
             configuration is loaded again."
                .to_string(),
        ),
        Sync::Quarantined(q) => Ok(format!(
            "Synced without {}: Caddy refuses {}, set aside on this agent (see Sites).",
            q.sites
                .iter()
                .map(|(domain, _)| domain.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if q.sites.len() == 1 { "it" } else { "them" }
        )),
        Sync::Offline(e) => Err(format!("Offline: {e}")),
        Sync::Rejected(e) => Err(format!("Caddy refused the configuration: {e}")),
        Sync::Failed(e) => Err(e.clone()),
        Sync::Busy => Err(
            "A push to this agent is still under way; it is checked again when it ends."
                .to_string(),
        ),
    };
    let view = view_of(&state, id).await?;
    if !render.htmx {
        return Ok(render.redirect("/agents"));
    }
    Ok(render.page(
        "Agents",
        views::agents::row(&render.ctx, &view, Some(message)),
    ))
}

/// Saves an agent's labels (also one declared in the config file: labels are the portal's
/// own), then syncs it, since the sites it serves by label may have changed. Refused labels
/// come back beside the field, as typed.
pub async fn labels(
    State(state): State<AppState>,
    render: Render,
    Path(id): Path<i64>,
    Form(form): Form<LabelsForm>,
) -> Result<Response> {
    let view = view_of(&state, id).await?;
    let parsed = match crate::domain::labels::parse(&form.labels) {
        Ok(parsed) => parsed,
        Err(why) => {
            let refused = views::agents::LabelsInput {
                typed: &form.labels,
                error: &why.0,
            };
            let row = views::agents::row_with_labels(&render.ctx, &view, None, Some(refused));
            return Ok(render.page_with_status(StatusCode::UNPROCESSABLE_ENTITY, "Agents", row));
        }
    };
    {
        // Not between a deploy's dry run and its commit: the render it pushes must hold.
        let _turn = state.fleet.between_deploys().await;
        state
            .db
            .run(move |c| agents::set_labels(c, id, &parsed))
            .await?;
    }
    let result = reconcile::sync_agent(&state.db, &state.fleet, &state.config, id).await?;
    let message = match &result {
        Sync::Offline(e) => Err(format!("Labels saved; the agent is offline: {e}")),
        Sync::Rejected(e) => Err(format!(
            "Labels saved, but Caddy refused the configuration: {e}"
        )),
        Sync::Failed(e) => Err(format!("Labels saved, but the sync failed: {e}")),
        _ => Ok("Labels saved.".to_string()),
    };
    if !render.htmx {
        return Ok(render.redirect("/agents"));
    }
    let view = view_of(&state, id).await?;
    Ok(render.page(
        "Agents",
        views::agents::row(&render.ctx, &view, Some(message)),
    ))
}

/// "Sync all": every agent's row comes back syncing itself, so progress shows per agent as
/// each one finishes.
pub async fn sync_all(State(state): State<AppState>, render: Render) -> Result<Response> {
    let list = views_of(&state).await?;
    if !render.htmx {
        for v in &list {
            let _ =
                reconcile::sync_agent(&state.db, &state.fleet, &state.config, v.agent.id).await?;
        }
        return Ok(render.redirect("/agents"));
    }
    Ok(render.page("Agents", views::agents::syncing(&render.ctx, &list)))
}
