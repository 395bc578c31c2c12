//! Typed access to the cookie session (tower-sessions, stored in SQLite). Keys are private
//! consts behind typed methods, so no handler spells a key or a value type by hand.

use crate::auth::token;
use crate::error::AppError;
use crate::secrets::{Field, Sealer};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

const CSRF: &str = "csrf";
const AUTH: &str = "auth";
const PENDING_2FA: &str = "pending_2fa";
const ENROL_SECRET: &str = "enrol_secret";
const SIGNED_OUT: &str = "signed_out";

/// A password was right and a second factor is still owed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pending2fa {
    pub user_id: i64,
    pub next: String,
    pub since: i64,
}

/// How long the password step stays valid while waiting for the code.
pub const PENDING_2FA_SECS: i64 = 300;

pub struct TypedSession(pub Session);

fn internal(e: tower_sessions::session::Error) -> AppError {
    AppError::internal(e)
}

impl TypedSession {
    /// This session's CSRF token, made on first use.
    pub async fn csrf_token(&self) -> Result<String, AppError> {
        if let Some(t) = self.0.get::<String>(CSRF).await.map_err(internal)? {
            return Ok(t);
        }
        let t = token::random_hex(32);
        self.0.insert(CSRF, &t).await.map_err(internal)?;
        Ok(t)
    }

    pub async fn existing_csrf_token(&self) -> Result<Option<String>, AppError> {
        self.0.get::<String>(CSRF).await.map_err(internal)
    }

    /// The `auth_sessions` id this browser is signed in with.
    pub async fn auth_id(&self) -> Result<Option<String>, AppError> {
        self.0.get::<String>(AUTH).await.map_err(internal)
    }

    /// Signs this browser in: a new session id (against fixation), a new CSRF token.
    pub async fn sign_in(&self, auth_id: &str) -> Result<(), AppError> {
        // Nothing from before sign-in carries over (a half-done enrolment, an old sign-in).
        self.0.clear().await;
        self.0.cycle_id().await.map_err(internal)?;
        self.0.insert(AUTH, auth_id).await.map_err(internal)?;
        self.0
            .insert(CSRF, token::random_hex(32))
            .await
            .map_err(internal)?;
        Ok(())
    }

    /// Forgets everything but the CSRF token and moves to a new session id: signed out,
    /// and the old id is deleted from the store. The token stays because the page being
    /// rendered in this same request may already carry it.
    pub async fn clear(&self) -> Result<(), AppError> {
        let csrf = self.existing_csrf_token().await?;
        self.0.clear().await;
        self.0.cycle_id().await.map_err(internal)?;
        if let Some(csrf) = csrf {
            self.0.insert(CSRF, csrf).await.map_err(internal)?;
        }
        Ok(())
    }

    /// As [`TypedSession::clear`], for a sign-in that ended without this browser asking (a
    /// revoked or timed-out session, a ban, a password set elsewhere): the sign-in page then
    /// says so once, never why.
    pub async fn ended_elsewhere(&self) -> Result<(), AppError> {
        self.clear().await?;
        self.0.insert(SIGNED_OUT, true).await.map_err(internal)
    }

    /// Whether this browser's sign-in ended without it asking; told once.
    pub async fn take_ended_elsewhere(&self) -> Result<bool, AppError> {
        Ok(self
            .0
            .remove::<bool>(SIGNED_OUT)
            .await
            .map_err(internal)?
            .unwrap_or(false))
    }

    pub async fn set_pending_2fa(&self, pending: &Pending2fa) -> Result<(), AppError> {
        self.0.cycle_id().await.map_err(internal)?;
        self.0.insert(PENDING_2FA, pending).await.map_err(internal)
    }

    pub async fn pending_2fa(&self) -> Result<Option<Pending2fa>, AppError> {
        let pending = self
            .0
            .get::<Pending2fa>(PENDING_2FA)
            .await
            .map_err(internal)?;
        Ok(pending.filter(|p| crate::db::now() - p.since <= PENDING_2FA_SECS))
    }

    /// The secret shown on the enrolment page to user `uid`, kept until a code confirms it.
    /// The session lives in the database, so the secret is kept sealed like a stored one; one
    /// that no longer opens (the key was rotated) is as good as none: enrolment starts over.
    pub async fn enrol_secret(
        &self,
        sealer: &Sealer,
        uid: i64,
    ) -> Result<Option<String>, AppError> {
        let sealed = self.0.get::<String>(ENROL_SECRET).await.map_err(internal)?;
        Ok(
            sealed.and_then(|s| match sealer.open(Field::TotpEnrolment, uid, &s) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    tracing::info!(
                        user_id = uid,
                        "pending TOTP enrolment secret {e}; starting over"
                    );
                    None
                }
            }),
        )
    }

    pub async fn set_enrol_secret(
        &self,
        sealer: &Sealer,
        uid: i64,
        secret: &str,
    ) -> Result<(), AppError> {
        let sealed = sealer.seal(Field::TotpEnrolment, uid, secret);
        self.0.insert(ENROL_SECRET, sealed).await.map_err(internal)
    }

    pub async fn clear_enrol_secret(&self) -> Result<(), AppError> {
        self.0
            .remove::<String>(ENROL_SECRET)
            .await
            .map_err(internal)
            .map(|_| ())
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TypedSession {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, AppError> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, msg)| {
                AppError::internal(anyhow::anyhow!("session layer missing: {msg}"))
            })?;
        Ok(Self(session))
    }
}
