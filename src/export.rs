//! Export: the Caddyfile one agent runs (or the whole one), and a JSON document of every
//! vhost, the non-secret settings and the agents. Agent tokens are secrets and are never
//! written; nothing else the export holds is (TLS pins and CA certificates are public).

use crate::config::Config;
use crate::db::agents::{self, Agent};
use crate::db::users;
use crate::db::vhosts::{self, Vhost};
use crate::db::{DbError, now};
use crate::fleet::site_config;
use rusqlite::Connection;
use serde::Serialize;

/// Version of the JSON layout; bumped when a field changes meaning.
pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Export {
    pub gatehouse_export: u32,
    pub exported_at: i64,
    pub settings: Settings,
    pub agents: Vec<AgentOut>,
    pub vhosts: Vec<VhostOut>,
}

/// The config-file settings that shape the generated Caddyfiles.
#[derive(Debug, Serialize)]
pub struct Settings {
    pub caddy: crate::config::CaddyConfig,
    pub vhosts: crate::config::VhostsConfig,
}

/// An agent without its token.
#[derive(Debug, Serialize)]
pub struct AgentOut {
    pub id: i64,
    pub name: String,
    pub url: String,
    pub from_config: bool,
    pub tls_pin: Option<String>,
    pub tls_ca: Option<String>,
    pub caddy_version: Option<String>,
    pub caddy_admin: Option<String>,
    pub access_log: Option<String>,
    pub applied_hash: Option<String>,
    pub last_seen_at: Option<i64>,
}

impl From<&Agent> for AgentOut {
    fn from(a: &Agent) -> Self {
        AgentOut {
            id: a.id,
            name: a.name.clone(),
            // The export holds no secrets, and a password in an old agent URL is one.
            url: crate::domain::agent_url::redact(&a.url),
            from_config: a.from_config,
            tls_pin: a.tls_pin.clone(),
            tls_ca: a.tls_ca.clone(),
            caddy_version: a.caddy_version.clone(),
            caddy_admin: a.caddy_admin.clone(),
            access_log: a.access_log.clone(),
            applied_hash: a.applied_hash.clone(),
            last_seen_at: a.last_seen_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct VhostOut {
    pub id: i64,
    pub domain: String,
    pub template: String,
    /// The template's form values.
    pub params: serde_json::Value,
    /// The site block body.
    pub config: String,
    pub enabled: bool,
    pub owner_email: Option<String>,
    pub all_agents: bool,
    /// Names of the agents serving it when `all_agents` is false.
    pub agents: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Everything, read in one transaction so the parts agree.
pub fn json(conn: &mut Connection, config: &Config) -> Result<Export, DbError> {
    let tx = conn.transaction()?;
    let fleet = agents::list(&tx)?;
    let owners = users::list(&tx)?;
    let sites = vhosts::list(&tx, &vhosts::Filter::default())?;
    drop(tx);
    let name_of = |id: &i64| fleet.iter().find(|a| a.id == *id).map(|a| a.name.clone());
    let vhosts = sites
        .into_iter()
        .map(|v: Vhost| VhostOut {
            id: v.id,
            params: serde_json::from_str(&v.params)
                .unwrap_or(serde_json::Value::Object(Default::default())),
            owner_email: v
                .owner_id
                .and_then(|id| owners.iter().find(|u| u.id == id))
                .map(|u| u.email.clone()),
            agents: v.agent_ids.iter().filter_map(name_of).collect(),
            domain: v.domain,
            template: v.template,
            config: v.config,
            enabled: v.enabled,
            all_agents: v.all_agents,
            created_at: v.created_at,
            updated_at: v.updated_at,
        })
        .collect();
    Ok(Export {
        gatehouse_export: JSON_VERSION,
        exported_at: now(),
        settings: Settings {
            caddy: config.caddy.clone(),
            vhosts: config.vhosts.clone(),
        },
        agents: fleet.iter().map(AgentOut::from).collect(),
        vhosts,
    })
}

/// The Caddyfile agent `id` runs (its enabled vhosts, its admin address and access log):
/// the agent's name and the text. None when there is no such agent.
pub fn agent_caddyfile(
    conn: &Connection,
    config: &Config,
    id: i64,
) -> Result<Option<(String, String)>, DbError> {
    let Some(agent) = agents::find(conn, id)? else {
        return Ok(None);
    };
    let all = vhosts::list(conn, &vhosts::Filter::default())?;
    let (text, _) = site_config::for_agent(&config.caddy, &agent, &all);
    Ok(Some((agent.name, text)))
}

/// The same, finding the agent by name.
pub fn agent_caddyfile_by_name(
    conn: &Connection,
    config: &Config,
    name: &str,
) -> Result<Option<String>, DbError> {
    let Some(agent) = agents::list(conn)?.into_iter().find(|a| a.name == name) else {
        return Ok(None);
    };
    Ok(agent_caddyfile(conn, config, agent.id)?.map(|(_, text)| text))
}

/// The whole Caddyfile with the configured defaults, as the Caddyfile page shows it.
pub fn whole_caddyfile(conn: &Connection, config: &Config) -> Result<String, DbError> {
    let all = vhosts::enabled(conn)?;
    Ok(site_config::whole(&config.caddy, &all).0)
}
