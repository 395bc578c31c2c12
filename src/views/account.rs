//! The account pages: password, two-factor authentication, backup codes, sessions and API
//! tokens.

use super::forms::{Field, form_alert};
use super::{Ctx, csrf_field, last_day, timestamp};
use crate::db::api_tokens::ApiToken;
use crate::db::{sessions, users};
use crate::domain::FieldErrors;
use crate::domain::user_agent;
use maud::{Markup, html};
use serde::Deserialize;

/// Everything the account page shows.
pub struct AccountView {
    pub user: users::User,
    pub backup_codes_left: i64,
    pub sessions: Vec<sessions::AuthSession>,
    pub current_session: String,
    pub tokens: Vec<ApiToken>,
}

/// The password change as typed; the passwords are never shown back.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    pub current: String,
    pub new: String,
    pub confirm: String,
}

/// A new API token as typed.
#[derive(Deserialize, Default)]
pub struct TokenForm {
    #[serde(default, rename = "token_name")]
    pub name: String,
    #[serde(default)]
    pub scope: String,
    /// `YYYY-MM-DD` (what a date input sends); empty for a token that never expires.
    #[serde(default)]
    pub expires: String,
    /// The current password: a token is a lasting credential, so a session alone (perhaps
    /// a stolen one) cannot make one. Never shown back.
    #[serde(default, rename = "token_current")]
    pub current: String,
}

/// Forms on the account page that may come back with errors, or a notice after success.
#[derive(Default)]
pub struct Forms<'a> {
    pub password: Option<(&'a PasswordForm, &'a FieldErrors)>,
    pub backup: Option<&'a FieldErrors>,
    pub notice: Option<&'a str>,
    pub token: Option<(&'a TokenForm, &'a FieldErrors)>,
    /// A token just made, with its plain text: shown this once.
    pub new_token: Option<(&'a ApiToken, &'a str)>,
}

/// After signing in with a one-time password: a password of the person's own, before
/// anything else.
/// The passwords typed are never shown back.
pub fn choose_password(ctx: &Ctx, errors: &FieldErrors) -> Markup {
    html! {
        section .card .narrow #choose-password {
            h1 { "Choose your password" }
            p { "You signed in with a one-time password. It works only once: choose a password of your own to go on." }
            form method="post" action="/account/password" {
                (csrf_field(ctx))
                (form_alert(errors))
                (Field::new("current", "The one-time password").kind("password").autocomplete("current-password").render(errors))
                (Field::new("new", "New password").kind("password")
                    .autocomplete("new-password").hint("At least 12 characters.").render(errors))
                (Field::new("confirm", "Repeat the new password").kind("password").autocomplete("new-password").render(errors))
                button .button .primary type="submit" { "Set my password" }
            }
        }
    }
}

