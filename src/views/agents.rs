//! The agents page: each agent's state with test and sync buttons, "sync all" with live
//! per-agent progress, each one's labels, and the form to add one (with how to trust it
//! over https).

use super::forms::Field;
use super::{Ctx, csrf_field, timestamp};
use crate::db::agents::Agent;
use crate::domain::FieldErrors;
use crate::domain::tls::is_https;
use crate::fleet::tls::Trust;
use maud::{Markup, html};
use serde::Deserialize;

/// How an agent stands against the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    NeverSeen,
    Offline,
    CaddyDown,
    InSync,
    Drifted,
    /// Its Caddy runs a config loaded outside Gatehouse (straight into Caddy's admin API),
    /// until the reconciler or "Sync now" puts the database's back.
    ChangedOutside,
}

impl AgentState {
    pub fn label(self) -> &'static str {
        match self {
            AgentState::NeverSeen => "not contacted yet",
            AgentState::Offline => "offline",
            AgentState::CaddyDown => "Caddy unreachable",
            AgentState::InSync => "in sync",
            AgentState::Drifted => "drifted",
            AgentState::ChangedOutside => "changed outside Gatehouse",
        }
    }
    pub fn class(self) -> &'static str {
        match self {
            AgentState::InSync => "ok",
            AgentState::Drifted | AgentState::NeverSeen => "warn",
            AgentState::Offline | AgentState::CaddyDown | AgentState::ChangedOutside => "danger",
        }
    }
}

/// An agent with its state, for the page and the dashboard.
pub struct AgentView {
    pub agent: Agent,
    pub state: AgentState,
}

/// An agent's labels form: the labels as typed.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct LabelsForm {
    pub labels: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct AgentForm {
    pub name: String,
    pub url: String,
    pub token: String,
    /// CA certificate(s), PEM; empty for the public web PKI.
    pub tls_ca: String,
    /// SHA-256 of the agent's certificate; empty for none.
    pub tls_pin: String,
}

impl AgentForm {
    /// The form as it is shown again after a refusal: as typed, except secrets. The token is
    /// left out, and so is a password typed into the URL (the rest of the URL stays, with
    /// `***` where the user name and password were, so the reason next to it makes sense).
    pub(crate) fn kept(self) -> Self {
        Self {
            token: String::new(),
            url: crate::domain::agent_url::redact(&self.url),
            ..self
        }
    }
}

pub fn page(ctx: &Ctx, list: &[AgentView], form: &AgentForm, errors: &FieldErrors) -> Markup {
    html! {
        div .stack #agents {
            section .card {
                div .card-head {
                    h1 { "Agents" }
                    @if !list.is_empty() {
                        form method="post" action="/agents/sync-all" hx-post="/agents/sync-all" hx-target="#agent-rows" hx-swap="outerHTML" {
                            (csrf_field(ctx))
                            button .button #sync-all type="submit" { "Sync all agents" }
                        }
                    }
                }
                p .hint { "An agent runs beside each Caddy server. Every site is served by all agents unless its form picks some, or names labels the agents carry." }
                p .actions #import-export {
                    a .button .small #import-link href="/import" { "Import a Caddyfile" }
                    a .button .small #export-json href="/export.json" download { "Export JSON (no secrets)" }
                    a .button .small #caddyfiles-link href="/caddyfile" { "Each agent's Caddyfile" }
                }
                (rows(ctx, list))
            }
            section .card #new-agent {
                h2 { "Add an agent" }
                form method="post" action="/agents" hx-post="/agents" hx-target="#agents" hx-swap="outerHTML" {
                    (csrf_field(ctx))
                    (Field::new("name", "Name").value(&form.name).hint("e.g. edge-1").render(errors))
                    (Field::new("url", "URL").value(&form.url).hint("The agent's address, e.g. http://10.0.0.5:7070").render(errors))
                    (Field::new("token", "Token").kind("password").autocomplete("off")
                        .hint("The agent's bearer token: the token in the agent's own settings. It is never shown again.").render(errors))
                    (tls_fields(form, errors))
                    button .button .primary type="submit" { "Add agent" }
                }
            }
        }
    }
}

