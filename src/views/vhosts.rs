//! Sites: the list with its one-tap toggles, the editor with template fields, inline
//! template docs and the live preview, and the generated Caddyfile. Also the site form's
//! string encoding (a ticked box is `"on"`, agents are `agent_<id>` boxes under
//! `serve_on=chosen`, labels the `labels` text under `serve_on=labels`, nobody owns a site
//! whose `owner_id` is [`NO_OWNER`]) and its translation to and from a [`SiteDraft`].

use super::forms::{Field, form_alert};
use super::{Ctx, csrf_field};
use crate::db::quarantine::Entry;
use crate::db::users::User;
use crate::db::vhosts::Vhost;
use crate::domain::FieldErrors;
use crate::domain::vhost::{FieldKind, SiteAddress, Template};
use crate::domain::words::count;
use crate::fleet::client::Validation;
use crate::sites::{ALLOW_OVERLAP, AgentPlan, Agents, Owner, Search, SiteDraft};
use maud::{Markup, PreEscaped, html};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The list's filters, as its query string has them.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ListQuery {
    pub q: String,
    /// "", "on" or "off".
    pub status: String,
    /// Owner id as text; "" for everyone (admins only).
    pub owner: String,
    /// The site just created or saved (the notice after the form), by id.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    /// Set after a delete.
    pub deleted: String,
}

impl ListQuery {
    pub fn search(&self) -> Search {
        Search {
            text: self.q.clone(),
            enabled: match self.status.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
            owner: self.owner.parse().ok(),
        }
    }
}

/// What a row of the list shows.
pub struct RowView {
    pub vhost: Vhost,
    pub display: String,
    pub template: String,
    pub owner: Option<String>,
    /// The agents this site is set aside on, and why.
    pub quarantine: Vec<Entry>,
    /// The agents its last change has not reached yet.
    pub pending: Vec<String>,
}

