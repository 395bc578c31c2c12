//! Virtual host pages: the list with search and one-tap toggles, the new/edit form with
//! its live preview, and delete. The use cases are [`crate::sites`]'s; these handlers turn
//! the form into a draft and the outcome into a page. Ownership is checked for the page in
//! the [`OwnedVhost`] extractor: a `user` reaching for someone else's vhost gets 404, as if
//! it did not exist.

use super::{AppState, CurrentUser, Form, Render, progress};
use crate::db::users::{self, User};
use crate::db::vhosts::{self, Vhost};
use crate::domain::FieldErrors;
use crate::domain::vhost::Template;
use crate::error::{AppError, Result};
use crate::fleet::client::Validation;
use crate::fleet::site_config;
use crate::sites::{SiteDraft, SiteError};
use crate::views;
use crate::views::vhosts::{
    AgentCaddyfile, CaddyCheck, Editor, ListQuery, Preview, RowView, draft_of, form_values,
};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// A vhost the current user may see and change (an admin: any; a user: their own).
pub struct OwnedVhost(pub Vhost);

impl FromRequestParts<AppState> for OwnedVhost {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        Ok(Self(state.sites().owned(&current.user, id).await?))
    }
}

pub async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let admin = current.user.is_admin();
    let rows = state.sites().list(&current.user, &q.search()).await?;
    let owners = owners_for(&state, admin).await?;
    let set_aside = state.sites().quarantined(&current.user).await?;
    let mut pending = pending_by_site(&state).await?;
    let rows: Vec<RowView> = rows
        .into_iter()
        .map(|v| {
            RowView {
                pending: pending.remove(&v.id).unwrap_or_default(),
                ..RowView::of(v, &owners)
            }
            .set_aside(&set_aside)
        })
        .collect();
    Ok(render.page(
        "Sites",
        views::vhosts::list(&render.ctx, admin, &rows, &q, &owners),
    ))
}

fn values_of(fields: Vec<(String, String)>) -> BTreeMap<String, String> {
    fields
        .into_iter()
        .filter(|(k, _)| k != "csrf_token")
        .collect()
}

fn template_of(values: &BTreeMap<String, String>) -> Template {
    values
        .get("template")
        .and_then(|t| Template::from_slug(t))
        .unwrap_or(Template::ReverseProxy)
}

/// The agents each site's last change has not reached yet, by site id. Only ever looked
/// up for sites the person may see.
async fn pending_by_site(state: &AppState) -> Result<HashMap<i64, Vec<String>>> {
    let pending = state
        .db
        .run(|c| crate::db::deploys::pending(c, None))
        .await?;
    let mut by_site: HashMap<i64, Vec<String>> = HashMap::new();
    for p in pending {
        by_site.entry(p.vhost_id).or_default().push(p.agent_name);
    }
    Ok(by_site)
}

async fn owners_for(state: &AppState, admin: bool) -> Result<Vec<User>> {
    if !admin {
        return Ok(Vec::new());
    }
    Ok(state.db.run(|c| users::list(c)).await?)
}

/// The reasons a refused use case gives beside the form's fields; any other failure is the
/// portal's error.
fn field_errors(e: SiteError) -> Result<FieldErrors> {
    match e {
        SiteError::Invalid(errors) => Ok(errors),
        e @ (SiteError::Rejected { .. } | SiteError::RolledBack(_)) => {
            let mut errors = FieldErrors::default();
            errors.add("", e.to_string());
            Ok(errors)
        }
        e => Err(e.into()),
    }
}

/// What only saving could find, for the editor shown again: reasons beside the fields (a
/// taken domain, a Caddy's refusal), and what that Caddy said, which the preview then shows
/// instead of "valid".
#[derive(Default)]
struct SaveFound {
    errors: FieldErrors,
    caddy: Option<CaddyCheck>,
}

/// Shows the editor for `values`, with every reason the form is refused: those found by
/// validating it again, plus what saving `found`.
async fn show_editor(
    state: &AppState,
    render: &Render,
    user: &User,
    id: Option<i64>,
    values: BTreeMap<String, String>,
    status: StatusCode,
    found: SaveFound,
) -> Result<Response> {
    let SaveFound {
        errors: extra,
        caddy,
    } = found;
    let (draft, unreadable) = draft_of(&values, user.is_admin());
    let (preview, mut errors) = match state.sites().check(user, &draft).await {
        Ok(checked) if unreadable.is_empty() => {
            (Preview::Block(checked.block, caddy), FieldErrors::default())
        }
        Ok(_) => (Preview::Invalid, FieldErrors::default()),
        Err(e) => (Preview::Invalid, field_errors(e)?),
    };
    errors.merge(unreadable);
    errors.merge(extra);
    let agents = state
        .db
        .run(|c| crate::db::agents::list(c))
        .await?
        .into_iter()
        .map(|a| (a.id, a.name))
        .collect();
    // A fresh form does not greet anyone with errors; they show once something is typed.
    if status == StatusCode::OK && id.is_none() && values.get("domain").is_none_or(|d| d.is_empty())
    {
        errors = FieldErrors::default();
    }
    let quarantine = match id {
        Some(id) => state.sites().quarantine_of(user, id).await?,
        None => Vec::new(),
    };
    let editor = Editor {
        id,
        quarantine,
        template: template_of(&values),
        admin: user.is_admin(),
        owners: owners_for(state, user.is_admin()).await?,
        agents,
        values,
        errors,
        preview,
        pending: match id {
            Some(id) => pending_by_site(state)
                .await?
                .remove(&id)
                .unwrap_or_default(),
            None => Vec::new(),
        },
    };
    let title = if id.is_some() {
        "Edit site"
    } else {
        "New site"
    };
    Ok(render.page_with_status(status, title, views::vhosts::editor(&render.ctx, &editor)))
}

