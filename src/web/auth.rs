//! Who is asking, and may they? One guard, applied per route from the route table, resolves
//! the signed-in user on every request and enforces the route's [`Access`]. Handlers only
//! extract [`CurrentUser`], which exists only when the guard let the request through.
//!
//! Each request re-reads the session row and the user, so a ban, a revoked session or a
//! password change takes effect on the very next request.

use super::htmx::is_htmx;
use super::render::redirect;
use super::session::TypedSession;
use super::{AppState, ClientInfo};
use crate::db::sessions;
use crate::db::users::User;
use crate::error::AppError;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// The JSON API: an `Authorization: Bearer` API token with at least this scope; sessions
    /// count for nothing here. Checked by the API's own guard (`web::api::guard`).
    Token(crate::db::api_tokens::Scope),
    /// Signed in, even if a required second factor is not enrolled yet (enrolment, sign-out).
    SignedIn,
    /// Signed in and done with any required enrolment.
    User,
    /// As `User`, with the admin role.
    Admin,
}

/// The signed-in user of this request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    /// This browser's `auth_sessions` id.
    pub session_id: String,
    /// The user's role requires 2FA and they have not enrolled yet.
    pub must_enrol: bool,
    /// Signed in with a one-time password: every page asks for a password of their own first.
    pub must_change_password: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(AppError::Unauthorized)
    }
}

/// Resolves the signed-in user of a request, if any. Revoked, banned and timed-out
/// sessions resolve to nobody and are cleared.
pub async fn resolve(
    state: &AppState,
    session: &TypedSession,
) -> Result<Option<CurrentUser>, AppError> {
    let Some(auth_id) = session.auth_id().await? else {
        return Ok(None);
    };
    let lookup_id = auth_id.clone();
    let found = state
        .db
        .run(move |c| sessions::lookup(c, &lookup_id))
        .await?;
    let Some((row, user)) = found else {
        session.ended_elsewhere().await?;
        return Ok(None);
    };
    let now = crate::db::now();
    let cfg = &state.config.session;
    let too_old =
        now - row.created_at > i64::try_from(cfg.absolute_timeout_hours * 3600).unwrap_or(i64::MAX);
    let idle =
        now - row.last_seen_at > i64::try_from(cfg.idle_timeout_minutes * 60).unwrap_or(i64::MAX);
    if user.is_banned() || too_old || idle {
        let (uid, id, banned) = (user.id, auth_id.clone(), user.is_banned());
        state
            .db
            .run(move |c| {
                if banned {
                    sessions::delete_all_for_user(c, uid, None)?;
                } else {
                    sessions::delete(c, uid, &id)?;
                }
                Ok(())
            })
            .await?;
        session.ended_elsewhere().await?;
        return Ok(None);
    }
    // Writing on every request would serialise reads behind the writer; a minute is enough.
    if now - row.last_seen_at >= 60 {
        let id = auth_id.clone();
        state.db.run(move |c| sessions::touch(c, &id)).await?;
    }
    let must_enrol =
        state.config.security.require_2fa_roles.contains(&user.role) && !user.totp_enabled;
    Ok(Some(CurrentUser {
        must_change_password: user.must_change_password,
        user,
        session_id: auth_id,
        must_enrol,
    }))
}

/// State for one route's guard.
#[derive(Clone)]
pub struct Guard {
    pub app: AppState,
    pub access: Access,
}

pub async fn guard(
    State(g): State<Guard>,
    session: TypedSession,
    mut request: Request,
    next: Next,
) -> Response {
    let htmx = is_htmx(request.headers());
    let current = match resolve(&g.app, &session).await {
        Ok(current) => current,
        Err(e) => return e.into_response(),
    };
    let Some(current) = current else {
        let uri = request.uri();
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let next = if request.method() == axum::http::Method::GET {
            target
        } else {
            "/"
        };
        return redirect(htmx, &format!("/login?next={}", urlencode(next)));
    };
    // Only choosing the password, or signing out, before a one-time password is replaced.
    let path = request.uri().path();
    if current.must_change_password && !matches!(path, "/account/password" | "/logout") {
        return redirect(htmx, "/account/password");
    }
    if current.must_enrol && g.access >= Access::User {
        return redirect(htmx, "/account/2fa");
    }
    let path = request.uri().path().to_string();
    let mut response = if g.access == Access::Admin && !current.user.is_admin() {
        AppError::Forbidden.into_response()
    } else {
        request.extensions_mut().insert(current.clone());
        next.run(request).await
    };
    signed_in_errors(&mut response, &current, &session, path).await;
    response
}

/// Gives an error answer what its page needs to show the person's own header (their name,
/// their menu, sign-out), not the signed-out one: the error middleware renders it later,
/// without the request.
pub(super) async fn signed_in_errors(
    response: &mut Response,
    current: &CurrentUser,
    session: &TypedSession,
    path: String,
) {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let Ok(csrf) = session.csrf_token().await else {
        return;
    };
    response.extensions_mut().insert(crate::views::Ctx {
        csrf,
        user: Some(crate::views::NavUser {
            name: current.user.name.clone(),
            is_admin: current.user.is_admin(),
            must_enrol: current.must_enrol,
            must_change_password: current.must_change_password,
        }),
        path,
    });
}

pub fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e[1..].to_string())
        .unwrap_or_default()
}

/// Only a local path may follow sign-in: never another origin (`//evil`, `/\evil`,
/// `https://…`), so `?next=` cannot become an open redirect.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

impl CurrentUser {
    /// This user acting as an admin from `client`, as the account rules know them (they
    /// check again, in the change's own transaction, that it is still an admin).
    pub(crate) fn as_admin(&self, client: &ClientInfo) -> crate::accounts::Actor {
        crate::accounts::Actor::Admin {
            id: self.user.id,
            origin: client.origin(),
        }
    }
}

impl ClientInfo {
    pub fn origin(&self) -> crate::db::audit::Origin {
        crate::db::audit::Origin {
            ip: Some(self.ip.clone()),
            user_agent: self.user_agent.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_always_a_local_path() {
        assert_eq!(safe_next(Some("/users?x=1")), "/users?x=1");
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/\u{0}x",
            "",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn urlencode_escapes_query_characters() {
        assert_eq!(urlencode("/a b?c=d&e"), "%2Fa+b%3Fc%3Dd%26e");
    }
}
