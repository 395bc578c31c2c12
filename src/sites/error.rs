//! Why a site use case did not happen: one flat error for every operation, mapped once to
//! the portal's [`AppError`] (here) and once to the API's error (in `web::api`).

use super::changes::ChangeError;
use crate::db::DbError;
use crate::domain::FieldErrors;
use crate::error::AppError;
use crate::fleet::deploy::DeployError;
use crate::fleet::rollout::ProbeFailure;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The values break the rules, or the change was refused for a reason that belongs
    /// beside a field (a taken domain, a name that is not the author's): the reasons by
    /// field. The portal shows the form again (422); so does the API.
    #[error("some values are not valid")]
    Invalid(FieldErrors),
    /// No such site, or another user's: 404.
    #[error("not found")]
    NotFound,
    /// The site exists but the change was refused as things stand: 409.
    #[error("{0}")]
    Conflict(String),
    /// A Caddy refused the resulting configuration; nothing changed anywhere: 409.
    #[error("{}", rejection(.agent, .error))]
    Rejected { agent: String, error: String },
    /// The change made the canary stage worse, as the rollout's probe saw it; every agent
    /// got its previous config back and nothing changed: 409.
    #[error("{}", rolled_back(.0))]
    RolledBack(ProbeFailure),
    /// The database failed: 500, the cause logged and never shown.
    #[error(transparent)]
    Internal(#[from] DbError),
}

/// What a Caddy rejection says to the person: which server, and Caddy's own words.
pub fn rejection(agent: &str, error: &str) -> String {
    format!("Caddy on {agent} refused this configuration, so nothing was changed: {error}")
}

/// What a change undone by the rollout's probe says to the person: what the probe saw.
pub fn rolled_back(seen: &ProbeFailure) -> String {
    format!(
        "The change made the canary agents worse, so every agent got its previous \
         configuration back and nothing was changed: {seen}"
    )
}

impl SiteError {
    /// A refused change whose reasons belong beside the form's fields.
    pub(super) fn of_change(e: ChangeError) -> Self {
        let mut errors = FieldErrors::default();
        match e {
            ChangeError::DomainTaken => {
                errors.add("domain", "Another site already uses this domain.")
            }
            ChangeError::NotFound => return SiteError::NotFound,
            ChangeError::Refused(why) => return SiteError::Conflict(why),
            ChangeError::Claim(refusal) => super::draft::claim_errors(&refusal, &mut errors),
            ChangeError::Db(e) => return SiteError::Internal(e),
        }
        SiteError::Invalid(errors)
    }

    /// A refused change to a site that exists: a conflict, whatever the reason.
    pub(super) fn of_refusal(e: ChangeError) -> Self {
        match e {
            ChangeError::NotFound => SiteError::NotFound,
            ChangeError::Db(e) => SiteError::Internal(e),
            e => SiteError::Conflict(e.to_string()),
        }
    }

    /// A deploy that did not go through, its change's own refusal read by `refused`.
    pub(super) fn of_deploy<E>(e: DeployError<E>, refused: impl FnOnce(E) -> Self) -> Self {
        match e {
            DeployError::Refused(e) => refused(e),
            DeployError::Rejected { agent, error } => SiteError::Rejected { agent, error },
            DeployError::Worse(seen) => SiteError::RolledBack(seen),
            DeployError::Db(e) => SiteError::Internal(e),
        }
    }
}

impl From<crate::blocking::BlockingError> for SiteError {
    fn from(e: crate::blocking::BlockingError) -> Self {
        SiteError::Internal(e.into())
    }
}

/// The portal's reading, where no form shows the reasons: an invalid change is a conflict
/// with its first reason, a rejection a conflict in Caddy's words.
impl From<SiteError> for AppError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::Invalid(errors) => AppError::Conflict(
                errors
                    .iter()
                    .next()
                    .map_or_else(|| "The change was refused.".into(), |(_, why)| why.into()),
            ),
            SiteError::NotFound => AppError::NotFound,
            e
            @ (SiteError::Conflict(_) | SiteError::Rejected { .. } | SiteError::RolledBack(_)) => {
                AppError::Conflict(e.to_string())
            }
            SiteError::Internal(e) => e.into(),
        }
    }
}
