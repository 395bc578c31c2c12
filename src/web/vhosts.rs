//! Virtual host pages: the list with search and one-tap toggles, the new/edit form with
//! its live preview, and delete. Ownership is checked in one place, the [`OwnedVhost`]
//! extractor: a `user` reaching for someone else's vhost gets 404, as if it did not exist.

use super::{AppState, CurrentUser, Form, Render};
use crate::changes::{self, ChangeError};
use crate::db::users::{self, User};
use crate::db::vhosts::{self, Snapshot, Vhost};
use crate::domain::FieldErrors;
use crate::domain::caddyfile::{BodyPolicy, CaddyfileBody};
use crate::domain::tenant::About;
use crate::domain::vhost::{GenerateContext, SiteAddress, Template};
use crate::error::{AppError, Result};
use crate::fleet::deploy::DeployError;
use crate::site_config;
use crate::tenancy::{self, Verdict};
use crate::views;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A vhost the current user may see and change (an admin: any; a user: their own).
pub struct OwnedVhost(pub Vhost);

impl FromRequestParts<AppState> for OwnedVhost {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let current = CurrentUser::from_request_parts(parts, state).await?;
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        Ok(Self(owned(state, &current.user, id).await?))
    }
}

/// The vhost `id` if `user` may see and change it; another user's site is not found.
pub(super) async fn owned(state: &AppState, user: &User, id: i64) -> Result<Vhost> {
    let vhost = state
        .db
        .run(move |c| vhosts::find(c, id))
        .await?
        .ok_or(AppError::NotFound)?;
    if !user.is_admin() && vhost.owner_id != Some(user.id) {
        return Err(AppError::NotFound);
    }
    Ok(vhost)
}

