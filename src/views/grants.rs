//! A user's delegated names: the list with "take back" per name, and the form to grant one.

use super::forms::Field;
use super::{Ctx, csrf_field, timestamp};
use crate::db::grants::StoredGrant;
use crate::db::users::User;
use crate::domain::FieldErrors;
use crate::domain::vhost::Grant;
use maud::{Markup, html};
use serde::Deserialize;

/// The grant form as typed.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct GrantForm {
    pub pattern: String,
}

/// What the page shows.
pub struct Page<'a> {
    pub user: &'a User,
    pub grants: &'a [StoredGrant],
    pub form: &'a GrantForm,
    pub errors: &'a FieldErrors,
    pub notice: Option<&'a str>,
}

pub fn page(ctx: &Ctx, p: &Page<'_>) -> Markup {
    let base = format!("/users/{}/grants", p.user.id);
    html! {
        div .stack #grants {
            @if let Some(notice) = p.notice { p .notice .ok #notice role="status" { (notice) } }
            section .card {
                h1 { "Names for " span .mono { (p.user.email) } }
                @if p.user.is_admin() {
                    p .notice #admin-note { "An admin may serve any name; grants matter once this account is a user." }
                }
                p .muted {
                    "A user may create and rename sites only inside these names, on the ports the "
                    "configuration allows. " code { "app.example.com" } " grants that name alone; "
                    code { "*.team.example.com" } " grants every name below " code { "team.example.com" }
                    ", at any depth, and the wildcard sites under it, but not " code { "team.example.com" }
                    " itself. No site may overlap another owner's, whatever is granted."
                }
                @if p.grants.is_empty() {
                    p .muted #no-grants { "No names granted: this user cannot create sites." }
                } @else {
                    div .table-wrap {
                        table .table #grant-table {
                            thead { tr { th { "Name" } th { "Granted" } th { "" } } }
                            tbody {
                                @for g in p.grants {
                                    @let shown = Grant::parse(&g.pattern).map_or(g.pattern.clone(), |x| x.display());
                                    @let action = format!("{base}/{}/delete", g.id);
                                    tr .grant-row data-pattern=(g.pattern) {
                                        td .mono .grant-pattern { (shown) }
                                        td data-label="Granted" { (timestamp(g.created_at)) }
                                        td .actions {
                                            form .inline method="post" action=(action) hx-post=(action) hx-target="#grants" hx-swap="outerHTML"
                                                hx-confirm=(format!("Take {shown} back from {}?", p.user.email)) {
                                                (csrf_field(ctx))
                                                button .button .small .danger type="submit" { "Take back" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section .card #new-grant {
                h2 { "Grant a name" }
                form method="post" action=(base) hx-post=(base) hx-target="#grants" hx-swap="outerHTML" {
                    (csrf_field(ctx))
                    (Field::new("pattern", "Name").value(&p.form.pattern)
                        .hint("app.example.com, or *.team.example.com for every name below team.example.com").render(p.errors))
                    button .button .primary type="submit" { "Grant" }
                }
                p { a href="/users" { "Back to users" } }
            }
        }
    }
}
