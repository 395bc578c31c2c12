//! The HTTP side of the hub. `router(state)` is the one route table: every route is added
//! with its [`Access`], which a single guard enforces, and the same table is exported for
//! the authorization tests so a new route cannot slip through unchecked.

mod account;
mod agents;
pub(crate) mod api;
pub(crate) mod assets;
mod audit;
pub(crate) mod auth;
mod changelog;
mod csrf;
mod extract;
mod grants;
mod health;
mod home;
mod htmx;
mod import;
mod login;
mod logs;
mod metrics;
mod middleware;
pub(crate) mod progress;
mod render;
pub(crate) mod session;
mod settings;
pub(crate) mod setup;
mod users;
mod vhosts;

pub use auth::Access;
pub(crate) use auth::CurrentUser;
pub(crate) use extract::Form;
pub(crate) use render::Render;

use crate::auth::ratelimit::Limiter;
use crate::config::Config;
use crate::db::Db;
use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::routing::{MethodRouter, delete, get, patch, post};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::{Expiry, SessionManagerLayer, cookie::SameSite};
use tower_sessions_rusqlite_store::RusqliteStore;

/// Everything a handler may need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub(crate) setup: Arc<setup::SetupGate>,
    pub(crate) login_limiter: Arc<Limiter>,
    pub(crate) totp_limiter: Arc<Limiter>,
    pub(crate) sessions: RusqliteStore,
    pub fleet: Arc<crate::fleet::Fleet>,
    pub log_hub: Arc<crate::fleet::logs::LogHub>,
    pub(crate) http_metrics: crate::metrics::HttpMetrics,
    /// Deploys that outlasted the wait of the change that asked for them.
    pub(crate) deploys: Arc<progress::Board>,
}

impl AppState {
    /// The site use cases, over this state's database, fleet and settings.
    pub(crate) fn sites(&self) -> crate::sites::Sites {
        crate::sites::Sites::new(self.db.clone(), self.fleet.clone(), self.config.clone())
    }
}

/// One row of the route table.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub path: &'static str,
    pub methods: &'static [Method],
    pub access: Access,
}

struct Table {
    state: AppState,
    router: Router<AppState>,
    routes: Vec<RouteInfo>,
}

impl Table {
    fn add(
        mut self,
        access: Access,
        path: &'static str,
        methods: &'static [Method],
        route: MethodRouter<AppState>,
    ) -> Self {
        let route = match access {
            Access::Public => route,
            Access::Token(scope) => route.route_layer(axum::middleware::from_fn_with_state(
                api::Guard {
                    app: self.state.clone(),
                    scope,
                },
                api::guard,
            )),
            _ => route.route_layer(axum::middleware::from_fn_with_state(
                auth::Guard {
                    app: self.state.clone(),
                    access,
                },
                auth::guard,
            )),
        };
        self.router = self.router.route(path, route);
        self.routes.push(RouteInfo {
            path,
            methods,
            access,
        });
        self
    }
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];
const GET_POST: &[Method] = &[Method::GET, Method::POST];
const PATCH: &[Method] = &[Method::PATCH];
const DELETE: &[Method] = &[Method::DELETE];

