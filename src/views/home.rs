//! The start page.

use maud::{Markup, html};

pub fn index(has_users: bool) -> Markup {
    html! {
        section .card .narrow {
            h1 { "Gatehouse" }
            @if has_users {
                p { "Manage your Caddy servers from one place." }
                a .button .primary href="/login" { "Sign in" }
            } @else {
                p #not-set-up {
                    "Gatehouse is not set up yet. Open the one-time setup link that the server "
                    "printed in its log when it started."
                }
            }
        }
    }
}
