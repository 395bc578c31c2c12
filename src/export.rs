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
pub(crate) const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub(crate) struct Export {
    pub(crate) gatehouse_export: u32,
    pub(crate) exported_at: i64,
    pub(crate) settings: Settings,
    pub(crate) agents: Vec<AgentOut>,
    pub(crate) vhosts: Vec<VhostOut>,
}

/// The config-file settings that shape the generated Caddyfiles.
#[derive(Debug, Serialize)]
pub(crate) struct Settings {
    pub(crate) caddy: crate::config::CaddyConfig,
    pub(crate) vhosts: crate::config::VhostsConfig,
}

/// An agent without its token.
#[derive(Debug, Serialize)]
pub(crate) struct AgentOut {
    pub(crate) id: i64,
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) from_config: bool,
    pub(crate) tls_pin: Option<String>,
    pub(crate) tls_ca: Option<String>,
    pub(crate) caddy_version: Option<String>,
    pub(crate) caddy_admin: Option<String>,
    pub(crate) access_log: Option<String>,
    pub(crate) applied_hash: Option<String>,
    pub(crate) last_seen_at: Option<i64>,
    pub(crate) labels: Vec<String>,
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
            labels: a.labels.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct VhostOut {
    pub(crate) id: i64,
    pub(crate) domain: String,
    pub(crate) template: String,
    /// The template's form values.
    pub(crate) params: serde_json::Value,
    /// The site block body.
    pub(crate) config: String,
    pub(crate) enabled: bool,
    pub(crate) owner_email: Option<String>,
    pub(crate) all_agents: bool,
    /// Names of the agents serving it when `all_agents` is false and no labels are given.
    pub(crate) agents: Vec<String>,
    /// Served by the agents carrying any of these labels (then `all_agents` is false).
    pub(crate) labels: Vec<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

/// Everything, read in one transaction so the parts agree.
pub(crate) fn json(conn: &mut Connection, config: &Config) -> Result<Export, DbError> {
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
            labels: v.labels,
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
pub(crate) fn agent_caddyfile_by_name(
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
pub(crate) fn whole_caddyfile(conn: &Connection, config: &Config) -> Result<String, DbError> {
    let all = vhosts::enabled(conn)?;
    Ok(site_config::whole(&config.caddy, &all).0)
}