fn table(state: &AppState) -> Table {
    use crate::db::api_tokens::Scope::{Read, Write};
    use Access::*;
    Table {
        state: state.clone(),
        router: Router::new(),
        routes: Vec::new(),
    }
    .add(Public, "/healthz", GET, get(health::healthz))
    // Public to the session guard; the handler admits only the metrics token or a direct
    // local request (see `crate::metrics`).
    .add(Public, "/metrics", GET, get(metrics::metrics))
    .add(Public, "/static/{*path}", GET, get(assets::serve))
    .add(
        Public,
        "/setup",
        GET_POST,
        get(setup::form).post(setup::submit),
    )
    .add(
        Public,
        "/login",
        GET_POST,
        get(login::form).post(login::submit),
    )
    .add(
        Public,
        "/login/2fa",
        GET_POST,
        get(login::second_factor_form).post(login::second_factor_submit),
    )
    .add(SignedIn, "/logout", POST, post(login::logout))
    .add(
        SignedIn,
        "/account/2fa",
        GET_POST,
        get(account::enrol_form).post(account::enrol_submit),
    )
    .add(User, "/", GET, get(home::index))
    .add(User, "/account", GET, get(account::page))
    // Signed in is enough: after a one-time password, choosing one's own comes first.
    .add(
        SignedIn,
        "/account/password",
        GET_POST,
        get(account::choose_password_form).post(account::change_password),
    )
    .add(
        User,
        "/account/backup-codes",
        POST,
        post(account::regenerate_backup_codes),
    )
    .add(
        User,
        "/account/sessions/{id}/revoke",
        POST,
        post(account::revoke_session),
    )
    .add(
        User,
        "/account/sessions/revoke-others",
        POST,
        post(account::revoke_other_sessions),
    )
    .add(User, "/account/tokens", POST, post(account::create_token))
    .add(
        User,
        "/account/tokens/{id}/revoke",
        POST,
        post(account::revoke_token),
    )
    .add(
        Admin,
        "/users",
        GET_POST,
        get(users::page).post(users::create),
    )
    .add(Admin, "/users/{id}/role", POST, post(users::change_role))
    .add(Admin, "/users/{id}/ban", POST, post(users::ban))
    .add(Admin, "/users/{id}/unban", POST, post(users::unban))
    .add(Admin, "/users/{id}/reset-2fa", POST, post(users::reset_2fa))
    .add(Admin, "/users/{id}/delete", POST, post(users::delete))
    .add(
        Admin,
        "/users/{id}/grants",
        GET_POST,
        get(grants::page).post(grants::add),
    )
    .add(
        Admin,
        "/users/{id}/grants/{grant}/delete",
        POST,
        post(grants::remove),
    )
    .add(
        Admin,
        "/users/tokens/{id}/revoke",
        POST,
        post(users::revoke_token),
    )
    .add(
        User,
        "/vhosts",
        GET_POST,
        get(vhosts::list).post(vhosts::create),
    )
    .add(User, "/vhosts/new", GET, get(vhosts::new_form))
    .add(User, "/vhosts/fields", GET, get(vhosts::fields))
    .add(User, "/vhosts/preview", POST, post(vhosts::preview))
    .add(Admin, "/vhosts/plan", POST, post(vhosts::plan))
    .add(User, "/vhosts/{id}", POST, post(vhosts::update))
    .add(User, "/vhosts/{id}/edit", GET, get(vhosts::edit_form))
    .add(User, "/vhosts/{id}/toggle", POST, post(vhosts::toggle))
    .add(User, "/vhosts/{id}/delete", POST, post(vhosts::delete))
    .add(User, "/logs", GET, get(logs::page))
    .add(User, "/logs/table", GET, get(logs::table))
    .add(User, "/logs/stream", GET, get(logs::stream))
    .add(User, "/deploys/{token}", GET, get(progress::poll))
    .add(User, "/changelog", GET, get(changelog::list))
    .add(User, "/changelog/{id}", GET, get(changelog::show))
    .add(
        Admin,
        "/changelog/{id}/revert",
        POST,
        post(changelog::revert),
    )
    .add(Admin, "/changelog/{id}/plan", POST, post(changelog::plan))
    .add(Admin, "/caddyfile", GET, get(vhosts::caddyfile))
    .add(
        Admin,
        "/import",
        GET_POST,
        get(import::form).post(import::apply),
    )
    .add(Admin, "/import/preview", POST, post(import::preview))
    .add(Admin, "/export.json", GET, get(import::export_json))
    .add(
        Admin,
        "/agents",
        GET_POST,
        get(agents::page).post(agents::create),
    )
    .add(Admin, "/agents/sync-all", POST, post(agents::sync_all))
    .add(
        Admin,
        "/agents/{id}",
        GET_POST,
        get(agents::show).post(agents::update),
    )
    .add(Admin, "/agents/{id}/edit", GET, get(agents::edit_form))
    .add(Admin, "/agents/{id}/delete", POST, post(agents::delete))
    .add(Admin, "/agents/{id}/test", POST, post(agents::test))
    .add(Admin, "/agents/{id}/sync", POST, post(agents::sync))
    .add(Admin, "/agents/{id}/labels", POST, post(agents::labels))
    .add(
        Admin,
        "/agents/{id}/caddyfile",
        GET,
        get(import::agent_caddyfile),
    )
    .add(Admin, "/audit", GET, get(audit::page))
    .add(
        Admin,
        "/settings",
        GET_POST,
        get(settings::page).post(settings::save),
    )
    .add(Admin, "/settings/review", POST, post(settings::review))
    .add(
        Admin,
        "/settings/rollout",
        POST,
        post(settings::save_rollout),
    )
    // The JSON API: bearer tokens only (see `api`). Reading needs any token, changing a
    // write token; which sites a token reaches is its user's, as in the portal.
    .add(Token(Read), "/api/v1/vhosts", GET, get(api::list_vhosts))
    .add(
        Token(Write),
        "/api/v1/vhosts",
        POST,
        post(api::create_vhost),
    )
    .add(Token(Read), "/api/v1/vhosts/{id}", GET, get(api::get_vhost))
    .add(
        Token(Write),
        "/api/v1/vhosts/{id}",
        PATCH,
        patch(api::update_vhost),
    )
    .add(
        Token(Write),
        "/api/v1/vhosts/{id}",
        DELETE,
        delete(api::delete_vhost),
    )
    .add(
        Token(Write),
        "/api/v1/vhosts/{id}/toggle",
        POST,
        post(api::toggle_vhost),
    )
    .add(Token(Read), "/api/v1/changelog", GET, get(api::changelog))
    .add(
        Token(Write),
        "/api/v1/changelog/{id}/revert",
        POST,
        post(api::revert),
    )
    .add(
        Token(Read),
        "/api/v1/deploys/{token}",
        GET,
        get(progress::api_poll),
    )
}