impl RowView {
    /// The row of `v`; `owners` names its owner (empty for a `user`, who sees only theirs).
    pub fn of(v: Vhost, owners: &[User]) -> Self {
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
            quarantine: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// The row, with where its site is set aside among `all`.
    pub fn set_aside(mut self, all: &[Entry]) -> Self {
        self.quarantine = all
            .iter()
            .filter(|e| e.vhost_id == self.vhost.id)
            .cloned()
            .collect();
        self
    }
}

/// Where a site is set aside because an agent's Caddy refuses it, each with Caddy's message
/// (its line named within the site's body).
pub fn quarantine_notes(entries: &[Entry]) -> Markup {
    html! {
        @for e in entries {
            p .quarantine role="status" data-agent=(e.agent) data-line=[e.body_line] {
                span .badge .warn { "Set aside on " (e.agent) } " "
                span .quarantine-error { "Caddy refuses it: " (e.error) }
            }
        }
    }
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
    /// The agents this site is set aside on, and why.
    pub quarantine: Vec<Entry>,
    /// The agents the site's last change has not reached yet.
    pub pending: Vec<String>,
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
    pub outcome: Validation,
}

/// The no-owner choice of an admin's owner field (the API's `"owner_id": null`).
pub const NO_OWNER: &str = "none";

/// The site the form's values ask for, and what the form encoding itself cannot say (an
/// admin's owner that is no user id). A `user`'s owner field counts for nothing.
pub fn draft_of(values: &BTreeMap<String, String>, admin: bool) -> (SiteDraft, FieldErrors) {
    let mut errors = FieldErrors::default();
    let get = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
    let owner = match get("owner_id") {
        _ if !admin => Owner::Me,
        "" => Owner::Me,
        NO_OWNER => Owner::Nobody,
        id => id.parse().map(Owner::User).unwrap_or_else(|_| {
            errors.add("owner_id", "Choose an owner.");
            Owner::Me
        }),
    };
    // Served by every agent unless the form picks some (checkboxes named agent_<id>) or
    // names labels.
    let agents = match get("serve_on") {
        "chosen" => Agents::Only(
            values
                .iter()
                .filter(|(_, v)| v.as_str() == "on")
                .filter_map(|(k, _)| k.strip_prefix("agent_")?.parse().ok())
                .collect(),
        ),
        "labels" => Agents::Labels(get("labels").to_string()),
        _ => Agents::All,
    };
    let draft = SiteDraft {
        address: get("domain").to_string(),
        template: get("template").to_string(),
        fields: values
            .iter()
            .filter(|(k, _)| crate::sites::is_template_field(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        enabled: values.contains_key("enabled"),
        owner,
        agents,
        allow_overlap: values.contains_key(ALLOW_OVERLAP),
    };
    (draft, errors)
}

/// A draft in the form's encoding, to open the editor on it.
pub fn form_values(draft: &SiteDraft) -> BTreeMap<String, String> {
    let mut values = draft.fields.clone();
    values.insert("domain".into(), draft.address.clone());
    values.insert("template".into(), draft.template.clone());
    if draft.enabled {
        values.insert("enabled".into(), "on".into());
    }
    let owner = match draft.owner {
        Owner::User(id) => id.to_string(),
        Owner::Nobody => NO_OWNER.to_string(),
        Owner::Me => String::new(),
    };
    values.insert("owner_id".into(), owner);
    match &draft.agents {
        Agents::Only(ids) => {
            values.insert("serve_on".into(), "chosen".into());
            for agent in ids {
                values.insert(format!("agent_{agent}"), "on".into());
            }
        }
        Agents::Labels(labels) => {
            values.insert("serve_on".into(), "labels".into());
            values.insert("labels".into(), labels.clone());
        }
        Agents::All => {}
    }
    if draft.allow_overlap {
        values.insert(ALLOW_OVERLAP.into(), "on".into());
    }
    values
}

/// What the list says after the change that led to it: the site's name when it is on the page
/// (only ids travel in the address, never text to echo).
fn done_notice(rows: &[RowView], q: &ListQuery) -> Option<String> {
    let name = |id: i64| {
        rows.iter()
            .find(|r| r.vhost.id == id)
            .map(|r| r.display.clone())
    };
    match (q.created, q.updated, q.deleted.is_empty()) {
        (Some(id), _, _) => Some(match name(id) {
            Some(n) => format!("Created {n}. It is being sent to its agents."),
            None => "The site was created.".into(),
        }),
        (None, Some(id), _) => Some(match name(id) {
            Some(n) => format!("Saved {n}."),
            None => "The site was saved.".into(),
        }),
        (None, None, false) => Some("The site was deleted.".into()),
        _ => None,
    }
}

pub fn list(ctx: &Ctx, admin: bool, rows: &[RowView], q: &ListQuery, owners: &[User]) -> Markup {
    html! {
        section .card #vhosts {
            div .card-head {
                h1 { "Sites" }
                a .button .primary #new-site href="/vhosts/new" { "New site" }
            }
            @if let Some(notice) = done_notice(rows, q) {
                p .notice .ok #notice role="status" { (notice) }
            }
            form .filters #vhost-filters method="get" action="/vhosts" hx-get="/vhosts" hx-target="#vhost-rows"
                hx-select="#vhost-rows" hx-swap="outerHTML" hx-push-url="true"
                hx-trigger="input changed delay:250ms from:#vhost-search, search from:#vhost-search, change" {
                div .field {
                    label for="vhost-search" { "Search" }
                    input #vhost-search type="search" name="q" value=(q.q) placeholder="example.com" autocomplete="off";
                }
                div .field {
                    label for="vhost-status" { "Status" }
                    select #vhost-status name="status" {
                        option value="" selected[q.status.is_empty()] { "All" }
                        option value="on" selected[q.status == "on"] { "Enabled" }
                        option value="off" selected[q.status == "off"] { "Disabled" }
                    }
                }
                @if admin {
                    div .field {
                        label for="vhost-owner" { "Owner" }
                        select #vhost-owner name="owner" {
                            option value="" { "Everyone" }
                            @for u in owners {
                                option value=(u.id) selected[q.owner == u.id.to_string()] { (u.email) }
                            }
                        }
                    }
                }
                noscript { button .button type="submit" { "Filter" } }
            }
            div #vhost-rows .vhost-list {
                @for r in rows { (row(ctx, r, admin, None)) }
                @if rows.is_empty() {
                    p .muted #no-sites { "No sites match. " a href="/vhosts/new" { "Add one" } "." }
                }
            }
        }
    }
}

