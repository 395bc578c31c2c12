//! How errors look: a toast for htmx requests, a page for everything else.

use super::layout;
use axum::http::StatusCode;
use maud::{Markup, html};

pub fn toast(message: &str) -> Markup {
    html! {
        div .toast .toast-error role="alert" { (message) }
    }
}

/// The error as a whole page, in the layout `ctx` gives: the person's own header when they
/// are signed in.
pub fn page(ctx: &super::Ctx, status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout::page(
        ctx,
        title,
        html! {
            section .card .error-page {
                p .status-code { (status.as_u16()) }
                h1 { (title) }
                p .error-message { (capitalise(message)) "." }
                p { a href="/" { "Back to the start page" } }
            }
        },
    )
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
