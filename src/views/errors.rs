//! How errors look: a toast for htmx requests, a page for everything else.

use super::layout;
use axum::http::StatusCode;
use maud::{Markup, html};

pub fn toast(message: &str) -> Markup {
    html! {
        div .toast .toast-error role="alert" { (message) }
    }
}

pub fn page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    layout::page(
        &super::Ctx::default(),
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
