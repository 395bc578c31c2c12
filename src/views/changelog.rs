//! The changelog: who changed which site, when, with a line diff of its Caddyfile block.

use super::{Ctx, csrf_field, timestamp};
use crate::db::changelog::Entry;
use crate::db::deploys::AgentOutcome;
use crate::db::vhosts::Snapshot;
use crate::fleet::deploy::AgentPlan;
use crate::fleet::site_config;
use maud::{Markup, html};
use serde::Deserialize;
use similar::{ChangeTag, TextDiff};

/// The list's filters, as its query string has them.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ChangelogQuery {
    pub domain: String,
    pub user: String,
    /// Set after a revert, for its notice.
    pub reverted: String,
}

/// An entry with the site block before and after, for the diff.
pub struct EntryView {
    pub entry: Entry,
    pub before: String,
    pub after: String,
    /// What its deploy did on each agent (empty when none was recorded).
    pub deploy: Vec<AgentOutcome>,
}

impl EntryView {
    pub fn of(entry: Entry) -> Self {
        let before = block_of(entry.old.as_ref());
        let after = block_of(entry.new.as_ref());
        EntryView {
            entry,
            before,
            after,
            deploy: Vec::new(),
        }
    }
}

fn block_of(s: Option<&Snapshot>) -> String {
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

pub fn list(ctx: &Ctx, admin: bool, entries: &[EntryView], q: &ChangelogQuery) -> Markup {
    html! {
        section .card #changelog {
            h1 { "Changelog" }
            @if !q.reverted.is_empty() {
                p .notice .ok #notice role="status" { "Reverted: the site is back the way it was before that change, recorded as a new change below." }
            }
            form .filters method="get" action="/changelog" hx-get="/changelog" hx-target="#changelog-entries"
                hx-select="#changelog-entries" hx-swap="outerHTML" hx-push-url="true"
                hx-trigger="input changed delay:300ms, search" {
                div .field {
                    label for="changelog-domain" { "Domain" }
                    input #changelog-domain type="search" name="domain" value=(q.domain) autocomplete="off";
                }
                div .field {
                    label for="changelog-user" { "Changed by" }
                    input #changelog-user type="search" name="user" value=(q.user) autocomplete="off";
                }
                noscript { button .button type="submit" { "Filter" } }
            }
            div #changelog-entries {
                @for e in entries { (entry(ctx, admin, e)) }
                @if entries.is_empty() { p .muted #no-changes { "No changes match." } }
            }
        }
    }
}

pub fn detail(ctx: &Ctx, admin: bool, e: &EntryView) -> Markup {
    html! {
        section .card #change {
            h1 { "Change #" (e.entry.id) }
            (entry(ctx, admin, e))
            @if admin {
                section .revert-plan {
                    h2 { "What a revert changes on each agent" }
                    p .hint { "Every check a revert makes, then each agent's Caddyfile before and after. Nothing is saved or sent." }
                    form .inline method="post" action=(format!("/changelog/{}/plan", e.entry.id))
                        hx-post=(format!("/changelog/{}/plan", e.entry.id)) hx-target="#plan" hx-swap="innerHTML" {
                        (csrf_field(ctx))
                        button .button #plan-button type="submit" { "Show the changes" }
                    }
                    div #plan aria-live="polite" {}
                }
            }
            p { a href="/changelog" { "All changes" } }
        }
    }
}

fn entry(ctx: &Ctx, admin: bool, e: &EntryView) -> Markup {
    let en = &e.entry;
    html! {
        article .change data-action=(en.action) data-change=(en.id) {
            header .change-head {
                span .badge .action { (en.action) }
                " "
                a .mono .change-domain href=(format!("/changelog/{}", en.id)) { (en.domain) }
                span .muted { " by " span .change-user { (en.user_email) } ", " (timestamp(en.created_at)) }
                @if admin {
                    form .inline .revert method="post" action=(format!("/changelog/{}/revert", en.id))
                        hx-post=(format!("/changelog/{}/revert", en.id))
                        hx-confirm=(format!("Put {} back the way it was before this change?", en.domain)) {
                        (csrf_field(ctx))
                        button .button .small type="submit" { "Revert" }
                    }
                }
            }
            (diff(&e.before, &e.after))
            (super::history::deploy_outcomes(&e.deploy, admin))
        }
    }
}

/// A line diff: removed lines, added lines, and the unchanged lines around them.
pub fn diff(before: &str, after: &str) -> Markup {
    let diff = TextDiff::from_lines(before, after);
    html! {
        pre .diff {
            @for change in diff.iter_all_changes() {
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

/// What reverting would do on each agent, or why it would be refused.
pub fn revert_plan(planned: &Result<Vec<AgentPlan>, String>) -> Markup {
    html! {
        @match planned {
            Ok(agents) if agents.is_empty() => {
                p .notice .warn #plan-status { "There are no agents yet: reverting changes no Caddy." }
            }
            Ok(agents) => { (super::vhosts::agent_plans(agents)) }
            Err(why) => {
                p .notice .warn #plan-status { "Reverting would be refused: " span #plan-refusal { (why) } }
            }
        }
    }
}