/// One site in the list. The toggle swaps only this row; while it works the switch is
/// disabled and a spinner shows.
pub fn row(ctx: &Ctx, r: &RowView, admin: bool, error: Option<&str>) -> Markup {
    let v = &r.vhost;
    let id = format!("vhost-{}", v.id);
    let toggle = format!("/vhosts/{}/toggle", v.id);
    html! {
        article .vhost-row .disabled[!v.enabled] #(id) data-domain=(v.domain) data-enabled=(v.enabled) {
            div .vhost-main {
                a .vhost-domain href=(format!("/vhosts/{}/edit", v.id)) { (r.display) }
                div .vhost-meta .muted {
                    span .vhost-template { (r.template) }
                    @if admin { @if let Some(owner) = &r.owner { " · " span .vhost-owner { (owner) } } }
                    " · " a .vhost-logs href=(format!("/logs?{}", serde_urlencoded::to_string([("vhost", &v.domain)]).unwrap_or_default())) { "Logs" }
                    " · " a .vhost-changes href=(format!("/changelog?domain={}", v.domain)) { "History" }
                }
                (quarantine_notes(&r.quarantine))
                @if !r.pending.is_empty() { p .vhost-pending { (super::history::pending_note(&r.pending)) } }
                @if let Some(error) = error { p .row-error role="alert" { (error) } }
            }
            form .toggle method="post" action=(toggle) hx-post=(toggle) hx-target=(format!("#{id}"))
                hx-swap="outerHTML" hx-disabled-elt="find button" {
                (csrf_field(ctx))
                button .switch type="submit" role="switch" aria-checked=(v.enabled)
                    aria-label=(format!("{} {}", if v.enabled { "Disable" } else { "Enable" }, r.display)) {
                    span .switch-track { span .switch-knob {} }
                    span .switch-label { @if v.enabled { "On" } @else { "Off" } }
                    span .spinner .htmx-indicator aria-hidden="true" {}
                }
            }
        }
    }
}

fn value<'a>(values: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    values.get(name).map(String::as_str).unwrap_or("")
}