fn rows(ctx: &Ctx, list: &[AgentView]) -> Markup {
    html! {
        div #agent-rows .agent-list {
            @for v in list { (row(ctx, v, None)) }
            @if list.is_empty() { p .muted #no-agents { "No agents yet." } }
        }
    }
}

/// One agent, with the outcome of the last action on it (Ok: what happened; Err: why not).
pub fn row(ctx: &Ctx, v: &AgentView, outcome: Option<Result<String, String>>) -> Markup {
    row_with_labels(ctx, v, outcome, None)
}

/// Labels as typed into an agent's labels field, and why they were refused.
pub struct LabelsInput<'a> {
    pub typed: &'a str,
    pub error: &'a str,
}

/// [`row`], its labels field showing `refused` (the input kept, the reason beside it).
pub fn row_with_labels(
    ctx: &Ctx,
    v: &AgentView,
    outcome: Option<Result<String, String>>,
    refused: Option<LabelsInput<'_>>,
) -> Markup {
    let a = &v.agent;
    let id = format!("agent-{}", a.id);
    let labels_id = format!("labels-{}", a.id);
    let labels_action = format!("/agents/{}/labels", a.id);
    let typed = refused.as_ref().map_or_else(
        || crate::domain::labels::join(&a.labels),
        |r| r.typed.to_string(),
    );
    html! {
        article .agent-row #(id) data-agent=(a.name) data-state=(v.state.label()) {
            div .agent-main {
                a .agent-name href=(format!("/agents/{}", a.id)) { strong { (a.name) } }
                " " span .badge .(v.state.class()) .agent-state { (v.state.label()) }
                @if a.from_config { " " span .badge { "from config" } }
                @if is_https(&a.url) {
                    @let trust = Trust::of(a).map_or("invalid", |t| t.label());
                    " " span .badge .agent-tls data-tls=(trust) title="How the hub checks this agent's certificate" { "TLS · " (trust) }
                }
                div .muted .agent-meta {
                    span .mono .agent-url { (crate::domain::agent_url::redact(&a.url)) }
                    " · Caddy " (a.caddy_version.as_deref().unwrap_or("?"))
                    " · last seen " (a.last_seen_at.map_or("never".to_string(), timestamp))
                }
                @if !a.labels.is_empty() {
                    div .agent-labels {
                        @for label in &a.labels { span .badge .agent-label data-label=(label) { (label) } " " }
                    }
                }
                @if let Some(error) = &a.last_error {
                    @if v.state != AgentState::InSync { p .row-error .agent-error { (error) } }
                }
                form .inline .agent-labels-form method="post" action=(labels_action) hx-post=(labels_action)
                    hx-target=(format!("#{id}")) hx-swap="outerHTML" {
                    (csrf_field(ctx))
                    div .field .has-error[refused.is_some()] {
                        label for=(labels_id) { "Labels" }
                        input id=(labels_id) type="text" name="labels" value=(typed) placeholder="canary eu"
                            aria-invalid=[refused.as_ref().map(|_| "true")];
                        @if let Some(r) = &refused { p .field-error .labels-error role="alert" { (r.error) } }
                    }
                    button .button .small type="submit" { "Save labels" }
                }
                @match &outcome {
                    Some(Ok(message)) => { p .notice .ok .agent-outcome role="status" { (message) } }
                    Some(Err(message)) => { p .notice .error .agent-outcome role="alert" { (message) } }
                    None => {}
                }
            }
            div .actions {
                @let target = format!("#{id}");
                form .inline method="post" action=(format!("/agents/{}/test", a.id)) hx-post=(format!("/agents/{}/test", a.id))
                    hx-target=(target) hx-swap="outerHTML" hx-disabled-elt="find button" {
                    (csrf_field(ctx))
                    button .button .small type="submit" { "Test connection" }
                }
                form .inline method="post" action=(format!("/agents/{}/sync", a.id)) hx-post=(format!("/agents/{}/sync", a.id))
                    hx-target=(target) hx-swap="outerHTML" hx-disabled-elt="find button" {
                    (csrf_field(ctx))
                    button .button .small .sync type="submit" { "Sync now" span .spinner .htmx-indicator {} }
                }
                a .button .small .agent-caddyfile href=(format!("/agents/{}/caddyfile", a.id)) download { "Download Caddyfile" }
                @if !a.from_config {
                    a .button .small href=(format!("/agents/{}/edit", a.id)) { "Edit" }
                    form .inline method="post" action=(format!("/agents/{}/delete", a.id)) hx-post=(format!("/agents/{}/delete", a.id))
                        hx-confirm=(format!("Remove agent {}? Its Caddy keeps running its last configuration.", a.name)) {
                        (csrf_field(ctx))
                        button .button .small .danger type="submit" { "Remove" }
                    }
                }
            }
        }
    }
}

