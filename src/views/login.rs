//! The sign-in pages: password, then the second factor.

use super::forms::{Field, form_alert};
use super::{Ctx, csrf_field};
use crate::domain::FieldErrors;
use maud::{Markup, html};
use serde::Deserialize;

/// The sign-in form as typed; the password is never shown back.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct LoginForm {
    pub email: String,
    pub password: String,
    pub next: String,
    /// This browser's sign-in ended without it asking (the page says so, never why).
    #[serde(skip)]
    pub signed_out: bool,
}

pub fn form(ctx: &Ctx, form: &LoginForm, errors: &FieldErrors, not_set_up: bool) -> Markup {
    html! {
        section .card .narrow #login {
            h1 { "Sign in" }
            @if not_set_up {
                p .notice .warn #not-set-up {
                    "Gatehouse has no accounts yet. Open the one-time setup link that the server "
                    "printed in its log when it started."
                }
            }
            @if form.signed_out {
                p .notice .warn #signed-out role="status" { "You were signed out. Sign in again to go on." }
            }
            (form_alert(errors))
            form method="post" action="/login" hx-post="/login" hx-target="#login" hx-swap="outerHTML" {
                (csrf_field(ctx))
                input type="hidden" name="next" value=(form.next);
                (Field::new("email", "Email").kind("email").value(&form.email).autocomplete("username").render(errors))
                (Field::new("password", "Password").kind("password").autocomplete("current-password").render(errors))
                button .button .primary type="submit" { "Sign in" }
            }
        }
    }
}

pub fn second_factor(ctx: &Ctx, code: &str, errors: &FieldErrors) -> Markup {
    html! {
        section .card .narrow #second-factor {
            h1 { "Two-factor authentication" }
            p .lead { "Enter the 6-digit code from your authenticator app, or one of your backup codes." }
            (form_alert(errors))
            form method="post" action="/login/2fa" hx-post="/login/2fa" hx-target="#second-factor" hx-swap="outerHTML" {
                (csrf_field(ctx))
                (Field::new("code", "Code").value(code).autocomplete("one-time-code").inputmode("text")
                    .hint("123456, or a backup code like ABCD-EFGH").render(errors))
                button .button .primary type="submit" { "Verify" }
            }
            p { a href="/login" { "Start again" } }
        }
    }
}