pub fn page(ctx: &Ctx, view: &AccountView, forms: &Forms<'_>) -> Markup {
    let none = FieldErrors::default();
    let pw_errors = forms.password.map_or(&none, |(_, e)| e);
    let backup_errors = forms.backup.unwrap_or(&none);
    html! {
        div .stack #account {
            @if let Some(notice) = forms.notice {
                p .notice .ok #notice role="status" { (notice) }
            }
            section .card {
                h1 { "Your account" }
                p { (view.user.name) " · " span .mono { (view.user.email) } " · " (view.user.role) }
            }
            section .card #password {
                h2 { "Change password" }
                form method="post" action="/account/password" hx-post="/account/password" hx-target="#account" hx-swap="outerHTML" {
                    (csrf_field(ctx))
                    (Field::new("current", "Current password").kind("password").autocomplete("current-password").render(pw_errors))
                    (Field::new("new", "New password").kind("password")
                        .autocomplete("new-password").hint("At least 12 characters.").render(pw_errors))
                    (Field::new("confirm", "Repeat the new password").kind("password").autocomplete("new-password").render(pw_errors))
                    button .button .primary type="submit" { "Change password" }
                }
            }
            section .card #two-factor {
                h2 { "Two-factor authentication" }
                @if view.user.totp_enabled {
                    p #totp-status .notice .ok { "On. You have " (view.backup_codes_left) " unused backup codes." }
                    form method="post" action="/account/backup-codes" {
                        (csrf_field(ctx))
                        (form_alert(backup_errors))
                        (Field::new("backup_current", "Current password").kind("password")
                            .autocomplete("current-password").render(backup_errors))
                        button .button type="submit" { "Make new backup codes" }
                        p .hint { "Your old backup codes stop working." }
                    }
                } @else {
                    p #totp-status .notice .warn { "Off." }
                    a .button .primary href="/account/2fa" { "Set up two-factor authentication" }
                }
            }
            (api_tokens(ctx, view, forms))
            section .card #sessions {
                h2 { "Signed-in sessions" }
                ul .session-list {
                    @for s in &view.sessions {
                        li .session-row data-session=(s.id) {
                            div {
                                strong .session-device title=[s.user_agent.as_deref()] {
                                    (s.user_agent.as_deref().map_or_else(|| "Unknown browser".into(), user_agent::describe))
                                }
                                @if s.id == view.current_session { " " span .badge { "this browser" } }
                                br;
                                span .muted { "from " (s.ip.as_deref().unwrap_or("?")) ", signed in " (timestamp(s.created_at)) ", last seen " (timestamp(s.last_seen_at)) }
                            }
                            form method="post" action=(format!("/account/sessions/{}/revoke", s.id)) {
                                (csrf_field(ctx))
                                button .button .small type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                @if view.sessions.len() > 1 {
                    form method="post" action="/account/sessions/revoke-others" {
                        (csrf_field(ctx))
                        button .button .danger type="submit" { "Sign out all other sessions" }
                        p .hint #revoke-others-hint { "Your API tokens keep working: revoke them one by one under API tokens, or change your password to revoke them all." }
                    }
                }
            }
        }
    }
}

pub fn enrol(
    ctx: &Ctx,
    forced: bool,
    qr_png_base64: &str,
    secret: &str,
    url: &str,
    code: &str,
    errors: &FieldErrors,
) -> Markup {
    html! {
        section .card .narrow #enrol {
            h1 { "Set up two-factor authentication" }
            @if forced {
                p .notice .warn #enrol-required { "Your role requires two-factor authentication. Set it up to continue." }
            }
            ol .steps {
                li { "Scan this code with an authenticator app (1Password, Aegis, Google Authenticator, …)." }
            }
            img .qr #totp-qr src=(format!("data:image/png;base64,{qr_png_base64}")) alt="QR code for your authenticator app" width="200" height="200";
            p { "Or type this key: " code #totp-secret .mono { (secret) } }
            p .hint { a href=(url) { "Open in an authenticator app on this device" } }
            form method="post" action="/account/2fa" hx-post="/account/2fa" hx-target="#enrol" hx-swap="outerHTML" {
                (csrf_field(ctx))
                (Field::new("code", "Code from the app").value(code).autocomplete("one-time-code").inputmode("numeric").render(errors))
                button .button .primary type="submit" { "Turn on two-factor authentication" }
            }
        }
    }
}

pub fn already_enrolled() -> Markup {
    html! {
        section .card .narrow #enrol {
            h1 { "Two-factor authentication is on" }
            p { "Manage backup codes on " a href="/account" { "your account page" } "." }
        }
    }
}

/// `text` as the data of a `data:` URL: letters, digits and `-` as they are, the rest
/// percent-encoded.
fn data_url_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The only time backup codes are ever shown.
pub fn backup_codes(codes: &[String]) -> Markup {
    html! {
        section .card .narrow #backup-codes {
            h1 { "Save your backup codes" }
            p .notice .warn { "Each code signs you in once if you lose your device. They are shown only now: store them somewhere safe." }
            ul .codes .mono #backup-code-list {
                @for code in codes { li .backup-code { (code) } }
            }
            @let text = format!("Gatehouse backup codes: each signs in once.\n{}\n", codes.join("\n"));
            div .actions {
                button .button #copy-codes type="button" data-copy=(text) data-copy-target="#backup-code-list" { "Copy" }
                a .button #download-codes download="gatehouse-backup-codes.txt"
                    href=(format!("data:text/plain;charset=utf-8,{}", data_url_text(&text))) { "Download" }
            }
            a .button .primary #codes-saved href="/" { "I have saved them, continue" }
        }
    }
}

