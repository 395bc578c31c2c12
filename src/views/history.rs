//! The deployment history as the pages show it: "pending on edge-1" beside a site, the
//! dashboard's list of changes that have not reached every agent, a changelog entry's
//! per-agent outcomes, an agent's recent deploys, and the live progress of a deploy that
//! takes longer than a person should wait for an answer.

use super::agents::AgentView;
use super::timestamp;
use crate::db::deploys::{AgentDeploy, AgentOutcome, Pending};
use crate::fleet::progress::Step;
use maud::{Markup, html};

/// How an outcome reads, by its stored name.
fn outcome_label(kind: &str) -> &str {
    match kind {
        "applied" => "applied",
        "unchanged" => "already running it",
        "rejected" => "rejected by Caddy",
        "pending" => "pending (offline)",
        "unreached" => "not reached",
        "rolled_back" => "rolled back",
        "quarantined" => "quarantined",
        other => other,
    }
}

fn outcome_class(kind: &str) -> &'static str {
    match kind {
        "applied" | "unchanged" => "ok",
        "pending" | "unreached" | "rolled_back" => "warn",
        _ => "danger",
    }
}

fn outcome_badge(kind: &str) -> Markup {
    html! { span .badge .deploy-outcome .(outcome_class(kind)) data-outcome=(kind) { (outcome_label(kind)) } }
}

/// "pending on edge-1, edge-2": a site whose last change has not reached those agents.
pub fn pending_note(agents: &[String]) -> Markup {
    html! {
        @if !agents.is_empty() {
            span .badge .warn .pending-on data-agents=(agents.join(",")) title="Changed while these agents were offline; it lands when they come back" {
                "pending on " (agents.join(", "))
            }
        }
    }
}

/// Changes that have not reached every agent, one line per site: what changed and where it
/// is still pending. Deleted sites show here only.
pub fn pending_list(pending: &[Pending]) -> Markup {
    let mut sites: Vec<(&Pending, Vec<String>)> = Vec::new();
    for p in pending {
        match sites.iter_mut().find(|(s, _)| s.vhost_id == p.vhost_id) {
            Some((_, agents)) => agents.push(p.agent_name.clone()),
            None => sites.push((p, vec![p.agent_name.clone()])),
        }
    }
    html! {
        @if !sites.is_empty() {
            section .card #pending-changes {
                h2 { "Not yet on every agent" }
                p .hint { "Changed while an agent was offline: it lands when the agent comes back." }
                ul .links {
                    @for (p, agents) in &sites {
                        li .pending-change data-domain=(p.domain) data-action=(p.action) {
                            span .badge { (p.action) } " "
                            @if p.action == "delete" {
                                span .mono { (p.domain) }
                            } @else {
                                a .mono href=(format!("/vhosts/{}/edit", p.vhost_id)) { (p.domain) }
                            }
                            " " (pending_note(agents))
                            span .muted { ", since " (timestamp(p.since)) }
                        }
                    }
                }
            }
        }
    }
}

/// What the deploy of a changelog entry did on each agent. Caddy's and the network's words
/// are an admin's only.
pub fn deploy_outcomes(outcomes: &[AgentOutcome], admin: bool) -> Markup {
    let Some(first) = outcomes.first() else {
        return html! {};
    };
    let landed = outcomes
        .iter()
        .filter(|o| matches!(o.outcome.as_str(), "applied" | "unchanged"))
        .count();
    html! {
        details .deploy-outcomes data-deploy=(first.deploy_id) {
            summary { "Deploy: " (landed) " of " (outcomes.len()) " agents at once" }
            ul .deploy-agents {
                @for o in outcomes {
                    li .deploy-agent data-agent=(o.agent_name) data-outcome=(o.outcome) data-still-pending=(o.still_pending) {
                        strong { (o.agent_name) } " " (outcome_badge(&o.outcome))
                        @if o.outcome == "pending" {
                            @if o.still_pending { span .muted { " still waiting for the agent" } }
                            @else { span .muted .caught-up { " since caught up" } }
                        }
                        @if admin { @if let Some(m) = &o.message { " " span .muted .deploy-message { (m) } } }
                    }
                }
            }
        }
    }
}

/// One agent and its recent deploys (admin).
pub fn agent_page(v: &AgentView, deploys: &[AgentDeploy]) -> Markup {
    let a = &v.agent;
    html! {
        section .card #agent-history data-agent=(a.name) {
            h1 { "Agent " (a.name) }
            p { span .badge .(v.state.class()) .agent-state { (v.state.label()) } " " a href="/agents" { "All agents" } }
            h2 { "Recent deploys" }
            @if deploys.is_empty() {
                p .muted #no-deploys { "No deploy has concerned this agent yet." }
            } @else {
                div .table-wrap { table .table #agent-deploys {
                    thead { tr { th { "When" } th { "By" } th { "Change" } th { "Here" } th { "Deploy" } } }
                    tbody {
                        @for d in deploys {
                            tr .agent-deploy data-deploy=(d.deploy_id) data-outcome=(d.outcome) data-result=(d.result) {
                                td { (timestamp(d.created_at)) }
                                td { (d.user_email) }
                                td .mono .deploy-sites { (d.sites) }
                                td {
                                    (outcome_badge(&d.outcome))
                                    @if let Some(m) = &d.message { " " span .muted .deploy-message { (m) } }
                                }
                                td .deploy-result { (d.result) }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// A deploy still under way: each agent's progress, polled every second in place of the
/// answer it stands for (a row, the editor, a page), which replaces it when the deploy ends.
pub fn progress(token: &str, steps: &[Step], seconds: u64) -> Markup {
    let done = steps.iter().filter(|s| s.outcome.is_some()).count();
    html! {
        div .card .deploy-progress data-deploy=(token) hx-get=(format!("/deploys/{token}"))
            hx-trigger="load delay:1s" hx-target="this" hx-swap="outerHTML" role="status" aria-live="polite" {
            p .notice .warn { "Deploying… " (done) " of " (steps.len()) " agents done"
                @if seconds > 0 { " (" (seconds) " s)" } "." span .spinner {} }
            p .hint { "The change goes on whether or not you stay; this shows its result when it ends." }
            ul .deploy-steps {
                @for s in steps {
                    @let kind = s.outcome.as_ref().map_or("pushing", |o| o.kind());
                    li .deploy-step data-agent=(s.agent) data-state=(kind) {
                        strong { (s.agent) } " "
                        @if s.outcome.is_some() { (outcome_badge(kind)) } @else { span .badge { "pushing…" } }
                    }
                }
            }
        }
    }
}
