//! The dashboard: how many sites are served, and the latest changes.

use super::agents::{AgentState, AgentView};
use super::{Ctx, timestamp};
use crate::db::changelog;
use crate::db::quarantine::Entry;
use crate::db::users::User;
use maud::{Markup, html};

/// What the dashboard shows.
pub struct Dashboard {
    pub enabled: i64,
    pub disabled: i64,
    pub recent: Vec<changelog::Entry>,
    /// Admins see the fleet too.
    pub agents: Vec<AgentView>,
    /// The sites set aside on agents because a Caddy refuses them (a `user`: their own).
    pub quarantined: Vec<Entry>,
    /// Changes that have not reached every agent (a `user`'s own sites only).
    pub pending: Vec<crate::db::deploys::Pending>,
}

pub fn index(_ctx: &Ctx, user: &User, d: &Dashboard) -> Markup {
    html! {
        div .stack #home {
            section .card {
                h1 { "Welcome, " (user.name) }
                div .stats {
                    a .stat href="/vhosts?status=on" { span .stat-value #sites-enabled { (d.enabled) } span .stat-label { "sites enabled" } }
                    a .stat href="/vhosts?status=off" { span .stat-value #sites-disabled { (d.disabled) } span .stat-label { "sites disabled" } }
                }
                div .form-actions {
                    a .button .primary href="/vhosts/new" { "New site" }
                    a .button href="/vhosts" { "All sites" }
                }
            }
            @if !d.quarantined.is_empty() {
                section .card #quarantined {
                    h2 { "Sites set aside" }
                    p .notice .warn { "A Caddy refuses these sites, so their agents serve everything else without them. Fix and save each to bring it back." }
                    ul .links {
                        @for e in &d.quarantined {
                            li .quarantined-site data-domain=(e.domain) data-agent=(e.agent) {
                                a .mono href=(format!("/vhosts/{}/edit", e.vhost_id)) { (e.domain) }
                                span .muted { " on " (e.agent) ": " }
                                span .quarantine-error { (e.error) }
                            }
                        }
                    }
                }
            }
            @if !d.agents.is_empty() {
                section .card #fleet {
                    h2 { "Agents" }
                    @let troubled = d.agents.iter().filter(|a| a.state != AgentState::InSync).count();
                    @if troubled == 0 {
                        p .notice .ok #fleet-ok { "Every agent runs the current configuration." }
                    } @else {
                        p .notice .warn #fleet-warning {
                            (troubled) " of " (d.agents.len()) " agents need attention; the reconciler keeps retrying."
                        }
                    }
                    ul .links {
                        @for a in &d.agents {
                            li .fleet-agent data-agent=(a.agent.name) data-state=(a.state.label()) {
                                strong { (a.agent.name) } " "
                                span .badge .(a.state.class()) { (a.state.label()) }
                                span .muted { " Caddy " (a.agent.caddy_version.as_deref().unwrap_or("?")) }
                            }
                        }
                    }
                    a href="/agents" { "Manage agents" }
                }
            }
            (super::history::pending_list(&d.pending))
            section .card #recent-changes {
                h2 { "Recent changes" }
                @if d.recent.is_empty() {
                    p .muted { "No changes yet." }
                } @else {
                    ul .links {
                        @for e in &d.recent {
                            li {
                                span .badge { (e.action) } " "
                                a .mono href=(format!("/changelog/{}", e.id)) { (e.domain) }
                                span .muted { " by " (e.user_email) ", " (timestamp(e.created_at)) }
                            }
                        }
                    }
                    a href="/changelog" { "Full changelog" }
                }
            }
        }
    }
}
