//! The deployment history: the `deploys` table with the sites each deploy changed and what
//! it did on each agent, and `pending_changes`, the committed changes an agent has not
//! received yet. Written by [`crate::fleet::history`]; read by the changelog, the agent's
//! page, the sites list, the editor and the dashboard.

use super::DbError;
use super::vhosts::Snapshot;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Stores a deploy; its id.
pub(crate) fn insert(
    conn: &Connection,
    user_id: Option<i64>,
    user_email: &str,
    result: &str,
) -> Result<i64, DbError> {
    conn.execute(
        "INSERT INTO deploys (user_id, user_email, result) VALUES (?1, ?2, ?3)",
        params![user_id, user_email, result],
    )?;
    Ok(conn.last_insert_rowid())
}

/// One site a deploy changed.
#[derive(Debug, Clone)]
pub(crate) struct SiteRow<'a> {
    /// The changelog entry the deploy committed; None when it was not committed.
    pub(crate) changelog_id: Option<i64>,
    pub(crate) vhost_id: i64,
    pub(crate) domain: &'a str,
    pub(crate) action: &'a str,
    pub(crate) owner_id: Option<i64>,
    pub(crate) prev_owner_id: Option<i64>,
}

pub(crate) fn add_site(conn: &Connection, deploy: i64, s: &SiteRow<'_>) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO deploy_sites (deploy_id, changelog_id, vhost_id, domain, action, owner_id, prev_owner_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            deploy,
            s.changelog_id,
            s.vhost_id,
            s.domain,
            s.action,
            s.owner_id,
            s.prev_owner_id
        ],
    )?;
    Ok(())
}

pub(crate) fn add_agent(
    conn: &Connection,
    deploy: i64,
    agent_id: i64,
    agent_name: &str,
    outcome: &str,
    message: Option<&str>,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO deploy_agents (deploy_id, agent_id, agent_name, outcome, message)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![deploy, agent_id, agent_name, outcome, message],
    )?;
    Ok(())
}

/// What one deploy did on one agent, as the changelog shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentOutcome {
    pub deploy_id: i64,
    pub agent_name: String,
    pub outcome: String,
    pub message: Option<String>,
    /// For a `pending` outcome: whether the change has still not reached the agent.
    pub still_pending: bool,
}

