//! The `vhosts` table: one row per site, with its template values and generated body.

use super::{DbError, now};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

/// A virtual host as stored. `config` is the site block body, already validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vhost {
    pub id: i64,
    pub domain: String,
    pub template: String,
    /// The template's form values, JSON object of strings.
    pub params: String,
    pub config: String,
    pub enabled: bool,
    pub owner_id: Option<i64>,
    /// Served by every agent, or only by `agent_ids`, or (when `labels` is not empty) by
    /// the agents carrying any of `labels`.
    pub all_agents: bool,
    pub agent_ids: Vec<i64>,
    pub labels: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the changelog keeps of a vhost: everything needed to restore it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub domain: String,
    pub template: String,
    pub params: String,
    pub config: String,
    pub enabled: bool,
    pub owner_id: Option<i64>,
    /// Older snapshots have no agent fields: they meant every agent.
    #[serde(default = "every_agent")]
    pub all_agents: bool,
    #[serde(default)]
    pub agent_ids: Vec<i64>,
    /// Older snapshots have no labels: they were served by all or by chosen agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

fn every_agent() -> bool {
    true
}

impl Vhost {
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            domain: self.domain.clone(),
            template: self.template.clone(),
            params: self.params.clone(),
            config: self.config.clone(),
            enabled: self.enabled,
            owner_id: self.owner_id,
            all_agents: self.all_agents,
            agent_ids: self.agent_ids.clone(),
            labels: self.labels.clone(),
        }
    }
}

const COLUMNS: &str = "id, domain, template, params, config, enabled, owner_id, created_at, updated_at, all_agents, labels";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Vhost> {
    Ok(Vhost {
        id: r.get(0)?,
        domain: r.get(1)?,
        template: r.get(2)?,
        params: r.get(3)?,
        config: r.get(4)?,
        enabled: r.get(5)?,
        owner_id: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        all_agents: r.get(9)?,
        agent_ids: Vec::new(),
        labels: crate::domain::labels::stored(&r.get::<_, String>(10)?),
    })
}

/// Fills in `agent_ids` for vhosts limited to chosen agents, in one query.
fn with_agents(conn: &Connection, mut list: Vec<Vhost>) -> Result<Vec<Vhost>, DbError> {
    if list.iter().all(|v| v.all_agents) {
        return Ok(list);
    }
    let mut stmt = conn.prepare("SELECT vhost_id, agent_id FROM vhost_agents ORDER BY agent_id")?;
    let pairs: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for v in list.iter_mut().filter(|v| !v.all_agents) {
        v.agent_ids = pairs
            .iter()
            .filter(|(vid, _)| *vid == v.id)
            .map(|(_, a)| *a)
            .collect();
    }
    Ok(list)
}

fn set_agents(conn: &Connection, id: i64, s: &Snapshot) -> Result<(), DbError> {
    conn.execute("DELETE FROM vhost_agents WHERE vhost_id = ?1", [id])?;
    if !s.all_agents {
        let mut stmt = conn.prepare(
            "INSERT OR IGNORE INTO vhost_agents (vhost_id, agent_id)
             SELECT ?1, id FROM agents WHERE id = ?2",
        )?;
        for agent in &s.agent_ids {
            stmt.execute(params![id, agent])?;
        }
    }
    Ok(())
}

/// A write that hit the unique domain.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("another site already uses this domain")]
    DomainTaken,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn map_unique(e: rusqlite::Error) -> WriteError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            WriteError::DomainTaken
        }
        e => WriteError::Db(e.into()),
    }
}

pub fn insert(conn: &Connection, s: &Snapshot) -> Result<i64, WriteError> {
    let t = now();
    conn.execute(
        "INSERT INTO vhosts (domain, template, params, config, enabled, owner_id, created_at, updated_at, all_agents, labels)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9)",
        params![s.domain, s.template, s.params, s.config, s.enabled, s.owner_id, t, s.all_agents, crate::domain::labels::join(&s.labels)],
    )
    .map_err(map_unique)?;
    let id = conn.last_insert_rowid();
    set_agents(conn, id, s)?;
    Ok(id)
}