#[derive(Deserialize, Default)]
pub struct NewQuery {
    template: Option<String>,
}

pub async fn new_form(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Query(q): Query<NewQuery>,
) -> Result<Response> {
    let template = q
        .template
        .as_deref()
        .and_then(Template::from_slug)
        .unwrap_or(Template::ReverseProxy);
    let mut values: BTreeMap<String, String> = template
        .fields()
        .iter()
        .filter(|f| !f.default.is_empty())
        .map(|f| (f.name.to_string(), f.default.to_string()))
        .collect();
    values.insert("template".into(), template.slug().into());
    values.insert("enabled".into(), "on".into());
    show_editor(
        &state,
        &render,
        &current.user,
        None,
        values,
        StatusCode::OK,
        SaveFound::default(),
    )
    .await
}

/// The template's fields, swapped in when the template select changes. Values already
/// typed for fields of the same name are kept.
pub async fn fields(
    current: CurrentUser,
    render: Render,
    Query(values): Query<Vec<(String, String)>>,
) -> Result<Response> {
    let values = values_of(values);
    let template = template_of(&values);
    let mut values = values;
    for f in template.fields() {
        if !values.contains_key(f.name) && !f.default.is_empty() {
            values.insert(f.name.to_string(), f.default.to_string());
        }
    }
    Ok(render.page(
        "Template",
        views::vhosts::template_fields(
            template,
            &values,
            &FieldErrors::default(),
            current.user.is_admin(),
        ),
    ))
}

/// What saving the form would change on each agent: every check a save makes, then each
/// agent's Caddyfile diff. Nothing is stored or pushed.
pub async fn plan(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let values = values_of(fields);
    let (draft, unreadable) = draft_of(&values, current.user.is_admin());
    let planned = if unreadable.is_empty() {
        let sites = state.sites();
        let result = match values.get("vhost_id").and_then(|v| v.parse().ok()) {
            Some(id) => sites.plan_update(&current.user, id, &draft).await,
            None => sites.plan_create(&current.user, &draft).await,
        };
        result.map_err(field_errors)
    } else {
        Err(Ok(unreadable))
    };
    let planned = match planned {
        Ok(plan) => Ok(plan),
        Err(errors) => Err(errors?),
    };
    Ok(render.page("Plan", views::vhosts::plan(&planned)))
}

/// The live preview: the exact block this form would generate, or why it cannot.
pub async fn preview(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let values = values_of(fields);
    let (draft, unreadable) = draft_of(&values, current.user.is_admin());
    // The edit form says which site it is; only one this user may change counts.
    let editing = values.get("vhost_id").and_then(|v| v.parse().ok());
    let (preview, errors) = if unreadable.is_empty() {
        match state.sites().preview(&current.user, &draft, editing).await {
            Ok(p) => {
                let caddy = p
                    .caddy
                    .map(|(agent, outcome)| CaddyCheck { agent, outcome });
                (Preview::Block(p.block, caddy), FieldErrors::default())
            }
            Err(e) => (Preview::Invalid, field_errors(e)?),
        }
    } else {
        let mut errors = match state.sites().check(&current.user, &draft).await {
            Ok(_) => FieldErrors::default(),
            Err(e) => field_errors(e)?,
        };
        errors.merge(unreadable);
        (Preview::Invalid, errors)
    };
    Ok(render.page("Preview", views::vhosts::preview(&preview, &errors)))
}

pub async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let work = save(state.clone(), current.clone(), render.clone(), None, fields);
    progress::portal(&state, &current, &render, work).await
}

