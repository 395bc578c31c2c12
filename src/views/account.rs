//! The account pages: password, two-factor authentication, backup codes and sessions.

use super::forms::{Field, FormErrors, form_alert};
use super::{Ctx, csrf_field, timestamp};
use crate::web::{AccountView, PasswordForm};
use maud::{Markup, html};

/// Forms on the account page that may come back with errors, or a notice after success.
#[derive(Default)]
pub struct Forms<'a> {
    pub password: Option<(&'a PasswordForm, &'a FormErrors)>,
    pub backup: Option<&'a FormErrors>,
    pub notice: Option<&'a str>,
}

pub fn page(ctx: &Ctx, view: &AccountView, forms: &Forms<'_>) -> Markup {
    let none = FormErrors::default();
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
            section .card #sessions {
                h2 { "Signed-in sessions" }
                ul .session-list {
                    @for s in &view.sessions {
                        li .session-row data-session=(s.id) {
                            div {
                                strong { (s.user_agent.as_deref().unwrap_or("Unknown browser")) }
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
    errors: &FormErrors,
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

/// The only time backup codes are ever shown.
pub fn backup_codes(codes: &[String]) -> Markup {
    html! {
        section .card .narrow #backup-codes {
            h1 { "Save your backup codes" }
            p .notice .warn { "Each code signs you in once if you lose your device. They are shown only now: store them somewhere safe." }
            ul .codes .mono {
                @for code in codes { li .backup-code { (code) } }
            }
            a .button .primary href="/" { "I have saved them, continue" }
        }
    }
}
