//! The users page: the list with per-row actions, and the form to add someone.

use super::forms::Field;
use super::{Ctx, csrf_field, last_day, timestamp};
use crate::db::api_tokens::ApiToken;
use crate::db::users::User;
use crate::domain::FieldErrors;
use maud::{Markup, html};
use serde::Deserialize;

/// The new-account form as typed.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct NewUserForm {
    pub name: String,
    pub email: String,
    pub role: String,
    /// Empty: a one-time password is generated and shown once.
    pub password: String,
}

/// What a finished action tells the admin.
pub enum Outcome {
    None,
    Created {
        email: String,
        one_time_password: Option<String>,
    },
    Done(String),
}

/// What the users page shows.
pub struct Page<'a> {
    pub me: i64,
    pub users: &'a [User],
    /// Every user's API tokens.
    pub tokens: &'a [ApiToken],
    pub form: &'a NewUserForm,
    pub errors: &'a FieldErrors,
    pub outcome: &'a Outcome,
}

pub fn page(ctx: &Ctx, p: &Page<'_>) -> Markup {
    let Page {
        me,
        users,
        form,
        errors,
        outcome,
        ..
    } = *p;
    html! {
        div .stack #users {
            @if let Outcome::Done(message) = outcome {
                p .notice .ok #notice role="status" { (message) }
            }
            section .card {
                h1 { "Users" }
                div .table-wrap {
                    table .table #user-table {
                        thead { tr { th { "Name" } th { "Email" } th { "Role" } th { "2FA" } th { "Status" } th { "Actions" } } }
                        tbody {
                            @for u in users { (row(ctx, me, u)) }
                        }
                    }
                }
            }
            (tokens(ctx, users, p.tokens))
            section .card #new-user {
                h2 { "Add someone" }
                // Where the person who just added someone is looking: beside the form.
                @if let Outcome::Created { email, one_time_password } = outcome {
                    div .notice .ok #notice role="status" {
                        "Created " strong { (email) } "."
                        @if let Some(pw) = one_time_password {
                            " One-time password (shown only now; it signs in once): "
                            code #one-time-password .mono { (pw) }
                            " "
                            button .button .small #copy-one-time-password type="button" data-copy=(pw)
                                data-copy-target="#one-time-password" { "Copy" }
                        }
                    }
                }
                form method="post" action="/users" hx-post="/users" hx-target="#users" hx-swap="outerHTML" {
                    (csrf_field(ctx))
                    (Field::new("name", "Name").value(&form.name).render(errors))
                    (Field::new("email", "Email").kind("email").value(&form.email).render(errors))
                    div .field .has-error[errors.get("role").is_some()] {
                        label for="role" { "Role" }
                        select #role name="role" {
                            option value="user" selected[form.role != "admin"] { "user: manages their own sites" }
                            option value="admin" selected[form.role == "admin"] { "admin: everything" }
                        }
                        @if let Some(e) = errors.get("role") { p .field-error #role-error { (e) } }
                    }
                    (Field::new("password", "Password").kind("password").autocomplete("new-password").optional()
                        .hint("Leave empty to generate a one-time password to hand over.").render(errors))
                    button .button .primary type="submit" { "Add user" }
                }
            }
        }
    }
}

fn row(ctx: &Ctx, me: i64, u: &User) -> Markup {
    let is_me = u.id == me;
    let action = |path: &str| format!("/users/{}/{path}", u.id);
    html! {
        tr data-user=(u.email) {
            td { (u.name) @if is_me { " " span .badge { "you" } } }
            td .mono data-label="Email" { (u.email) }
            td .role data-label="Role" { (u.role) }
            td data-label="2FA" { @if u.totp_enabled { "on" } @else { "off" } }
            td .status data-label="Status" {
                @if let Some(at) = u.banned_at {
                    span .badge .danger { "banned" } " " span .muted { (timestamp(at)) ": " (u.ban_reason.as_deref().unwrap_or("")) }
                } @else { "active" }
            }
            td .actions {
                @if !u.is_admin() {
                    a .button .small .grants-link href=(action("grants")) { "Names" }
                }
                @if !is_me {
                    form .inline method="post" action=(action("role")) hx-post=(action("role")) hx-target="#users" hx-swap="outerHTML" {
                        (csrf_field(ctx))
                        @let other = if u.is_admin() { "user" } else { "admin" };
                        input type="hidden" name="role" value=(other);
                        button .button .small type="submit" { "Make " (other) }
                    }
                    @if u.is_banned() {
                        form .inline method="post" action=(action("unban")) hx-post=(action("unban")) hx-target="#users" hx-swap="outerHTML" {
                            (csrf_field(ctx))
                            button .button .small type="submit" { "Unban" }
                        }
                    } @else {
                        form .inline method="post" action=(action("ban")) hx-post=(action("ban")) hx-target="#users" hx-swap="outerHTML" {
                            (csrf_field(ctx))
                            input type="text" name="reason" placeholder="Reason" required maxlength="200" aria-label=(format!("Reason to ban {}", u.email));
                            button .button .small .danger type="submit" { "Ban" }
                        }
                    }
                    @if u.totp_enabled {
                        form .inline method="post" action=(action("reset-2fa")) hx-post=(action("reset-2fa")) hx-target="#users" hx-swap="outerHTML"
                            hx-confirm=(format!("Reset two-factor authentication of {}?", u.email)) {
                            (csrf_field(ctx))
                            button .button .small type="submit" { "Reset 2FA" }
                        }
                    }
                    form .inline method="post" action=(action("delete")) hx-post=(action("delete")) hx-target="#users" hx-swap="outerHTML"
                        hx-confirm=(format!("Delete {} for good?", u.email)) {
                        (csrf_field(ctx))
                        button .button .small .danger type="submit" { "Delete" }
                    }
                }
            }
        }
    }
}

/// Everyone's API tokens, with who owns each and a revoke button.
fn tokens(ctx: &Ctx, users: &[User], tokens: &[ApiToken]) -> Markup {
    let now = crate::db::now();
    let owner = |id: i64| {
        users
            .iter()
            .find(|u| u.id == id)
            .map_or("?", |u| u.email.as_str())
    };
    html! {
        section .card #all-tokens {
            h2 { "API tokens" }
            @if tokens.is_empty() {
                p .muted { "Nobody has an API token." }
            } @else {
                div .table-wrap {
                    table .table #all-token-table {
                        thead { tr { th { "Owner" } th { "Name" } th { "Scope" } th { "Expires" } th { "Last used" } th { "" } } }
                        tbody {
                            @for t in tokens {
                                tr .token-row data-token=(t.id) data-owner=(owner(t.user_id)) {
                                    td .mono data-label="Owner" { (owner(t.user_id)) }
                                    td .token-name { (t.name) }
                                    td .token-scope data-label="Scope" { (t.scope.as_str()) }
                                    td .token-expires data-label="Expires" {
                                        @match t.expires_at {
                                            None => "never",
                                            Some(at) => { (last_day(at)) @if t.is_expired(now) { " " span .badge .danger { "expired" } } }
                                        }
                                    }
                                    td data-label="Last used" {
                                        @match t.last_used_at { None => "never", Some(at) => (timestamp(at)) }
                                    }
                                    td .actions {
                                        @let action = format!("/users/tokens/{}/revoke", t.id);
                                        form .inline method="post" action=(action) hx-post=(action) hx-target="#users" hx-swap="outerHTML"
                                            hx-confirm=(format!("Revoke {}'s token {}?", owner(t.user_id), t.name)) {
                                            (csrf_field(ctx))
                                            button .button .small .danger type="submit" { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