pub fn editor(ctx: &Ctx, e: &Editor) -> Markup {
    let action = match e.id {
        Some(id) => format!("/vhosts/{id}"),
        None => "/vhosts".to_string(),
    };
    html! {
        div #vhost-editor .editor {
            section .card .editor-form {
                h1 { @if e.id.is_some() { "Edit site" } @else { "New site" } }
                @if !e.quarantine.is_empty() {
                    div .notice .warn #quarantine {
                        p { "A Caddy refuses this site, so the agents below serve everything else without it. "
                            "Fix it and save: Caddy checks the save, and the site is tried on every agent again." }
                        (quarantine_notes(&e.quarantine))
                    }
                }
                @if !e.pending.is_empty() {
                    p .notice .warn #vhost-pending { "Its last change is " (super::history::pending_note(&e.pending)) "." }
                }
                (form_alert(&e.errors))
                form #vhost-form method="post" action=(action) hx-post=(action) hx-target="#vhost-editor" hx-swap="outerHTML" {
                    (csrf_field(ctx))
                    // Tells the live preview which site this is, to judge a rename (the save
                    // takes the id from its URL).
                    @if let Some(id) = e.id { input type="hidden" name="vhost_id" value=(id); }
                    (Field::new("domain", "Domain").value(value(&e.values, "domain"))
                        .hint("example.com, *.example.com, http://app.localhost:8080 — one address per site").render(&e.errors))
                    (super::claims::overlap_override(e.admin, &e.values, &e.errors))
                    div .field .has-error[e.errors.get("template").is_some()] {
                        label for="template" { "Template" }
                        select #template name="template" hx-get="/vhosts/fields" hx-target="#template-fields"
                            hx-swap="outerHTML" hx-include="#vhost-form" hx-trigger="change" {
                            @for t in Template::ALL {
                                option value=(t.slug()) selected[t == e.template] { (t.label()) }
                            }
                        }
                        @if let Some(why) = e.errors.get("template") { p .field-error #template-error { (why) } }
                    }
                    (template_fields(e.template, &e.values, &e.errors, e.admin))
                    @if e.admin {
                        @let owner_error = e.errors.get("owner_id");
                        div .field .has-error[owner_error.is_some()] {
                            label for="owner_id" { "Owner" }
                            select #owner_id name="owner_id" aria-invalid=[owner_error.map(|_| "true")] {
                                @for u in &e.owners {
                                    option value=(u.id) selected[value(&e.values, "owner_id") == u.id.to_string()] { (u.email) " (" (u.role) ")" }
                                }
                                option value=(NO_OWNER) selected[value(&e.values, "owner_id") == NO_OWNER] { "Nobody (admins only)" }
                            }
                            @if let Some(why) = owner_error { p .field-error #owner_id-error role="alert" { (why) } }
                        }
                    }
                    @if !e.agents.is_empty() || e.errors.get("serve_on").is_some() || e.errors.get("labels").is_some() {
                        @let serve_on = value(&e.values, "serve_on");
                        @let (chosen, by_label) = (serve_on == "chosen", serve_on == "labels");
                        @let labels_error = e.errors.get("labels");
                        fieldset .field .serve-on .has-error[e.errors.get("serve_on").is_some() || labels_error.is_some()] {
                            legend { "Served by" }
                            label .check-line { input type="radio" name="serve_on" value="all" checked[!chosen && !by_label]; " All agents" }
                            label .check-line { input type="radio" name="serve_on" value="chosen" checked[chosen]; " Only these:" }
                            div .agent-choices {
                                @for (id, name) in &e.agents {
                                    @let key = format!("agent_{id}");
                                    label .check-line { input type="checkbox" name=(key) value="on" checked[value(&e.values, &key) == "on"]; " " (name) }
                                }
                            }
                            label .check-line { input type="radio" name="serve_on" value="labels" checked[by_label]; " The agents labelled:" }
                            input #labels type="text" name="labels" value=(value(&e.values, "labels")) placeholder="eu canary"
                                aria-label="Labels" aria-invalid=[labels_error.map(|_| "true")];
                            @if let Some(why) = e.errors.get("serve_on") { p .field-error #serve_on-error { (why) } }
                            @if let Some(why) = labels_error { p .field-error #labels-error role="alert" { (why) } }
                        }
                    }
                    div .field .check {
                        label {
                            input type="checkbox" name="enabled" value="on" checked[e.values.contains_key("enabled")];
                            " Serve this site (enabled)"
                        }
                    }
                    div .form-actions {
                        button .button .primary type="submit" { @if e.id.is_some() { "Save changes" } @else { "Create site" } }
                        a .button href="/vhosts" { "Cancel" }
                    }
                }
                @if let Some(id) = e.id {
                    form .danger-zone method="post" action=(format!("/vhosts/{id}/delete")) hx-post=(format!("/vhosts/{id}/delete"))
                        hx-confirm=(format!("Delete {} for good? Caddy stops serving it.", value(&e.values, "domain"))) {
                        (csrf_field(ctx))
                        button .button .danger type="submit" { "Delete site" }
                    }
                }
            }
            // Admins only: a plan shows every site's lines around the change on each agent.
            @if e.admin {
            section .card .editor-plan {
                h2 { "What changes on each agent" }
                p .hint { "Every check a save makes, then each agent's Caddyfile before and after. Nothing is saved or sent." }
                button .button #plan-button type="button" hx-post="/vhosts/plan" hx-include="#vhost-form"
                    hx-target="#plan" hx-swap="innerHTML" { "Show the changes" }
                div #plan aria-live="polite" {}
            }
            }
            section .card .editor-preview {
                h2 { "Preview" }
                p .hint { "The exact block this site adds to the Caddyfile. It updates as you type." }
                div #preview hx-post="/vhosts/preview" hx-include="#vhost-form" hx-swap="innerHTML"
                    hx-trigger="input from:#vhost-form delay:300ms, change from:#vhost-form delay:50ms" {
                    (preview(&e.preview, &e.errors))
                }
            }
        }
    }
}

