//! The import page: paste a Caddyfile, see what it would create, update or skip and every
//! line that is not imported, then confirm.

use super::forms::form_alert;
use super::{Ctx, csrf_field};
use crate::domain::FieldErrors;
use crate::sites::AgentPlan;
use crate::sites::import::{Action, Applied, NoteKind, Plan};
use maud::{Markup, html};
use serde::Deserialize;

/// The import form as posted.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ImportFields {
    pub caddyfile: String,
    pub agent: String,
    pub fingerprint: String,
}

/// What the form holds: the text as pasted and the agent chosen ("" for every agent).
pub struct ImportForm<'a> {
    pub caddyfile: &'a str,
    pub agent: &'a str,
    pub agents: &'a [(i64, String)],
}

pub fn page(
    ctx: &Ctx,
    form: &ImportForm<'_>,
    plan: Option<&Plan>,
    agents: &[AgentPlan],
    errors: &FieldErrors,
) -> Markup {
    html! {
        div .stack #import {
            section .card {
                h1 { "Import a Caddyfile" }
                p .hint {
                    "Each site block becomes a site (one per address) whose body is kept as raw Caddyfile. "
                    "Snippets are inlined; global options, named routes and imports of files are listed below "
                    "with their line numbers, never dropped silently. Nothing is written until you confirm the preview. "
                    "For a file on the server, use " code { "gatehouse import FILE" } "."
                }
                (form_alert(errors))
                form #import-form method="post" action="/import/preview" {
                    (csrf_field(ctx))
                    @let error = errors.get("caddyfile");
                    div .field .has-error[error.is_some()] {
                        label for="caddyfile" { "Caddyfile" }
                        textarea .mono #caddyfile name="caddyfile" rows="18" spellcheck="false"
                            aria-invalid=[error.map(|_| "true")]
                            aria-describedby=(if error.is_some() { "caddyfile-error" } else { "caddyfile-hint" }) { (form.caddyfile) }
                        p .hint #caddyfile-hint { "Paste the whole file, global options and snippets included." }
                        @if let Some(why) = error { p .field-error #caddyfile-error role="alert" { (why) } }
                    }
                    (agent_select(form))
                    button .button .primary #preview-import type="submit" { "Preview import" }
                }
            }
            @if let Some(plan) = plan { (preview(ctx, form, plan, agents)) }
        }
    }
}

fn agent_select(form: &ImportForm<'_>) -> Markup {
    html! {
        div .field {
            label for="agent" { "Serve the new sites on" }
            select #agent name="agent" {
                option value="" selected[form.agent.is_empty()] { "every agent" }
                @for (id, name) in form.agents {
                    @let value = id.to_string();
                    option value=(value) selected[form.agent == value] { "agent " (name) " only" }
                }
            }
        }
    }
}

fn preview(ctx: &Ctx, form: &ImportForm<'_>, plan: &Plan, agents: &[AgentPlan]) -> Markup {
    html! {
        section .card #import-preview {
            h2 { "Preview" }
            p #import-summary data-create=(plan.count(Action::Create)) data-update=(plan.count(Action::Update))
                data-unchanged=(plan.count(Action::Unchanged)) data-skip=(plan.count(Action::Skip)) {
                (plan.count(Action::Create)) " to create, " (plan.count(Action::Update)) " to update, "
                (plan.count(Action::Unchanged)) " unchanged, " (plan.count(Action::Skip)) " skipped."
            }
            @if !plan.items.is_empty() {
                div .table-wrap {
                    table #import-sites {
                        thead { tr { th { "Line" } th { "Address" } th { "Action" } th { "Why" } } }
                        tbody {
                            @for item in &plan.items {
                                tr .import-item data-action=(item.action.as_str()) data-line=(item.line)
                                    data-domain=(item.domain.as_deref().unwrap_or("")) {
                                    td .item-line { (item.line) }
                                    td .item-address .mono {
                                        (item.domain.as_deref().unwrap_or(&item.address))
                                        @if !item.same_block_as.is_empty() {
                                            br; span .muted .same-block { "same block as " (item.same_block_as.join(", ")) }
                                        }
                                    }
                                    td .item-action { span .badge .(badge(item.action)) { (item.action.as_str()) } }
                                    td .item-reason { (item.reason.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
            @if !plan.notes.is_empty() {
                h3 { "Lines that are not imported as they are" }
                ul #import-notes {
                    @for note in &plan.notes {
                        li .import-note data-line=(note.line) data-last-line=(note.last_line) data-kind=(note.kind.as_str()) {
                            span .note-line {
                                @if note.last_line > note.line { "lines " (note.line) "–" (note.last_line) } @else { "line " (note.line) }
                            }
                            " " span .badge .(note_badge(note.kind)) .note-kind { (note_label(note.kind)) }
                            " " code .note-source { (note.source) }
                            " " span .note-message { (note.message) }
                        }
                    }
                }
            }
            @if plan.writes() && !agents.is_empty() {
                section #import-agents {
                    h3 { "What changes on each agent" }
                    (super::vhosts::agent_plans(agents))
                }
            }
            @if plan.writes() {
                form #import-apply method="post" action="/import" {
                    (csrf_field(ctx))
                    input type="hidden" name="caddyfile" value=(form.caddyfile);
                    input type="hidden" name="agent" value=(form.agent);
                    input type="hidden" name="fingerprint" value=(plan.fingerprint);
                    button .button .primary #confirm-import type="submit" {
                        "Import " (plan.count(Action::Create) + plan.count(Action::Update)) " sites"
                    }
                }
            } @else {
                p .muted #nothing-to-import { "Nothing to create or update." }
            }
        }
    }
}

fn badge(action: Action) -> &'static str {
    match action {
        Action::Create => "ok",
        Action::Update => "warn",
        Action::Unchanged => "muted",
        Action::Skip => "danger",
    }
}

fn note_badge(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Config => "warn",
        NoteKind::Unmapped => "danger",
        NoteKind::Kept => "muted",
    }
}

fn note_label(kind: NoteKind) -> &'static str {
    match kind {
        NoteKind::Config => "set in config",
        NoteKind::Unmapped => "not imported",
        NoteKind::Kept => "note",
    }
}

/// After a confirmed import.
pub fn done(applied: &Applied, plan: &Plan) -> Markup {
    html! {
        section .card #import-done {
            h1 { "Imported" }
            p .notice .ok role="status" #import-result data-created=(applied.created) data-updated=(applied.updated) {
                (applied.created) " sites created and " (applied.updated) " updated, in one change, and pushed to every reachable agent (the others catch up when they come back)."
            }
            @if plan.count(Action::Skip) > 0 {
                p .notice .error { (plan.count(Action::Skip)) " address(es) were skipped, as the preview showed." }
            }
            p { a .button href="/vhosts" { "See the sites" } " " a .button href="/import" { "Import another" } }
        }
    }
}