/// Runs `change` on site `id` through the deploy pipeline, checking again inside the
/// change's transaction that `user` may still change that site (an admin may have given it
/// to someone else since the request was checked).
pub(super) async fn deploy_owned<T, F>(
    state: &AppState,
    user: &User,
    id: i64,
    change: F,
) -> Result<Result<T, DeployError>>
where
    F: Fn(&rusqlite::Connection, &crate::db::changelog::Author<'_>, i64) -> Result<T, ChangeError>
        + Clone
        + Send
        + Sync
        + 'static,
    T: Send + 'static,
{
    let only = only_own(user);
    deploy(state, user, move |tx, author| {
        changes::ensure_owned(tx, id, only)?;
        change(tx, author, id)
    })
    .await
}

/// Whose sites `user` may change, for [`changes::ensure_owned`] inside the change's
/// transaction: only their own, or (an admin) any.
pub(super) fn only_own(user: &User) -> Option<i64> {
    (!user.is_admin()).then_some(user.id)
}

#[derive(Deserialize, Default, Clone)]
pub struct ListQuery {
    #[serde(default)]
    pub q: String,
    /// "", "on" or "off".
    #[serde(default)]
    pub status: String,
    /// Owner id as text; "" for everyone (admins only).
    #[serde(default)]
    pub owner: String,
}

/// What a row of the list shows.
pub struct RowView {
    pub vhost: Vhost,
    pub display: String,
    pub template: String,
    pub owner: Option<String>,
}

fn row_view(v: Vhost, owners: &[User]) -> RowView {
    // Stored domains are normalised; only punycode labels read differently when shown.
    let display = if v.domain.contains("xn--") {
        SiteAddress::parse(&v.domain)
            .map(|a| a.display())
            .unwrap_or_else(|_| v.domain.clone())
    } else {
        v.domain.clone()
    };
    let template =
        Template::from_slug(&v.template).map_or(v.template.clone(), |t| t.label().to_string());
    let owner = v
        .owner_id
        .and_then(|id| owners.iter().find(|u| u.id == id))
        .map(|u| u.email.clone());
    RowView {
        vhost: v,
        display,
        template,
        owner,
    }
}

/// What a list shows `user`: a `user` only ever their own sites, whatever the query says.
pub(super) fn filter_for(user: &User, q: &ListQuery) -> vhosts::Filter {
    vhosts::Filter {
        owner_id: if user.is_admin() {
            q.owner.parse().ok()
        } else {
            Some(user.id)
        },
        enabled: match q.status.as_str() {
            "on" => Some(true),
            "off" => Some(false),
            _ => None,
        },
        search: Some(q.q.trim().to_lowercase()).filter(|s| !s.is_empty()),
    }
}

pub async fn list(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Query(q): Query<ListQuery>,
) -> Result<Response> {
    let admin = current.user.is_admin();
    let filter = filter_for(&current.user, &q);
    let (rows, owners) = state
        .db
        .run(move |c| {
            Ok((
                vhosts::list(c, &filter)?,
                if admin { users::list(c)? } else { Vec::new() },
            ))
        })
        .await?;
    let rows: Vec<RowView> = rows.into_iter().map(|v| row_view(v, &owners)).collect();
    Ok(render.page(
        "Sites",
        views::vhosts::list(&render.ctx, admin, &rows, &q, &owners),
    ))
}

/// Everything the editor shows: the values as typed, the reasons, and the preview.
pub struct Editor {
    pub id: Option<i64>,
    pub template: Template,
    pub values: BTreeMap<String, String>,
    pub errors: FieldErrors,
    pub admin: bool,
    pub owners: Vec<User>,
    /// Every agent, by id and name, to choose which serve this site.
    pub agents: Vec<(i64, String)>,
    pub preview: Preview,
}

/// What the live preview says about the form as it stands.
pub enum Preview {
    /// The block, and what a real Caddy said of it (when an agent could be asked).
    Block(String, Option<CaddyCheck>),
    Invalid,
}

/// A real Caddy's opinion of the previewed site, through one agent's `/caddy/validate`.
pub struct CaddyCheck {
    pub agent: String,
    pub outcome: crate::fleet::client::Validation,
}

/// Asks the first reachable agent's Caddy whether it accepts this site (with that agent's
/// global options). None when no agent can be asked.
async fn caddy_check(state: &AppState, snapshot: &Snapshot) -> Result<Option<CaddyCheck>> {
    let agents = state.db.run(|c| crate::db::agents::list(c)).await?;
    let Some(agent) = agents
        .into_iter()
        .find(|a| a.online && a.caddy_reachable && a.caddy_admin.is_some())
    else {
        return Ok(None);
    };
    let site = Vhost {
        id: 0,
        domain: snapshot.domain.clone(),
        template: snapshot.template.clone(),
        params: String::new(),
        config: snapshot.config.clone(),
        enabled: true,
        owner_id: None,
        all_agents: true,
        agent_ids: Vec::new(),
        created_at: 0,
        updated_at: 0,
    };
    let (text, _) = site_config::for_agent(&state.config.caddy, &agent, &[site]);
    let timeout = std::time::Duration::from_secs(10);
    let outcome = crate::fleet::client::validate(&state.fleet, &agent, &text, timeout).await;
    Ok(Some(CaddyCheck {
        agent: agent.name,
        outcome,
    }))
}

/// A form turned into a vhost, or the reasons it cannot be one.
struct Checked {
    snapshot: Snapshot,
    block: String,
    template: Template,
    /// The site alone, without Gatehouse's access-log switch, and its host as Caddy's host
    /// matcher holds it: what a `user`'s site is judged on.
    judged: String,
    host: String,
}

/// The field a refusal of the tenant policy belongs beside, in this template's form.
fn field_for(template: Template, about: About) -> &'static str {
    match (template, about) {
        (Template::Raw, _) => "config",
        (Template::ReverseProxy, About::Dial) => "upstream",
        (Template::LoadBalancer, About::Dial) => "upstreams",
        (Template::PhpFastcgi, About::Dial) => "php_upstream",
        (Template::StaticFiles, About::Path) => "root",
        (Template::PhpFastcgi, About::Path) => "php_root",
        _ => "",
    }
}

