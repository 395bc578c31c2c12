//! Who may put a site at which address, checked inside the change's own transaction so that
//! two changes racing each other cannot both pass: a `user` only inside the names an admin
//! delegated to them and on the allowed ports, and nobody over another owner's site unless
//! an admin knowingly overrides it (see `domain::vhost::names` for what overlaps and why).
//!
//! The rules apply to a *claim*: a site created, or an existing one renamed or given to
//! another owner. A site that keeps its name and owner is not re-judged, so a user's site
//! outside their grants (an admin made it, or it predates them) keeps working and can be
//! edited, but cannot be renamed to anything outside. A site with no owner is nobody's: it
//! overlaps any user's site, and another ownerless site does not count (only admins see
//! either's logs).

use crate::db::audit::{self, Action, Event, Origin};
use crate::db::changelog::Author;
use crate::db::users::{self, User};
use crate::db::vhosts::Snapshot;
use crate::db::{DbError, grants};
use crate::domain::vhost::{Grant, SiteAddress, overlap_needle, overlaps, port_allowed};
use crate::sites::changes::ChangeError;
use rusqlite::Connection;

/// Who is making a change, and under which rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Any name and port; another owner's site only with `allow_overlap`.
    Admin { allow_overlap: bool },
    /// Only names in their grants, only `ports` (or none), never over another owner's site.
    User { user_id: i64, ports: Vec<u16> },
}

impl Claim {
    /// The rules for `user`. `allow_overlap` counts only for an admin: a user can never
    /// override the overlap rule.
    pub(crate) fn of(user: &User, allow_overlap: bool, user_ports: &[u16]) -> Self {
        if user.is_admin() {
            Claim::Admin { allow_overlap }
        } else {
            Claim::User {
                user_id: user.id,
                ports: user_ports.to_vec(),
            }
        }
    }

    /// An admin's change that must not overlap anyone (revert, import).
    pub const ADMIN: Claim = Claim::Admin {
        allow_overlap: false,
    };
}

/// Another owner's site that a claim overlaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub(crate) id: i64,
    pub(crate) domain: String,
    pub(crate) owner_id: Option<i64>,
}

/// Why a claim was refused: the reason beside the domain field, and, for an admin who may
/// override an overlap, the warning beside the "create it anyway" box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub(crate) reason: String,
    pub(crate) warning: Option<String>,
}

/// Checks `new` (replacing `old`, the site `id`, when it is an update) against `claim`, and
/// records an admin's override in the audit log. Run inside the change's transaction.
pub(crate) fn check(
    conn: &Connection,
    claim: &Claim,
    author: &Author<'_>,
    id: Option<i64>,
    old: Option<&Snapshot>,
    new: &Snapshot,
) -> Result<(), ChangeError> {
    if let Some(overridden) = judge(conn, claim, id, old, new)? {
        audit::record(
            conn,
            &Event {
                action: Action::OverlapAllowed,
                user_id: Some(author.user_id),
                email: Some(author.email),
                detail: &overridden,
            },
            &Origin::default(),
        )?;
    }
    Ok(())
}