/// Overwrites a vhost with `s`; false when it no longer exists.
pub(crate) fn update(conn: &Connection, id: i64, s: &Snapshot) -> Result<bool, WriteError> {
    let n = conn
        .execute(
            "UPDATE vhosts SET domain = ?2, template = ?3, params = ?4, config = ?5, enabled = ?6,
                    owner_id = ?7, updated_at = ?8, all_agents = ?9, labels = ?10 WHERE id = ?1",
            params![
                id,
                s.domain,
                s.template,
                s.params,
                s.config,
                s.enabled,
                s.owner_id,
                now(),
                s.all_agents,
                crate::domain::labels::join(&s.labels)
            ],
        )
        .map_err(map_unique)?;
    // Which agents serve it is part of the site: an edit may change it too.
    if n == 1 {
        set_agents(conn, id, s)?;
    }
    Ok(n == 1)
}

pub(crate) fn set_enabled(conn: &Connection, id: i64, enabled: bool) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE vhosts SET enabled = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, enabled, now()],
    )?;
    Ok(n == 1)
}

pub(crate) fn delete(conn: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM vhosts WHERE id = ?1", [id])? == 1)
}

pub fn find(conn: &Connection, id: i64) -> Result<Option<Vhost>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM vhosts WHERE id = ?1");
    let found = conn.query_row(&sql, [id], from_row).optional()?;
    Ok(with_agents(conn, found.into_iter().collect())?.pop())
}

pub fn find_by_domain(conn: &Connection, domain: &str) -> Result<Option<Vhost>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM vhosts WHERE domain = ?1");
    let found = conn.query_row(&sql, [domain], from_row).optional()?;
    Ok(with_agents(conn, found.into_iter().collect())?.pop())
}

/// Which vhosts a list shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this owner's (a `user` always gets their own id here).
    pub owner_id: Option<i64>,
    /// Some(true): enabled only; Some(false): disabled only.
    pub enabled: Option<bool>,
    /// Substring of the domain, case-insensitive.
    pub search: Option<String>,
}

/// Sorted by domain, the order Caddy receives them in.
pub fn list(conn: &Connection, f: &Filter) -> Result<Vec<Vhost>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM vhosts
         WHERE (?1 IS NULL OR owner_id = ?1)
           AND (?2 IS NULL OR enabled = ?2)
           AND (?3 IS NULL OR instr(domain, lower(?3)) > 0)
         ORDER BY domain"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt
        .query_map(params![f.owner_id, f.enabled, f.search], from_row)?
        .collect::<Result<_, _>>()?;
    with_agents(conn, rows)
}

/// Every enabled vhost, sorted by domain: the input of the Caddyfile renderer.
pub(crate) fn enabled(conn: &Connection) -> Result<Vec<Vhost>, DbError> {
    list(
        conn,
        &Filter {
            enabled: Some(true),
            ..Filter::default()
        },
    )
}

pub(crate) fn counts(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(enabled), 0), coalesce(sum(1 - enabled), 0) FROM vhosts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// The sites whose domain contains `needle`, as (id, domain, owner), leaving out those of
/// `owner` and the site `except`: the candidates an overlap check then judges.
pub(crate) fn containing(
    conn: &Connection,
    needle: &str,
    owner: Option<i64>,
    except: Option<i64>,
) -> Result<Vec<(i64, String, Option<i64>)>, DbError> {
    let mut stmt = conn.prepare(
        "SELECT id, domain, owner_id FROM vhosts
         WHERE instr(domain, ?1) > 0 AND owner_id IS NOT ?2 AND id IS NOT ?3
         ORDER BY domain",
    )?;
    let rows = stmt.query_map(rusqlite::params![needle, owner, except], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
