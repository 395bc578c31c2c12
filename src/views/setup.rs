//! The first-run page that creates the first admin.

use super::forms::Field;
use super::{Ctx, csrf_field};
use crate::domain::FieldErrors;
use maud::{Markup, html};
use serde::Deserialize;

/// What the setup form sends back; kept as typed so a refusal can show it again.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct SetupForm {
    pub token: String,
    pub name: String,
    pub email: String,
    pub password: String,
    pub password_confirm: String,
}

pub fn form(ctx: &Ctx, form: &SetupForm, errors: &FieldErrors) -> Markup {
    html! {
        section .card .narrow #setup {
            h1 { "Welcome to Gatehouse" }
            p .lead { "Create the first administrator. You can invite everyone else afterwards." }
            form method="post" action="/setup" hx-post="/setup" hx-target="#setup" hx-swap="outerHTML" {
                (csrf_field(ctx))
                input type="hidden" name="token" value=(form.token);
                (Field::new("name", "Your name").value(&form.name).autocomplete("name").render(errors))
                (Field::new("email", "Email").kind("email").value(&form.email).autocomplete("email").render(errors))
                (Field::new("password", "Password").kind("password")
                    .autocomplete("new-password").hint("At least 12 characters.").render(errors))
                (Field::new("password_confirm", "Repeat the password").kind("password")
                    .autocomplete("new-password").render(errors))
                button .button .primary type="submit" { "Create administrator" }
            }
        }
    }
}

pub fn done(email: &str) -> Markup {
    html! {
        section .card .narrow #setup {
            h1 { "Gatehouse is ready" }
            p #setup-done { "The administrator " strong { (email) } " has been created." }
            p { "Sign in with it; you will set up two-factor authentication first." }
            a .button .primary href="/login" { "Sign in" }
        }
    }
}
