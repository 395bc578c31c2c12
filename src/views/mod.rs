//! Maud views. Views are plain functions returning `Markup`; a full page is the layout
//! around the very fragment that htmx swaps in.

pub mod account;
pub mod agents;
pub mod audit;
pub mod changelog;
pub mod claims;
pub mod errors;
pub mod forms;
pub mod grants;
pub mod history;
pub mod home;
pub mod import;
pub mod layout;
pub mod login;
pub mod logs;
pub mod settings;
pub mod setup;
pub mod users;
pub mod vhosts;

use maud::{Markup, html};

/// What every page needs: the CSRF token and who is signed in.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub csrf: String,
    pub user: Option<NavUser>,
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct NavUser {
    pub name: String,
    pub is_admin: bool,
    pub must_enrol: bool,
    /// Signed in with a one-time password, not yet replaced.
    pub must_change_password: bool,
}

/// The hidden CSRF field every plain form carries (htmx also sends it as a header).
pub fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(ctx.csrf); }
}

/// Seconds since the epoch as `2026-11-22 03:29 UTC`.
/// The last day (UTC) on which something that stops at `end` still works: a token that
/// expires at midnight starting 2100-01-01 works through 2099-12-31, and says so.
pub fn last_day(end: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(end - 1)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .map_or_else(|| end.to_string(), |day| format!("through {day} (UTC)"))
}

pub fn timestamp(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}