/// The same judgement ahead of the change, for the form and the live preview to show the
/// reason beside the domain field early (before anything slower runs). Only [`check`],
/// inside the change's transaction, is authoritative.
pub(crate) fn precheck(
    conn: &Connection,
    claim: &Claim,
    id: Option<i64>,
    new: &Snapshot,
) -> Result<Option<Refusal>, DbError> {
    let old = match id {
        Some(id) => crate::db::vhosts::find(conn, id)?.map(|v| v.snapshot()),
        None => None,
    };
    match judge(conn, claim, id, old.as_ref(), new) {
        Ok(_) => Ok(None),
        Err(ChangeError::Claim(refusal)) => Ok(Some(refusal)),
        Err(ChangeError::Db(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Ok(Some(detail)) when an admin's override let an overlap through.
fn judge(
    conn: &Connection,
    claim: &Claim,
    id: Option<i64>,
    old: Option<&Snapshot>,
    new: &Snapshot,
) -> Result<Option<String>, ChangeError> {
    let renamed = old.is_none_or(|o| o.domain != new.domain);
    let reowned = old.is_none_or(|o| o.owner_id != new.owner_id);
    if !renamed && !reowned {
        return Ok(None);
    }
    let site = SiteAddress::parse(&new.domain)
        .map_err(|e| refused(format!("This address cannot be stored: {}", e.0), None))?;
    if let (Claim::User { user_id, ports }, true) = (claim, renamed) {
        if !port_allowed(&site, ports) {
            return Err(refused(port_reason(ports), None));
        }
        let granted = grants::list(conn, *user_id)?;
        let inside = granted
            .iter()
            .filter_map(|g| Grant::parse(&g.pattern).ok())
            .any(|g| g.covers(&site));
        if !inside {
            return Err(refused(grant_reason(&granted), None));
        }
    }
    let conflicts = overlapping(conn, &site, new.owner_id, id)?;
    if conflicts.is_empty() {
        return Ok(None);
    }
    match claim {
        Claim::User { .. } => Err(refused(
            "This name overlaps a site that belongs to someone else (the same name with any \
             scheme or port, or a wildcard over it)."
                .into(),
            None,
        )),
        Claim::Admin {
            allow_overlap: false,
        } => {
            let listed = describe(conn, &conflicts)?;
            Err(refused(
                format!("This overlaps {listed}."),
                Some(format!(
                    "Saved anyway, Caddy serves some of the same requests from both sites, and \
                     each access-log line goes to the owner of the site Caddy routes it to \
                     (and to admins). It overlaps {listed}."
                )),
            ))
        }
        Claim::Admin {
            allow_overlap: true,
        } => Ok(Some(format!(
            "{} overlaps {}",
            new.domain,
            describe(conn, &conflicts)?
        ))),
    }
}

/// The sites of other owners (than `owner`) that a site at `site` would overlap, leaving out
/// the site `except` itself.
pub(crate) fn overlapping(
    conn: &Connection,
    site: &SiteAddress,
    owner: Option<i64>,
    except: Option<i64>,
) -> Result<Vec<Conflict>, DbError> {
    let rows = crate::db::vhosts::containing(conn, overlap_needle(site), owner, except)?;
    let mut found = Vec::new();
    for (id, domain, owner_id) in rows {
        if SiteAddress::parse(&domain).is_ok_and(|other| overlaps(site, &other)) {
            found.push(Conflict {
                id,
                domain,
                owner_id,
            });
        }
    }
    Ok(found)
}

/// `bob.example.com (owner bob@example.com)`, and how many more, for an admin.
pub(crate) fn describe(conn: &Connection, conflicts: &[Conflict]) -> Result<String, DbError> {
    let Some(first) = conflicts.first() else {
        return Ok(String::new());
    };
    let owner = match first.owner_id {
        Some(id) => users::find(conn, id)?.map_or_else(|| format!("#{id}"), |u| u.email),
        None => "nobody".into(),
    };
    let display = SiteAddress::parse(&first.domain).map_or(first.domain.clone(), |a| a.display());
    let mut text = format!("{display} (owner: {owner})");
    if conflicts.len() > 1 {
        text.push_str(&format!(" and {} more", conflicts.len() - 1));
    }
    Ok(text)
}

fn refused(reason: String, warning: Option<String>) -> ChangeError {
    ChangeError::Claim(Refusal { reason, warning })
}

fn port_reason(ports: &[u16]) -> String {
    let list: Vec<String> = ports.iter().map(u16::to_string).collect();
    if list.is_empty() {
        "Leave out the port: your sites use Caddy's usual ports (443, or 80 for http://). An \
         admin can allow more."
            .into()
    } else {
        format!(
            "Your sites may use only the ports {} (or none); an admin can allow more.",
            list.join(", ")
        )
    }
}

fn grant_reason(granted: &[grants::StoredGrant]) -> String {
    if granted.is_empty() {
        return "No names have been delegated to you yet: ask an admin to grant you the names \
                you may serve."
            .into();
    }
    let names: Vec<String> = granted
        .iter()
        .map(|g| Grant::parse(&g.pattern).map_or(g.pattern.clone(), |g| g.display()))
        .collect();
    format!(
        "You may serve only the names delegated to you: {}. Ask an admin for more.",
        names.join(", ")
    )
}