/// Rows that each sync themselves as soon as they appear: live progress, one per agent.
pub fn syncing(ctx: &Ctx, list: &[AgentView]) -> Markup {
    html! {
        div #agent-rows .agent-list {
            @for v in list {
                article .agent-row .syncing #(format!("agent-{}", v.agent.id)) data-agent=(v.agent.name)
                    hx-post=(format!("/agents/{}/sync", v.agent.id)) hx-trigger="load" hx-swap="outerHTML"
                    hx-headers=(format!(r#"{{"X-CSRF-Token":"{}"}}"#, ctx.csrf)) {
                    div .agent-main {
                        strong .agent-name { (v.agent.name) }
                        " " span .badge .agent-state { "syncing…" } " " span .spinner {}
                    }
                }
            }
        }
    }
}

pub fn edit(ctx: &Ctx, id: i64, form: &AgentForm, errors: &FieldErrors) -> Markup {
    let action = format!("/agents/{id}");
    html! {
        section .card .narrow #edit-agent {
            h1 { "Edit agent" }
            form method="post" action=(action) hx-post=(action) hx-target="#edit-agent" hx-swap="outerHTML" {
                (csrf_field(ctx))
                (Field::new("name", "Name").value(&form.name).render(errors))
                (Field::new("url", "URL").value(&form.url).render(errors))
                (Field::new("token", "New token").kind("password").autocomplete("off").optional()
                    .hint("Leave empty to keep the current token.").render(errors))
                (tls_fields(form, errors))
                div .form-actions {
                    button .button .primary type="submit" { "Save" }
                    a .button href="/agents" { "Cancel" }
                }
            }
        }
    }
}

/// How the hub trusts an https agent: a pasted CA certificate or a pinned fingerprint, both
/// optional (neither: the public web PKI). Shown again as typed when refused.
fn tls_fields(form: &AgentForm, errors: &FieldErrors) -> Markup {
    let ca_error = errors.get("tls_ca");
    let described = if ca_error.is_some() {
        "tls_ca-error"
    } else {
        "tls_ca-hint"
    };
    html! {
        fieldset .tls-fields {
            legend { "TLS (https:// agents only)" }
            p .hint { "Leave both empty if the agent's certificate comes from a public CA." }
            div .field .has-error[ca_error.is_some()] {
                label for="tls_ca" { "CA certificate (PEM)" }
                textarea .mono #tls_ca name="tls_ca" rows="6" spellcheck="false" autocomplete="off"
                    placeholder="-----BEGIN CERTIFICATE-----"
                    aria-invalid=[ca_error.map(|_| "true")] aria-describedby=(described) { (form.tls_ca) }
                p .hint id="tls_ca-hint" { "Only certificates signed by this CA are accepted, for the host name in the URL. A self-signed certificate can be its own CA." }
                @if let Some(why) = ca_error { p .field-error id="tls_ca-error" role="alert" { (why) } }
            }
            (Field::new("tls_pin", "Certificate fingerprint (SHA-256)").value(&form.tls_pin).optional()
                .hint("Accept only the certificate with this fingerprint, whoever signed it: openssl x509 -noout -fingerprint -sha256 -in cert.pem")
                .render(errors))
        }
    }
}