/// Judges a `user`'s site by what Caddy would run (see [`crate::tenancy`]); admins are not
/// judged. Every refusal is put beside the field it is about.
async fn judge(
    state: &AppState,
    user: &User,
    checked: &Checked,
    errors: &mut FieldErrors,
) -> Result<()> {
    if user.is_admin() {
        return Ok(());
    }
    let verdict = tenancy::judge(
        &state.db,
        &state.fleet,
        &state.config,
        &checked.judged,
        &checked.host,
    )
    .await?;
    let body_field = field_for(checked.template, About::Site);
    match verdict {
        Verdict::Allowed => {}
        Verdict::Refused(refusals) => {
            let mut by_field: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
            for r in refusals {
                by_field
                    .entry(field_for(checked.template, r.about))
                    .or_default()
                    .push(r.message);
            }
            for (field, messages) in by_field {
                errors.add(field, messages.join(" "));
            }
        }
        Verdict::Invalid(error) => {
            errors.add(body_field, format!("Caddy refuses this site: {error}"))
        }
        Verdict::Unavailable(why) => errors.add("", why),
    }
    Ok(())
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

/// What only the database knows when checking a form: which agents and users exist.
struct Known {
    agents: Vec<i64>,
    users: Vec<i64>,
}

/// Validates the whole form: domain, template fields, the generated body under the author's
/// policy, the owner and the agents. Every reason is keyed by the field it belongs to.
async fn check(
    state: &AppState,
    user: &User,
    values: &BTreeMap<String, String>,
    errors: &mut FieldErrors,
) -> Result<Option<Checked>> {
    let admin = user.is_admin();
    let known = state
        .db
        .run(move |c| {
            Ok(Known {
                agents: crate::db::agents::list(c)?.iter().map(|a| a.id).collect(),
                users: if admin {
                    users::list(c)?.iter().map(|u| u.id).collect()
                } else {
                    Vec::new()
                },
            })
        })
        .await?;
    Ok(check_against(state, user, values, &known, errors))
}

/// The no-owner choice of an admin's owner field (the API's `"owner_id": null`).
pub const NO_OWNER: &str = "none";

fn check_against(
    state: &AppState,
    user: &User,
    values: &BTreeMap<String, String>,
    known: &Known,
    errors: &mut FieldErrors,
) -> Option<Checked> {
    let get = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
    let admin = user.is_admin();
    let address = errors.check("domain", SiteAddress::parse(get("domain")));
    let template = match Template::from_slug(get("template")) {
        Some(t) => Some(t),
        None => {
            errors.add("template", "Choose a template.");
            None
        }
    };
    let ctx = GenerateContext {
        admin,
        user_root_base: state.config.vhosts.user_root_base.clone(),
    };
    let generated = template.and_then(|t| match t.generate(values, &ctx) {
        Ok(text) => Some((t, text)),
        Err(reasons) => {
            for (field, why) in reasons {
                errors.add(field, why.0);
            }
            None
        }
    });
    let body = generated.as_ref().and_then(|(t, text)| {
        // Free text from a `user` meets the allowlist; template output is built from typed,
        // validated fields and is checked for structure only.
        let policy = if admin || *t != Template::Raw {
            BodyPolicy::admin()
        } else {
            BodyPolicy::restricted(&state.config.vhosts.user_directives)
        };
        match CaddyfileBody::parse(text, &policy) {
            Ok(body) => Some(body),
            Err(e) => {
                let field = if *t == Template::Raw { "config" } else { "" };
                errors.add(field, e.to_string());
                None
            }
        }
    });
    // Some(owner) when valid, where owner None is a site nobody owns (admins only).
    let owner_id = if admin {
        match get("owner_id") {
            "" => Some(Some(user.id)),
            NO_OWNER => Some(None),
            id => match id.parse::<i64>() {
                Ok(id) if known.users.contains(&id) => Some(Some(id)),
                Ok(id) => {
                    errors.add("owner_id", format!("There is no user with the id {id}."));
                    None
                }
                Err(_) => {
                    errors.add("owner_id", "Choose an owner.");
                    None
                }
            },
        }
    } else {
        Some(Some(user.id))
    };
    // Served by every agent unless the form picks some: checkboxes named agent_<id>.
    let all_agents = get("serve_on") != "chosen";
    let agent_ids: Vec<i64> = values
        .iter()
        .filter(|(_, v)| v.as_str() == "on")
        .filter_map(|(k, _)| k.strip_prefix("agent_")?.parse().ok())
        .collect();
    let unknown: Vec<String> = agent_ids
        .iter()
        .filter(|id| !known.agents.contains(id))
        .map(i64::to_string)
        .collect();
    if !all_agents && agent_ids.is_empty() {
        errors.add(
            "serve_on",
            "Choose at least one agent, or serve it on all of them.",
        );
    } else if !all_agents && !unknown.is_empty() {
        // Refused rather than ignored: a site no server serves is not what was asked for.
        errors.add(
            "serve_on",
            format!(
                "There is no agent with the id {}; choose among the agents listed.",
                unknown.join(", ")
            ),
        );
    }
    let (address, (template, _), body, owner_id) = (address?, generated?, body?, owner_id?);
    if !errors.is_empty() {
        return None;
    }
    let params: BTreeMap<&str, &str> = template
        .fields()
        .iter()
        .map(|f| (f.name, get(f.name)))
        .collect();
    let block = site_config::site_block(address.as_str(), &body);
    let judged = site_config::judged_block(address.as_str(), &body);
    Some(Checked {
        template,
        judged,
        host: address.host().to_string(),
        snapshot: Snapshot {
            domain: address.as_str().to_string(),
            template: template.slug().to_string(),
            params: serde_json::to_string(&params).unwrap_or_else(|_| "{}".into()),
            config: body.as_str().to_string(),
            enabled: values.contains_key("enabled"),
            owner_id,
            all_agents,
            agent_ids,
        },
        block,
    })
}

async fn owners_for(state: &AppState, admin: bool) -> Result<Vec<User>> {
    if !admin {
        return Ok(Vec::new());
    }
    Ok(state.db.run(|c| users::list(c)).await?)
}

/// Shows the editor for `values`, with every reason the form is refused: those found by
/// validating it again, plus `extra` (what only saving could find, like a taken domain).
async fn show_editor(
    state: &AppState,
    render: &Render,
    user: &User,
    id: Option<i64>,
    values: BTreeMap<String, String>,
    status: StatusCode,
    extra: FieldErrors,
) -> Result<Response> {
    let mut errors = FieldErrors::default();
    let preview = match check(state, user, &values, &mut errors).await? {
        Some(checked) => Preview::Block(checked.block, None),
        None => Preview::Invalid,
    };
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
    let editor = Editor {
        id,
        template: template_of(&values),
        admin: user.is_admin(),
        owners: owners_for(state, user.is_admin()).await?,
        agents,
        values,
        errors,
        preview,
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
        FieldErrors::default(),
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

/// The live preview: the exact block this form would generate, or why it cannot.
pub async fn preview(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    let values = values_of(fields);
    let mut errors = FieldErrors::default();
    let preview = match check(&state, &current.user, &values, &mut errors).await? {
        Some(checked) => {
            // The name's claim too (the edit form says which site it is; only one this
            // user may change counts), before a Caddy judges the body.
            let id = match values.get("vhost_id").and_then(|v| v.parse().ok()) {
                Some(id) => Some(owned(&state, &current.user, id).await?.id),
                None => None,
            };
            let claim = claim_of(&state, &current.user, &values);
            if !precheck(&state, &claim, id, &checked.snapshot, &mut errors).await? {
                judge(&state, &current.user, &checked, &mut errors).await?;
            }
            if errors.is_empty() {
                let caddy = caddy_check(&state, &checked.snapshot).await?;
                Preview::Block(checked.block, caddy)
            } else {
                Preview::Invalid
            }
        }
        None => Preview::Invalid,
    };
    Ok(render.page("Preview", views::vhosts::preview(&preview, &errors)))
}

/// Runs a change through the deploy pipeline for the current user.
pub(super) async fn deploy<T, F>(
    state: &AppState,
    user: &User,
    change: F,
) -> Result<Result<T, DeployError>>
where
    F: Fn(&rusqlite::Connection, &crate::db::changelog::Author<'_>) -> Result<T, ChangeError>
        + Clone
        + Send
        + Sync
        + 'static,
    T: Send + 'static,
{
    Ok(crate::fleet::deploy::deploy_detached(
        state.db.clone(),
        state.fleet.clone(),
        state.config.caddy.clone(),
        user.clone(),
        change,
    )
    .await?)
}

/// What a Caddy rejection says to the person: which server, and Caddy's own words.
pub fn rejection(agent: &str, error: &str) -> String {
    format!("Caddy on {agent} refused this configuration, so nothing was changed: {error}")
}

fn change_error(e: DeployError, errors: &mut FieldErrors) -> Result<(), AppError> {
    let e = match e {
        DeployError::Rejected { agent, error } => {
            errors.add("", rejection(&agent, &error));
            return Ok(());
        }
        DeployError::Refused(e) => e,
    };
    match e {
        ChangeError::DomainTaken => {
            errors.add("domain", "Another site already uses this domain.");
            Ok(())
        }
        ChangeError::NotFound => Err(AppError::NotFound),
        ChangeError::Refused(why) => Err(AppError::Conflict(why)),
        ChangeError::Claim(refusal) => {
            views::claims::form_errors(&refusal, errors);
            Ok(())
        }
        ChangeError::Db(e) => Err(e.into()),
    }
}

pub async fn create(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response> {
    save(&state, &current, &render, None, fields).await
}

/// Why a save did not happen.
pub(super) enum SaveError {
    /// The values break the rules, or the change was refused (a taken domain): the reasons
    /// by field.
    Invalid(FieldErrors),
    /// A Caddy refused the resulting configuration; nothing changed anywhere.
    Rejected { agent: String, error: String },
}

/// Creates (`id` None) or updates a vhost from form values, through the whole deploy
/// pipeline: the one save path of the portal and the API.
pub(super) async fn save_values(
    state: &AppState,
    user: &User,
    id: Option<i64>,
    values: &BTreeMap<String, String>,
) -> Result<Result<Vhost, SaveError>> {
    let mut errors = FieldErrors::default();
    let Some(checked) = check(state, user, values, &mut errors).await? else {
        return Ok(Err(SaveError::Invalid(errors)));
    };
    // Delegated names, ports and overlap: shown beside the domain field before anything
    // slower runs, and judged for good inside the change's transaction.
    let claim = claim_of(state, user, values);
    if precheck(state, &claim, id, &checked.snapshot, &mut errors).await? {
        return Ok(Err(SaveError::Invalid(errors)));
    }
    // Then what the site would make Caddy do, which takes a Caddy.
    judge(state, user, &checked, &mut errors).await?;
    if !errors.is_empty() {
        return Ok(Err(SaveError::Invalid(errors)));
    }
    let snapshot = checked.snapshot;
    let only = only_own(user);
    let result = deploy(state, user, move |tx, author| match id {
        Some(id) => {
            changes::ensure_owned(tx, id, only)?;
            changes::update(tx, author, id, &snapshot, &claim)
        }
        None => changes::create(tx, author, &snapshot, &claim),
    })
    .await?;
    match result {
        Ok(v) => Ok(Ok(v)),
        Err(DeployError::Rejected { agent, error }) => {
            Ok(Err(SaveError::Rejected { agent, error }))
        }
        Err(e) => {
            change_error(e, &mut errors)?;
            Ok(Err(SaveError::Invalid(errors)))
        }
    }
}

/// Whose rules a save by `user` follows for the name (see [`crate::claims`]).
fn claim_of(
    state: &AppState,
    user: &User,
    values: &BTreeMap<String, String>,
) -> crate::claims::Claim {
    let allow_overlap = values.contains_key(views::claims::ALLOW_OVERLAP);
    crate::claims::Claim::of(user, allow_overlap, &state.config.vhosts.user_ports)
}

/// Puts the reason a claim on a name would be refused beside the domain field; true when
/// it would be.
async fn precheck(
    state: &AppState,
    claim: &crate::claims::Claim,
    id: Option<i64>,
    snapshot: &Snapshot,
    errors: &mut FieldErrors,
) -> Result<bool> {
    let (claim, snapshot) = (claim.clone(), snapshot.clone());
    let refusal = state
        .db
        .run(move |c| crate::claims::precheck(c, &claim, id, &snapshot))
        .await?;
    if let Some(refusal) = &refusal {
        views::claims::form_errors(refusal, errors);
    }
    Ok(refusal.is_some())
}

/// Creates (`id` None) or updates a vhost from its form. A refusal, from the form's rules
/// or from a Caddy, shows the editor again as typed.
async fn save(
    state: &AppState,
    current: &CurrentUser,
    render: &Render,
    id: Option<i64>,
    fields: Vec<(String, String)>,
) -> Result<Response> {
    let values = values_of(fields);
    let errors = match save_values(state, &current.user, id, &values).await? {
        Ok(v) => {
            let done = if id.is_some() { "updated" } else { "created" };
            return Ok(render.redirect(&format!("/vhosts?{done}={}", v.id)));
        }
        Err(SaveError::Invalid(errors)) => errors,
        Err(SaveError::Rejected { agent, error }) => {
            let mut errors = FieldErrors::default();
            errors.add("", rejection(&agent, &error));
            errors
        }
    };
    let refused = StatusCode::UNPROCESSABLE_ENTITY;
    show_editor(state, render, &current.user, id, values, refused, errors).await
}

/// The stored form values of a vhost, to open the editor as it was saved.
pub(super) fn stored_values(v: &Vhost) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = serde_json::from_str(&v.params).unwrap_or_default();
    values.retain(|_, value| !value.is_empty());
    let display = SiteAddress::parse(&v.domain)
        .map(|a| a.display())
        .unwrap_or_else(|_| v.domain.clone());
    values.insert("domain".into(), display);
    values.insert("template".into(), v.template.clone());
    if v.enabled {
        values.insert("enabled".into(), "on".into());
    }
    let owner = v.owner_id.map_or(NO_OWNER.to_string(), |o| o.to_string());
    values.insert("owner_id".into(), owner);
    if !v.all_agents {
        values.insert("serve_on".into(), "chosen".into());
        for agent in &v.agent_ids {
            values.insert(format!("agent_{agent}"), "on".into());
        }
    }
    values
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
        stored_values(&v),
        StatusCode::OK,
        FieldErrors::default(),
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
    save(&state, &current, &render, Some(v.id), fields).await
}

/// One tap: flips the site and answers with its row as it now truly is.
pub async fn toggle(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    OwnedVhost(v): OwnedVhost,
) -> Result<Response> {
    let id = v.id;
    let result = deploy_owned(&state, &current.user, id, changes::toggle).await?;
    if !render.htmx {
        // Without htmx there is no row to show the error in: an error page says it.
        return match result {
            Ok(_) => Ok(render.redirect("/vhosts")),
            Err(DeployError::Rejected { agent, error }) => {
                Err(AppError::Conflict(rejection(&agent, &error)))
            }
            Err(DeployError::Refused(ChangeError::Db(e))) => Err(e.into()),
            Err(DeployError::Refused(_)) => Err(AppError::NotFound),
        };
    }
    let admin = current.user.is_admin();
    let owners = owners_for(&state, admin).await?;
    match result {
        Ok(now) => Ok(render.page(
            "Sites",
            views::vhosts::row(&render.ctx, &row_view(now, &owners), admin, None),
        )),
        Err(DeployError::Refused(ChangeError::NotFound)) => Err(AppError::NotFound),
        Err(e) => {
            // Show the row as it really is, with what went wrong beside it.
            let message = match e {
                DeployError::Rejected { agent, error } => rejection(&agent, &error),
                DeployError::Refused(e) => {
                    tracing::error!(error = %e, "toggle refused");
                    "Could not change this site; it is shown as it is now.".to_string()
                }
            };
            let truth = state
                .db
                .run(move |c| vhosts::find(c, id))
                .await?
                .ok_or(AppError::NotFound)?;
            Ok(render.page(
                "Sites",
                views::vhosts::row(
                    &render.ctx,
                    &row_view(truth, &owners),
                    admin,
                    Some(&message),
                ),
            ))
        }
    }
}

pub async fn delete(
    State(state): State<AppState>,
    current: CurrentUser,
    render: Render,
    OwnedVhost(v): OwnedVhost,
) -> Result<Response> {
    let id = v.id;
    match deploy_owned(&state, &current.user, id, changes::delete).await? {
        Ok(_) => {}
        Err(DeployError::Rejected { agent, error }) => {
            return Err(AppError::Conflict(rejection(&agent, &error)));
        }
        Err(DeployError::Refused(ChangeError::Db(e))) => return Err(e.into()),
        Err(DeployError::Refused(_)) => return Err(AppError::NotFound),
    }
    Ok(render.redirect("/vhosts?deleted=1"))
}

/// The whole generated Caddyfile (admin), as the agents will receive it.
pub async fn caddyfile(State(state): State<AppState>, render: Render) -> Result<Response> {
    let all = state.db.run(|c| vhosts::enabled(c)).await?;
    let (text, hash) = site_config::whole(&state.config.caddy, &all);
    Ok(render.page("Caddyfile", views::vhosts::caddyfile(&text, &hash)))
}
