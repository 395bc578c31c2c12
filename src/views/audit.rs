//! The audit log: security events, newest first, with filters.

use super::timestamp;
use crate::db::audit::{Action, Entry};
use maud::{Markup, html};
use serde::Deserialize;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    pub action: String,
    pub email: String,
}

pub fn page(q: &AuditQuery, entries: &[Entry]) -> Markup {
    html! {
        section .card #audit {
            h1 { "Audit log" }
            form .filters method="get" action="/audit" hx-get="/audit" hx-target="#audit" hx-swap="outerHTML"
                hx-push-url="true" hx-trigger="change, input delay:300ms from:#audit-email" {
                div .field {
                    label for="audit-action" { "Event" }
                    select #audit-action name="action" {
                        option value="" { "All events" }
                        @for a in Action::ALL {
                            option value=(a.as_str()) selected[q.action == a.as_str()] { (a.as_str()) }
                        }
                    }
                }
                div .field {
                    label for="audit-email" { "Email contains" }
                    input #audit-email type="search" name="email" value=(q.email) autocomplete="off";
                }
                noscript { button .button type="submit" { "Filter" } }
            }
            div .table-wrap {
                table .table #audit-table {
                    thead { tr { th { "When" } th { "Event" } th { "Account" } th { "Detail" } th { "IP" } th { "Browser" } } }
                    tbody {
                        @for e in entries {
                            tr .audit-row data-action=(e.action) {
                                td data-label="When" { (timestamp(e.created_at)) }
                                td .action data-label="Event" { (e.action) }
                                td .mono data-label="Account" { (e.email.as_deref().unwrap_or("")) }
                                td data-label="Detail" { (e.detail) }
                                td .mono data-label="IP" { (e.ip.as_deref().unwrap_or("")) }
                                td .muted data-label="Browser" { (e.user_agent.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
                @if entries.is_empty() { p .muted #audit-empty { "No events match." } }
            }
        }
    }
}