/// Every route with its methods and who may use it.
pub fn route_table(state: &AppState) -> Vec<RouteInfo> {
    table(state).routes
}

/// The single route table of the hub, with its layers.
pub fn router(state: AppState) -> Router {
    let config = &state.config;
    let body_limit = usize::try_from(config.security.max_body_kib * 1024).unwrap_or(usize::MAX);
    let timeout = Duration::from_secs(config.security.request_timeout_secs);
    let sessions = SessionManagerLayer::new(state.sessions.clone())
        .with_name("gatehouse_session")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(config.cookies_secure())
        // The cookie lives as long as a session may (the absolute limit). Idleness is judged
        // on `auth_sessions.last_seen_at`, kept fresh by the guard, so an active user is
        // never signed out early and nothing is rewritten on every request.
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(
            i64::try_from(config.session.absolute_timeout_hours).unwrap_or(24 * 365),
        )));
    let Table { router, .. } = table(&state);
    // Layers wrap outwards: a request meets the last one first.
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.http_metrics.clone(),
            crate::metrics::track,
        ))
        .fallback(home::not_found)
        .layer(axum::middleware::from_fn(csrf::protect))
        .layer(sessions)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Outside the limits, so a 408 or 413 also gets an error page and the headers.
        .layer(axum::middleware::from_fn(middleware::render_errors))
        .layer(axum::middleware::from_fn(middleware::security_headers))
        .layer(TraceLayer::new_for_http().make_span_with(middleware::request_span))
        .with_state(state)
}

/// Where a request came from, for the audit log and rate limits.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: String,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for ClientInfo {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let ip = peer.map_or_else(
            || "unknown".to_string(),
            |peer| {
                client_ip(peer, &parts.headers, &state.config.security.trusted_proxies).to_string()
            },
        );
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(300).collect());
        Ok(Self { ip, user_agent })
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// nearest `X-Forwarded-For` entry that is not itself a trusted proxy. Entries further left
/// are the client's own claims and are never believed.
pub fn client_ip(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for entry in forwarded.iter().rev() {
        match entry.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => break,
        }
    }
    peer
}

#[cfg(test)]
mod tests {
    use super::client_ip;
    use axum::http::HeaderMap;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxy = [ip("10.0.0.1")];
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("203.0.113.9"), &proxy),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("198.51.100.7"), &xff("203.0.113.9"), &proxy),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("203.0.113.9"), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_spoofed_leftmost_entry_is_ignored() {
        let proxy = [ip("10.0.0.1")];
        let h = xff("1.2.3.4, 203.0.113.9");
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &proxy), ip("203.0.113.9"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &xff("garbage"), &proxy),
            ip("10.0.0.1")
        );
    }
}