/// The fields of one template, and its documentation as inline help.
pub fn template_fields(
    t: Template,
    values: &BTreeMap<String, String>,
    errors: &FieldErrors,
    _admin: bool,
) -> Markup {
    html! {
        div #template-fields data-template=(t.slug()) {
            p .hint .template-summary { (t.summary()) }
            @for f in t.fields() {
                @let error = errors.get(f.name);
                @let v = value(values, f.name);
                div .field .has-error[error.is_some()] .check[matches!(f.kind, FieldKind::Checkbox)] {
                    @match f.kind {
                        FieldKind::Checkbox => {
                            label {
                                input type="checkbox" id=(f.name) name=(f.name) value="on" checked[v == "on"];
                                " " (f.label)
                            }
                        }
                        FieldKind::Text => {
                            label for=(f.name) { (f.label) }
                            input type="text" id=(f.name) name=(f.name) value=(v) required[f.required] autocomplete="off"
                                aria-invalid=[error.map(|_| "true")];
                        }
                        FieldKind::Textarea => {
                            label for=(f.name) { (f.label) }
                            textarea .mono id=(f.name) name=(f.name) rows="8" required[f.required] spellcheck="false"
                                aria-invalid=[error.map(|_| "true")] { (v) }
                        }
                        FieldKind::Select(options) => {
                            label for=(f.name) { (f.label) }
                            select id=(f.name) name=(f.name) {
                                @for (value, label) in options.iter() {
                                    option value=(value) selected[v == *value] { (label) }
                                }
                            }
                        }
                    }
                    @if !f.hint.is_empty() { p .hint { (f.hint) } }
                    @if let Some(why) = error { p .field-error id=(format!("{}-error", f.name)) role="alert" { (why) } }
                }
            }
            details .template-doc open[t == Template::Raw] {
                summary { "How the " (t.label()) " template works" }
                div .doc { (doc_html(t)) }
            }
        }
    }
}

/// The template's Markdown page, embedded at compile time and rendered once.
fn doc_html(t: Template) -> PreEscaped<&'static str> {
    static DOCS: OnceLock<Vec<(Template, String)>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        Template::ALL
            .iter()
            .map(|t| {
                let mut html = String::new();
                let parser = pulldown_cmark::Parser::new(t.doc())
                    // Our own docs, but raw HTML in them would still bypass escaping: drop it.
                    .filter(|e| {
                        !matches!(
                            e,
                            pulldown_cmark::Event::Html(_) | pulldown_cmark::Event::InlineHtml(_)
                        )
                    });
                pulldown_cmark::html::push_html(&mut html, parser);
                (*t, html)
            })
            .collect()
    });
    let html = docs
        .iter()
        .find(|(d, _)| *d == t)
        .map_or("", |(_, h)| h.as_str());
    PreEscaped(html)
}

/// What the form calls field `name`: its label, as people see it beside the input.
fn field_label(name: &str) -> &str {
    match name {
        "domain" => "Domain",
        "template" => "Template",
        "owner" => "Owner",
        "serve_on" => "Served by",
        _ => Template::ALL
            .iter()
            .flat_map(|t| t.fields())
            .find(|f| f.name == name)
            .map_or(name, |f| f.label),
    }
}

