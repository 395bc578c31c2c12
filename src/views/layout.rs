//! The page shell: head, top navigation, main area and the toast region.

use super::Ctx;
use crate::assets;
use maud::{DOCTYPE, Markup, html};

/// htmx reads this instead of an inline script, so the CSP can forbid inline code.
/// Error responses are swapped (the server retargets them to the toast area), and a 422 or
/// 429 re-renders the form in place with the reasons next to each field.
const HTMX_CONFIG: &str = r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"selfRequestsOnly":true,"responseHandling":[{"code":"204","swap":false},{"code":"[23]..","swap":true},{"code":"422","swap":true},{"code":"429","swap":true},{"code":"[45]..","swap":true,"error":true}]}"#;

pub fn page(ctx: &Ctx, title: &str, content: Markup) -> Markup {
    let hx_headers = format!(r#"{{"X-CSRF-Token":"{}"}}"#, ctx.csrf);
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                meta name="color-scheme" content="light dark";
                meta name="csrf-token" content=(ctx.csrf);
                title { (title) " · Gatehouse" }
                link rel="icon" type="image/svg+xml" href=(assets::url("favicon.svg"));
                link rel="stylesheet" href=(assets::url("app.css"));
                script src=(assets::url(assets::HTMX)) defer {}
                script src=(assets::url(assets::HTMX_SSE)) defer {}
                script src=(assets::url("app.js")) defer {}
            }
            body hx-headers=(hx_headers) {
                header .topbar {
                    a .brand href="/" { "Gatehouse" }
                    (nav(ctx))
                }
                main #main { (content) }
                div #toasts .toasts aria-live="polite" {}
            }
        }
    }
}

fn nav(ctx: &Ctx) -> Markup {
    let link = |href: &str, label: &str| {
        let current =
            ctx.path == href || (href != "/" && ctx.path.starts_with(&format!("{href}/")));
        html! { a href=(href) aria-current=[current.then_some("page")] { (label) } }
    };
    html! {
        nav .nav aria-label="Main" {
            @match &ctx.user {
                Some(user) if user.must_change_password => {
                    (link("/account/password", "Choose your password"))
                }
                Some(user) if user.must_enrol => {
                    (link("/account/2fa", "Two-factor setup"))
                }
                Some(user) => {
                    (link("/", "Home"))
                    (link("/vhosts", "Sites"))
                    (link("/logs", "Logs"))
                    (link("/changelog", "Changelog"))
                    @if user.is_admin {
                        (link("/agents", "Agents"))
                        (link("/users", "Users"))
                        (link("/audit", "Audit log"))
                        (link("/settings", "Settings"))
                    }
                    (link("/account", "Account"))
                }
                None => {
                    (link("/login", "Sign in"))
                }
            }
        }
        @if let Some(user) = &ctx.user {
            form .nav-end method="post" action="/logout" {
                (super::csrf_field(ctx))
                span .nav-user .muted { (user.name) }
                button .button .small type="submit" { "Sign out" }
            }
        }
    }
}
