//! Maud views. Views are plain functions returning `Markup`; a full page is the layout
//! around the very fragment that htmx swaps in.

pub(crate) mod account;
pub(crate) mod agents;
pub(crate) mod audit;
pub(crate) mod changelog;
pub(crate) mod claims;
pub(crate) mod errors;
pub(crate) mod forms;
pub(crate) mod grants;
pub(crate) mod home;
pub(crate) mod import;
pub(crate) mod layout;
pub(crate) mod login;
pub(crate) mod logs;
pub(crate) mod settings;
pub(crate) mod setup;
pub(crate) mod users;
pub(crate) mod vhosts;

use maud::{Markup, html};

/// What every page needs: the CSRF token and who is signed in.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ctx {
    pub(crate) csrf: String,
    pub(crate) user: Option<NavUser>,
    pub(crate) path: String,
}

#[derive(Debug, Clone)]
pub(crate) struct NavUser {
    pub(crate) name: String,
    pub(crate) is_admin: bool,
    pub(crate) must_enrol: bool,
}

/// The hidden CSRF field every plain form carries (htmx also sends it as a header).
pub(crate) fn csrf_field(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(ctx.csrf); }
}

/// Seconds since the epoch as `2026-11-22 03:29 UTC`.
/// The last day (UTC) on which something that stops at `end` still works: a token that
/// expires at midnight starting 2100-01-01 works through 2099-12-31, and says so.
pub(crate) fn last_day(end: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(end - 1)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .map_or_else(|| end.to_string(), |day| format!("through {day} (UTC)"))
}

pub(crate) fn timestamp(unix: i64) -> String {
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
