//! The start page after signing in.

use super::Ctx;
use crate::db::users::User;
use maud::{Markup, html};

pub fn index(_ctx: &Ctx, user: &User) -> Markup {
    html! {
        section .card #home {
            h1 { "Welcome, " (user.name) }
            p .lead { "Gatehouse manages the Caddy servers of your team." }
            ul .links {
                li { a href="/account" { "Your account" } ": password, two-factor authentication, sessions." }
                @if user.is_admin() {
                    li { a href="/users" { "Users" } ": invite people, set roles, ban and unban." }
                    li { a href="/audit" { "Audit log" } ": sign-ins and every security change." }
                }
            }
        }
    }
}
