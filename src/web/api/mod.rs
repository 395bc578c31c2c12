//! The JSON API under `/api/v1`: vhosts (list, get, create, update, toggle, delete) and the
//! changelog, for scripts and CI. Authentication is an `Authorization: Bearer` API token
//! only — no session, no CSRF token, no second-factor prompt — checked by [`guard`] on
//! every request, which re-reads the token and its user so a revocation, an expiry, a ban or
//! a deletion counts at once.
//!
//! Authorization and the save/deploy path are the portal's own: the use cases of
//! [`crate::sites`]. A JSON body is read as a [`crate::sites::SitePatch`] over the site's
//! draft, so every rule (domain, template fields, the `user` directive allowlist) is checked
//! by the same code.
//!
//! `?dry_run=1` on a create, update, toggle or delete plans the change instead (admins only: a
//! plan shows the lines of other owners' sites around the change): every check,
//! then each agent's Caddyfile diff (see [`crate::fleet::deploy::plan`]); nothing is stored
//! or pushed.
//!
//! The handlers are in `vhosts` and `changelog`, the token guard in `auth`, the error
//! shape in `errors`.
//!
//! Errors are `{"error": {"code", "message", …}}` with these statuses: 400 a body that is
//! not a JSON object; 401 no token, or an unknown, revoked or expired one (with
//! `WWW-Authenticate: Bearer`); 403 a read token used to write, or an account that must set
//! up two-factor authentication first; 404 no such site, or another user's; 409 Caddy
//! refused the resulting configuration (code `rejected_by_caddy`; nothing changed anywhere),
//! or the site exists but the change was refused as things stand (code `conflict`), as in
//! the portal;
//! 422 invalid values (code `invalid`, with `fields`: the reason per field; a name outside
//! a user's grants, a port they may not use or an overlap with another owner's site is a
//! reason for `domain`, and an admin's overlap also for `allow_overlap`, which they may send
//! as `true` to save it anyway).

mod auth;
mod changelog;
mod errors;
mod vhosts;

pub(crate) use auth::ApiCaller;
pub use auth::{Guard, guard};
pub use changelog::{changelog, revert};
pub use errors::{cookies_refused, error_response};
pub use vhosts::{create_vhost, delete_vhost, get_vhost, list_vhosts, toggle_vhost, update_vhost};

/// Where the API lives; the CSRF layer and the error renderer recognise it by this.
pub const PREFIX: &str = "/api/v1";

pub fn is_api_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/api/v1/")
}