/// Creates (`id` None) or updates a vhost from its form. A refusal, from the form's rules
/// or from a Caddy, shows the editor again as typed.
async fn save(
    state: AppState,
    current: CurrentUser,
    render: Render,
    id: Option<i64>,
    fields: Vec<(String, String)>,
) -> Result<Response> {
    let (state, render) = (&state, &render);
    let values = values_of(fields);
    let user = &current.user;
    let (draft, unreadable) = draft_of(&values, user.is_admin());
    let mut caddy = None;
    let errors = if unreadable.is_empty() {
        let saved = match id {
            Some(id) => state.sites().update(user, id, &draft).await,
            None => state.sites().create(user, &draft).await,
        };
        match saved {
            Ok(v) => {
                let done = if id.is_some() { "updated" } else { "created" };
                return Ok(render.redirect(&format!("/vhosts?{done}={}", v.id)));
            }
            Err(e) => {
                // The preview beside the refusal says what that Caddy said, not "valid".
                if let SiteError::Rejected { agent, error } = &e {
                    caddy = Some(CaddyCheck {
                        agent: agent.clone(),
                        outcome: Validation::Invalid {
                            error: error.clone(),
                        },
                    });
                }
                field_errors(e)?
            }
        }
    } else {
        unreadable
    };
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    let found = SaveFound { errors, caddy };
    show_editor(state, render, user, id, values, refused, found).await
}

pub async fn edit_form(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    OwnedVhost(v): OwnedVhost,
) -> Result<Response> {
    show_editor(
        &state,
        &render,
        &current.user,
        Some(v.id),
        form_values(&SiteDraft::of(&v)),
        StatusCode::OK,
        SaveFound::default(),
    )
    .await
}

pub async fn update(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    OwnedVhost(v): OwnedVhost,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let work = save(
        state.clone(),
        current.clone(),
        render.clone(),
        Some(v.id),
        fields,
    );
    progress::portal(&state, &current, &render, work).await
}

/// One tap: flips the site and answers with its row as it now truly is.
pub async fn toggle(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    OwnedVhost(v): OwnedVhost,
) -> Result<Response> {
    let work = toggled(state.clone(), current.clone(), render.clone(), v.id);
    progress::portal(&state, &current, &render, work).await
}

/// Site `id` switched, and the answer: its row as it now is, or a page without htmx.
async fn toggled(
    state: AppState,
    current: CurrentUser,
    render: Render,
    id: i64,
) -> Result<Response> {
    let sites = state.sites();
    let result = sites.toggle(&current.user, id).await;
    if !render.htmx {
        // Without htmx there is no row to show the error in: an error page says it.
        result?;
        return Ok(render.redirect("/vhosts"));
    }
    let admin = current.user.is_admin();
    let owners = owners_for(&state, admin).await?;
    let (now, message) = match result {
        Ok(now) => (now, None),
        Err(SiteError::NotFound) => return Err(AppError::NotFound),
        Err(e) => {
            // Show the row as it really is, with what went wrong beside it.
            let message = match e {
                e @ (SiteError::Rejected { .. } | SiteError::RolledBack(_)) => e.to_string(),
                e => {
                    tracing::error!(error = %e, "toggle refused");
                    "Could not change this site; it is shown as it is now.".to_string()
                }
            };
            let truth = sites.find(id).await?.ok_or(AppError::NotFound)?;
            (truth, Some(message))
        }
    };
    Ok(render.page(
        "Sites",
        views::vhosts::row(
            &render.ctx,
            &RowView {
                pending: pending_by_site(&state)
                    .await?
                    .remove(&now.id)
                    .unwrap_or_default(),
                ..RowView::of(now, &owners)
            }
            .set_aside(&sites.quarantine_of(&current.user, id).await?),
            admin,
            message.as_deref(),
        ),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    OwnedVhost(v): OwnedVhost,
) -> Result<Response> {
    let (sites, user, htmx) = (state.sites(), current.user.clone(), render.htmx);
    let work = async move {
        sites.delete(&user, v.id).await?;
        Ok(super::render::redirect(htmx, "/vhosts?deleted=1"))
    };
    progress::portal(&state, &current, &render, work).await
}

/// The whole generated Caddyfile (admin), as the agents will receive it.
/// Each agent's Caddyfile, exactly as a deploy renders it for that agent.
pub async fn caddyfile(State(state): State<AppState>, render: Render) -> Result<Response> {
    let caddy = state.config.caddy.clone();
    let (agents, defaults) = state
        .db
        .run(move |c| {
            let all = vhosts::list(c, &vhosts::Filter::default())?;
            let parsed = site_config::Parsed::new(&all);
            let agents = crate::db::agents::list(c)?
                .into_iter()
                .map(|a| {
                    let (text, hash) = parsed.for_agent(&caddy, &a);
                    AgentCaddyfile {
                        id: a.id,
                        name: a.name,
                        text,
                        hash,
                        running: a.applied_hash,
                    }
                })
                .collect::<Vec<_>>();
            Ok((agents, site_config::whole(&caddy, &all)))
        })
        .await?;
    Ok(render.page("Caddyfile", views::vhosts::caddyfile(&agents, &defaults)))
}