/// The per-agent outcomes of the deploys that committed changelog entries `ids`, by entry.
pub(crate) fn outcomes_for_entries(
    conn: &Connection,
    ids: &[i64],
) -> Result<Vec<(i64, AgentOutcome)>, DbError> {
    let ids = serde_json::to_string(ids).map_err(|e| DbError::Encode(e.to_string()))?;
    let mut stmt = conn.prepare(
        "SELECT s.changelog_id, a.deploy_id, a.agent_name, a.outcome, a.message,
                EXISTS (SELECT 1 FROM pending_changes p
                        WHERE p.agent_id = a.agent_id AND p.vhost_id = s.vhost_id)
         FROM deploy_sites s JOIN deploy_agents a ON a.deploy_id = s.deploy_id
         WHERE s.changelog_id IN (SELECT value FROM json_each(?1))
         ORDER BY s.changelog_id, a.agent_name",
    )?;
    let rows = stmt
        .query_map([ids], |r| {
            Ok((
                r.get(0)?,
                AgentOutcome {
                    deploy_id: r.get(1)?,
                    agent_name: r.get(2)?,
                    outcome: r.get(3)?,
                    message: r.get(4)?,
                    still_pending: r.get(5)?,
                },
            ))
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A deploy as one agent's page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDeploy {
    pub deploy_id: i64,
    pub created_at: i64,
    pub user_email: String,
    /// `committed`, or why nothing changed (`rejected`, `failed`).
    pub result: String,
    pub outcome: String,
    pub message: Option<String>,
    /// The sites it changed: `action domain`, comma-separated.
    pub sites: String,
}

/// The latest `limit` deploys that concerned agent `agent`, newest first.
pub(crate) fn for_agent(
    conn: &Connection,
    agent: i64,
    limit: u32,
) -> Result<Vec<AgentDeploy>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT d.id, d.created_at, d.user_email, d.result, a.outcome, a.message,
                (SELECT group_concat(s.action || ' ' || s.domain, ', ')
                 FROM deploy_sites s WHERE s.deploy_id = d.id)
         FROM deploy_agents a JOIN deploys d ON d.id = a.deploy_id
         WHERE a.agent_id = ?1
         ORDER BY d.id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![agent, limit.max(1)], |r| {
            Ok(AgentDeploy {
                deploy_id: r.get(0)?,
                created_at: r.get(1)?,
                user_email: r.get(2)?,
                result: r.get(3)?,
                outcome: r.get(4)?,
                message: r.get(5)?,
                sites: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// A committed change that has not reached an agent yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub agent_id: i64,
    pub agent_name: String,
    pub vhost_id: i64,
    pub domain: String,
    pub action: String,
    pub owner_id: Option<i64>,
    pub since: i64,
}

fn pending_from_row(r: &Row<'_>) -> rusqlite::Result<Pending> {
    Ok(Pending {
        agent_id: r.get(0)?,
        agent_name: r.get(1)?,
        vhost_id: r.get(2)?,
        domain: r.get(3)?,
        action: r.get(4)?,
        owner_id: r.get(5)?,
        since: r.get(6)?,
    })
}

/// Every pending change (only `owner`'s sites when given), by domain then agent.
pub(crate) fn pending(conn: &Connection, owner: Option<i64>) -> Result<Vec<Pending>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT p.agent_id, a.name, p.vhost_id, p.domain, p.action, p.owner_id, p.since
         FROM pending_changes p JOIN agents a ON a.id = p.agent_id
         WHERE (?1 IS NULL OR p.owner_id = ?1)
         ORDER BY p.domain, a.name",
    )?;
    let rows = stmt
        .query_map([owner], pending_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// The site as agent `agent` last had it, when a change to it is pending there: `Some(None)`
/// when the agent had no such site.
pub(crate) fn pending_base(
    conn: &Connection,
    agent: i64,
    vhost: i64,
) -> Result<Option<Option<Snapshot>>, DbError> {
    let base: Option<Option<String>> = conn
        .query_row(
            "SELECT base FROM pending_changes WHERE agent_id = ?1 AND vhost_id = ?2",
            params![agent, vhost],
            |r| r.get(0),
        )
        .optional()?;
    base.map(|b| {
        b.map(|text| serde_json::from_str(&text).map_err(|e| DbError::Encode(e.to_string())))
            .transpose()
    })
    .transpose()
}

/// A change to a site that has not reached an agent.
pub(crate) struct NewPending<'a> {
    pub(crate) agent_id: i64,
    pub(crate) vhost_id: i64,
    pub(crate) domain: &'a str,
    pub(crate) action: &'a str,
    pub(crate) owner_id: Option<i64>,
    /// The site as the agent last had it.
    pub(crate) base: Option<&'a Snapshot>,
    pub(crate) deploy_id: i64,
}

/// Records a pending change, or updates the one already pending for that site and agent
/// (keeping when it began and what the agent had).
pub(crate) fn set_pending(conn: &Connection, p: &NewPending<'_>) -> Result<(), DbError> {
    let base = p
        .base
        .map(|s| serde_json::to_string(s).map_err(|e| DbError::Encode(e.to_string())))
        .transpose()?;
    conn.execute(
        "INSERT INTO pending_changes (agent_id, vhost_id, domain, action, owner_id, base, deploy_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (agent_id, vhost_id) DO UPDATE SET
            domain = excluded.domain, action = excluded.action,
            owner_id = excluded.owner_id, deploy_id = excluded.deploy_id",
        params![
            p.agent_id, p.vhost_id, p.domain, p.action, p.owner_id, base, p.deploy_id
        ],
    )?;
    Ok(())
}

/// The change to site `vhost` is no longer pending on agent `agent`.
pub(crate) fn clear_pending(conn: &Connection, agent: i64, vhost: i64) -> Result<(), DbError> {
    conn.execute(
        "DELETE FROM pending_changes WHERE agent_id = ?1 AND vhost_id = ?2",
        params![agent, vhost],
    )?;
    Ok(())
}

/// Agent `agent` runs the database's config: nothing is pending on it. How many were.
/// Asked first, so the reconciler's every check of an agent in step writes nothing.
pub(crate) fn clear_agent(conn: &Connection, agent: i64) -> Result<usize, DbError> {
    let any: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM pending_changes WHERE agent_id = ?1)",
        [agent],
        |r| r.get(0),
    )?;
    if !any {
        return Ok(0);
    }
    Ok(conn.execute("DELETE FROM pending_changes WHERE agent_id = ?1", [agent])?)
}