pub fn preview(p: &Preview, errors: &FieldErrors) -> Markup {
    html! {
        @match p {
            Preview::Block(block, caddy) => {
                @match caddy {
                    Some(CaddyCheck { agent, outcome: Validation::Valid { warnings } }) => {
                        p .notice .ok #preview-status { "Caddy accepts this (checked on " (agent) ")." }
                        @for w in warnings { p .notice .warn .caddy-warning { "Caddy warns: " (w) } }
                    }
                    Some(CaddyCheck { agent, outcome: Validation::Invalid { error } }) => {
                        p .notice .error #preview-status { "Caddy on " (agent) " refuses this:" }
                        pre .caddy-error #caddy-error { (error) }
                    }
                    Some(CaddyCheck { agent, outcome: Validation::Unavailable { error } }) => {
                        p .notice .warn #preview-status { "Valid here; Caddy on " (agent) " could not be asked: " (error) }
                    }
                    None => { p .notice .ok #preview-status { "Valid: this is what Caddy will get." } }
                }
                pre .caddyfile #preview-block { code { (block) } }
            }
            Preview::Invalid if errors.is_empty() => {
                p .notice #preview-status { "Fill in the form: the block Caddy will get shows here." }
            }
            Preview::Invalid => {
                p .notice .warn #preview-status { "Not valid yet:" }
                ul #preview-errors {
                    @for (field, why) in errors.iter() {
                        li data-field=(field) { @if !field.is_empty() { strong { (field_label(field)) } ": " } (why) }
                    }
                }
            }
        }
    }
}

/// What a save would change on each agent (see [`crate::fleet::deploy::plan`]), or why it
/// would be refused.
pub fn plan(planned: &Result<Vec<AgentPlan>, FieldErrors>) -> Markup {
    html! {
        @match planned {
            Ok(agents) if agents.is_empty() => {
                p .notice .warn #plan-status { "There are no agents yet: saving changes no Caddy." }
            }
            Ok(agents) => { (agent_plans(agents)) }
            Err(errors) => {
                p .notice .warn #plan-status { "Saving would be refused:" }
                ul #plan-errors {
                    @for (field, why) in errors.iter() {
                        li data-field=(field) { @if !field.is_empty() { strong { (field) } ": " } (why) }
                    }
                }
            }
        }
    }
}

/// Each agent's Caddyfile diff (or that it does not change), with the hash it will run.
pub fn agent_plans(agents: &[AgentPlan]) -> Markup {
    html! {
        p .notice .ok #plan-status {
            (agents.iter().filter(|a| a.changed()).count()) " of " (count(agents.len(), "agent changes.", "agents change."))
        }
        @for a in agents {
            div .agent-plan data-agent=(a.agent) data-after-hash=(a.after_hash) {
                h3 { (a.agent) }
                @if a.changed() {
                    (plan_diff(&a.before, &a.after))
                } @else {
                    p .muted .no-change { "No change on this agent." }
                }
            }
        }
    }
}

/// The changed lines of a Caddyfile with three lines around each change, as `diff -u` does.
fn plan_diff(before: &str, after: &str) -> Markup {
    use similar::{ChangeTag, TextDiff};
    let diff = TextDiff::from_lines(before, after);
    html! {
        pre .diff {
            @for (i, group) in diff.grouped_ops(3).iter().enumerate() {
                @if i > 0 { span .gap { "…\n" } }
                @for op in group {
                    @for change in diff.iter_changes(op) {
                        @let (class, sign) = match change.tag() {
                            ChangeTag::Delete => ("del", "-"),
                            ChangeTag::Insert => ("add", "+"),
                            ChangeTag::Equal => ("same", " "),
                        };
                        span class=(class) { (sign) " " (change.value().trim_end_matches('\n')) "\n" }
                    }
                }
            }
        }
    }
}

