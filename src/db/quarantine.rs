//! The `quarantine` table: the sites set aside on an agent because its Caddy refuses them
//! (see [`crate::fleet::quarantine`]), with Caddy's message and the body line it names.

use super::DbError;
use rusqlite::{Connection, Row, params};

/// How a site was found to be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Caddy refused the site's block on its own: the message is about its lines only.
    Alone,
    /// Only together with the rest of the agent's config (found by bisecting): the message
    /// may name other sites, so only admins see it.
    Together,
}

impl Found {
    fn as_str(self) -> &'static str {
        match self {
            Found::Alone => "alone",
            Found::Together => "together",
        }
    }
}

/// One site set aside on one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub vhost_id: i64,
    pub domain: String,
    pub owner_id: Option<i64>,
    pub agent_id: i64,
    pub agent: String,
    /// Caddy's message, with its line named relative to the site's body.
    pub error: String,
    /// The line of the site's body Caddy named (1 is the first), when it named one in it.
    pub body_line: Option<i64>,
    pub found: Found,
    pub created_at: i64,
}

/// A site to set aside, as the finder reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub vhost_id: i64,
    pub error: String,
    pub body_line: Option<i64>,
    pub found: Found,
}

const SELECT: &str = "SELECT q.vhost_id, v.domain, v.owner_id, q.agent_id, a.name, q.error,
        q.body_line, q.found, q.created_at
    FROM quarantine q JOIN vhosts v ON v.id = q.vhost_id JOIN agents a ON a.id = q.agent_id";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        vhost_id: r.get(0)?,
        domain: r.get(1)?,
        owner_id: r.get(2)?,
        agent_id: r.get(3)?,
        agent: r.get(4)?,
        error: r.get(5)?,
        body_line: r.get(6)?,
        found: if r.get::<_, String>(7)? == "alone" {
            Found::Alone
        } else {
            Found::Together
        },
        created_at: r.get(8)?,
    })
}

/// Sets `refusal`'s site aside on `agent`, or updates why. Returns whether it is new there.
pub fn set(conn: &Connection, agent: i64, refusal: &Refusal) -> Result<bool, DbError> {
    let known: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM quarantine WHERE vhost_id = ?1 AND agent_id = ?2)",
        params![refusal.vhost_id, agent],
        |r| r.get(0),
    )?;
    conn.execute(
        "INSERT INTO quarantine (vhost_id, agent_id, error, body_line, found)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (vhost_id, agent_id) DO UPDATE
         SET error = excluded.error, body_line = excluded.body_line, found = excluded.found",
        params![
            refusal.vhost_id,
            agent,
            refusal.error,
            refusal.body_line,
            refusal.found.as_str()
        ],
    )?;
    Ok(!known)
}

/// Brings `vhost` back on every agent; returns how many agents had it set aside.
pub fn release(conn: &Connection, vhost: i64) -> Result<usize, DbError> {
    Ok(conn.execute("DELETE FROM quarantine WHERE vhost_id = ?1", [vhost])?)
}

/// Every site set aside, by domain then agent.
pub fn list(conn: &Connection) -> Result<Vec<Entry>, DbError> {
    let mut stmt = conn.prepare(&format!("{SELECT} ORDER BY v.domain, a.name"))?;
    let rows = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Where `vhost` is set aside, by agent name.
pub fn for_site(conn: &Connection, vhost: i64) -> Result<Vec<Entry>, DbError> {
    let mut stmt = conn.prepare(&format!("{SELECT} WHERE q.vhost_id = ?1 ORDER BY a.name"))?;
    let rows = stmt
        .query_map([vhost], from_row)?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}