/// The API tokens card: a token just made (once), the list, and the form for a new one.
fn api_tokens(ctx: &Ctx, view: &AccountView, forms: &Forms<'_>) -> Markup {
    let none = FieldErrors::default();
    let blank = TokenForm::default();
    let (form, errors) = forms.token.unwrap_or((&blank, &none));
    let now = crate::db::now();
    html! {
        section .card #api-tokens {
            h2 { "API tokens" }
            (new_token(forms))
            p .hint { "For scripts and CI: send a token as " code { "Authorization: Bearer …" } " to " code { "/api/v1" } ". It acts as you, without a second factor, so keep it secret. Changing your password or having your two-factor authentication reset revokes all your tokens." }
            @if view.tokens.is_empty() {
                p .muted #no-tokens { "No tokens yet." }
            } @else {
                div .table-wrap {
                    table .table #token-table {
                        thead { tr { th { "Name" } th { "Scope" } th { "Created" } th { "Expires" } th { "Last used" } th { "" } } }
                        tbody {
                            @for t in &view.tokens {
                                tr .token-row data-token=(t.id) {
                                    td .token-name { (t.name) }
                                    td .token-scope data-label="Scope" { (t.scope.as_str()) }
                                    td data-label="Created" { (timestamp(t.created_at)) }
                                    td .token-expires data-label="Expires" {
                                        @match t.expires_at {
                                            None => "never",
                                            Some(at) => {
                                                (last_day(at))
                                                @if t.is_expired(now) { " " span .badge .danger { "expired" } }
                                            }
                                        }
                                    }
                                    td .token-used data-label="Last used" {
                                        @match t.last_used_at {
                                            None => "never",
                                            Some(at) => { (timestamp(at)) @if let Some(ip) = &t.last_used_ip { " from " (ip) } }
                                        }
                                    }
                                    td .actions {
                                        @let action = format!("/account/tokens/{}/revoke", t.id);
                                        form .inline method="post" action=(action) hx-post=(action)
                                            hx-confirm=(format!("Revoke the token {}? Anything using it stops working.", t.name)) {
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
            form #new-token-form method="post" action="/account/tokens#api-tokens" {
                (csrf_field(ctx))
                (Field::new("token_name", "Name").value(&form.name).hint("Where it is used, e.g. \"deploy from CI\".").render(errors))
                div .field .has-error[errors.get("token_scope").is_some()] {
                    label for="token_scope" { "Scope" }
                    select #token_scope name="scope" {
                        option value="read" selected[form.scope != "write"] { "read: look only" }
                        option value="write" selected[form.scope == "write"] { "write: also create, change, switch and delete sites" }
                    }
                    @if let Some(e) = errors.get("token_scope") { p .field-error #token_scope-error role="alert" { (e) } }
                }
                div .field .has-error[errors.get("token_expires").is_some()] {
                    label for="token_expires" { "Expires after" }
                    input #token_expires name="expires" type="date" value=(form.expires)
                        aria-invalid=[errors.get("token_expires").map(|_| "true")] aria-describedby="token_expires-hint";
                    p .hint #token_expires-hint { "The token works through this day (UTC). Leave empty for a token that never expires." }
                    @if let Some(e) = errors.get("token_expires") { p .field-error #token_expires-error role="alert" { (e) } }
                }
                (Field::new("token_current", "Current password").kind("password").autocomplete("current-password")
                    .hint("A token is a lasting credential, so making one asks for your password.").render(errors))
                button .button .primary type="submit" { "Make a token" }
            }
        }
    }
}

/// A token just made, first in its card (the form's action scrolls there): the only time it
/// is shown.
fn new_token(forms: &Forms<'_>) -> Markup {
    html! {
            @if let Some((token, plain)) = forms.new_token {
                div .notice .ok #new-token role="status" {
                    p { "Token " strong { (token.name) } " made. Copy it now: it is shown only this once." }
                    div .field {
                        label for="new-token-value" { "Your new token" }
                        input #new-token-value .mono type="text" readonly value=(plain) autocomplete="off" spellcheck="false";
                    }
                }
            }
    }
}