/// One agent's Caddyfile as the deploy renders it, and whether the agent reports running it.
pub struct AgentCaddyfile {
    pub id: i64,
    pub name: String,
    pub text: String,
    pub hash: String,
    /// The hash the agent last reported applying.
    pub running: Option<String>,
}

/// Each agent's Caddyfile (its own admin address and access log, the sites it serves, none
/// it has set aside), with the hash it reports once it runs it. With no agent yet: what
/// the configured defaults give (`defaults`).
pub fn caddyfile(agents: &[AgentCaddyfile], defaults: &(String, String)) -> Markup {
    html! {
        section .card #caddyfile {
            h1 { "Generated Caddyfiles" }
            @if agents.is_empty() {
                p .notice .warn #no-agents {
                    "No agent yet: this is what one would be sent with the configured defaults. "
                    a href="/agents" { "Add an agent" }
                }
                p .hint { "Hash " code #caddyfile-hash { (defaults.1) } }
                pre .caddyfile { code { (defaults.0) } }
            } @else {
                p .hint { "What each agent's Caddy is sent: its own admin address and access log, the sites it serves. The hash is the one the agent reports once it runs it." }
                @for a in agents {
                    @let in_step = a.running.as_deref() == Some(a.hash.as_str());
                    details .agent-caddyfile id=(format!("caddyfile-{}", a.id)) data-agent=(a.name) data-hash=(a.hash) open[agents.len() == 1] {
                        summary {
                            strong { (a.name) } " "
                            @if in_step {
                                span .badge .ok .in-step { "running it" }
                            } @else {
                                span .badge .warn .not-in-step { "not running it yet" }
                            }
                            " " code .hash { (a.hash) }
                        }
                        p .actions {
                            a .button .small href=(format!("/agents/{}/caddyfile", a.id)) download { "Download" }
                        }
                        pre .caddyfile { code { (a.text) } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod form_tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_forms_strings_become_a_draft_and_back() {
        let form = values(&[
            ("domain", "a.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "localhost:8080"),
            ("enabled", "on"),
            ("owner_id", NO_OWNER),
            ("serve_on", "chosen"),
            ("agent_3", "on"),
            ("allow_overlap", "on"),
            ("vhost_id", "9"),
        ]);
        let (draft, errors) = draft_of(&form, true);
        assert!(errors.is_empty());
        assert_eq!(draft.owner, Owner::Nobody);
        assert_eq!(draft.agents, Agents::Only(vec![3]));
        assert!(draft.enabled && draft.allow_overlap);
        assert_eq!(draft.fields, values(&[("upstream", "localhost:8080")]));
        let mut back = form.clone();
        back.remove("vhost_id");
        assert_eq!(form_values(&draft), back);
    }

    #[test]
    fn an_admins_unreadable_owner_is_refused_and_a_users_owner_ignored() {
        let form = values(&[("owner_id", "x"), ("serve_on", "all"), ("agent_3", "on")]);
        let (draft, errors) = draft_of(&form, true);
        assert_eq!(errors.get("owner_id"), Some("Choose an owner."));
        assert_eq!(draft.agents, Agents::All);
        assert!(!draft.enabled, "an unticked box is absent");
        let (draft, errors) = draft_of(&form, false);
        assert!(errors.is_empty());
        assert_eq!(draft.owner, Owner::Me);
    }

    #[test]
    fn labels_are_read_as_typed_under_serve_on_labels_and_shown_back() {
        let form = values(&[
            ("domain", "a.example.com"),
            ("template", "raw"),
            ("owner_id", ""),
            ("serve_on", "labels"),
            ("labels", "eu, Canary"),
            ("agent_3", "on"),
        ]);
        let (draft, _) = draft_of(&form, true);
        assert_eq!(draft.agents, Agents::Labels("eu, Canary".into()));
        let back = form_values(&draft);
        assert_eq!(
            (back["serve_on"].as_str(), back["labels"].as_str()),
            ("labels", "eu, Canary")
        );
        assert!(!back.contains_key("agent_3"), "only the chosen way counts");
    }
}
