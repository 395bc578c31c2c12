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
}

impl Vhost {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            domain: self.domain.clone(),
            template: self.template.clone(),
            params: self.params.clone(),
            config: self.config.clone(),
            enabled: self.enabled,
            owner_id: self.owner_id,
        }
    }
}

const COLUMNS: &str =
    "id, domain, template, params, config, enabled, owner_id, created_at, updated_at";

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
    })
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
        "INSERT INTO vhosts (domain, template, params, config, enabled, owner_id, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![s.domain, s.template, s.params, s.config, s.enabled, s.owner_id, t],
    )
    .map_err(map_unique)?;
    Ok(conn.last_insert_rowid())
}

/// Overwrites a vhost with `s`; false when it no longer exists.
pub fn update(conn: &Connection, id: i64, s: &Snapshot) -> Result<bool, WriteError> {
    let n = conn
        .execute(
            "UPDATE vhosts SET domain = ?2, template = ?3, params = ?4, config = ?5, enabled = ?6,
                    owner_id = ?7, updated_at = ?8 WHERE id = ?1",
            params![
                id,
                s.domain,
                s.template,
                s.params,
                s.config,
                s.enabled,
                s.owner_id,
                now()
            ],
        )
        .map_err(map_unique)?;
    Ok(n == 1)
}

pub fn set_enabled(conn: &Connection, id: i64, enabled: bool) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE vhosts SET enabled = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, enabled, now()],
    )?;
    Ok(n == 1)
}

pub fn delete(conn: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM vhosts WHERE id = ?1", [id])? == 1)
}

pub fn find(conn: &Connection, id: i64) -> Result<Option<Vhost>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM vhosts WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn find_by_domain(conn: &Connection, domain: &str) -> Result<Option<Vhost>, DbError> {
    let sql = format!("SELECT {COLUMNS} FROM vhosts WHERE domain = ?1");
    Ok(conn.query_row(&sql, [domain], from_row).optional()?)
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
    Ok(rows)
}

/// Every enabled vhost, sorted by domain: the input of the Caddyfile renderer.
pub fn enabled(conn: &Connection) -> Result<Vec<Vhost>, DbError> {
    list(
        conn,
        &Filter {
            enabled: Some(true),
            ..Filter::default()
        },
    )
}

pub fn counts(conn: &Connection) -> Result<(i64, i64), DbError> {
    Ok(conn.query_row(
        "SELECT coalesce(sum(enabled), 0), coalesce(sum(1 - enabled), 0) FROM vhosts",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}
