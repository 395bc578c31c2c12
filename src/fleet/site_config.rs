//! Turns sites and the `[caddy]` settings into Caddyfile text: a single site block for the
//! live preview and the changelog diff, or the whole file an agent's Caddy loads. It reads
//! sites as [`Site`]s (an address, a stored body, and who serves it), so a site that is not
//! stored yet, like the one being previewed, needs no database row.

use crate::config::{CADDY_DEFAULT_ADMIN, CaddyConfig};
use crate::db::agents::Agent;
use crate::db::vhosts::Vhost;
use crate::domain::caddyfile::{
    AccessLog, BodyPolicy, CaddyfileBody, GlobalOptions, SiteBlock, config_hash, render,
    render_site,
};

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn global_options(c: &CaddyConfig) -> GlobalOptions {
    GlobalOptions {
        admin: (c.admin != CADDY_DEFAULT_ADMIN).then(|| c.admin.clone()),
        email: non_empty(&c.acme_email),
        caddy_log: non_empty(&c.log),
        // Addresses were checked as IPs when the config was read, so this always parses.
        extra: (!c.default_bind.is_empty())
            .then(|| {
                let line = format!("default_bind {}", c.default_bind.join(" "));
                CaddyfileBody::parse(&line, &BodyPolicy::admin()).ok()
            })
            .flatten(),
    }
}

pub(crate) fn access_log(c: &CaddyConfig) -> AccessLog {
    AccessLog {
        path: c.access_log.clone(),
        roll_size_mb: c.access_log_roll_size_mb,
        roll_keep: c.access_log_roll_keep,
    }
}

/// Exactly the block one site contributes to the Caddyfile, access log switch included.
pub(crate) fn site_block(address: &str, body: &CaddyfileBody) -> String {
    render_site(&SiteBlock { address, body }, true)
}

/// The block of one site without Gatehouse's own access-log switch: what a `user`'s site is
/// judged on (see [`crate::tenancy::judge`]), so that only the user's own lines are judged.
pub fn judged_block(address: &str, body: &CaddyfileBody) -> String {
    render_site(&SiteBlock { address, body }, false)
}

/// A stored body, parsed again (it was validated and normalised when it was saved).
pub(crate) fn stored_body(config: &str) -> Option<CaddyfileBody> {
    CaddyfileBody::parse_stored(config, &BodyPolicy::admin()).ok()
}

/// One site as the Caddyfile holds it: its address, its stored body, whether it is served,
/// and by which agents (None: by every agent).
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    pub(crate) domain: &'a str,
    pub(crate) config: &'a str,
    pub(crate) enabled: bool,
    pub(crate) agents: Option<&'a [i64]>,
}

impl<'a> Site<'a> {
    /// A site served by every agent, as a preview asks a Caddy about it.
    pub(crate) fn everywhere(domain: &'a str, config: &'a str) -> Self {
        Self {
            domain,
            config,
            enabled: true,
            agents: None,
        }
    }

    fn served_by(&self, agent: i64) -> bool {
        self.agents.is_none_or(|ids| ids.contains(&agent))
    }
}

impl<'a> From<&'a Vhost> for Site<'a> {
    fn from(v: &'a Vhost) -> Self {
        Self {
            domain: &v.domain,
            config: &v.config,
            enabled: v.enabled,
            agents: (!v.all_agents).then_some(v.agent_ids.as_slice()),
        }
    }
}

impl<'a> From<&'a Site<'a>> for Site<'a> {
    fn from(s: &'a Site<'a>) -> Self {
        *s
    }
}

/// Where one agent's Caddy listens for its admin API and writes its access log, as the
/// agent reported them; the configured defaults until it has.
pub(crate) struct Target<'a> {
    pub(crate) admin: &'a str,
    pub(crate) access_log: &'a str,
}

/// The Caddyfile agent `agent` must run: the enabled sites it serves, with its own admin
/// address and access log. Returns the text and its hash.
pub fn for_agent<'a, S: Into<Site<'a>>>(
    c: &CaddyConfig,
    agent: &Agent,
    sites: impl IntoIterator<Item = S>,
) -> (String, String) {
    let mine = sites
        .into_iter()
        .map(Into::into)
        .filter(|s: &Site<'a>| s.served_by(agent.id));
    Parsed::new(mine).for_agent(c, agent)
}

/// The whole Caddyfile for `sites` (only the enabled ones are served), and its hash.
pub fn whole<'a, S: Into<Site<'a>>>(
    c: &CaddyConfig,
    sites: impl IntoIterator<Item = S>,
) -> (String, String) {
    let target = Target {
        admin: &c.admin,
        access_log: &c.access_log,
    };
    Parsed::new(sites).render(c, &target, None)
}

/// The enabled sites with their stored bodies parsed, so that many agents' Caddyfiles are
/// rendered from one parse: a deploy parses each body once, not once per agent.
pub(crate) struct Parsed<'a>(Vec<(Site<'a>, CaddyfileBody)>);

impl<'a> Parsed<'a> {
    pub(crate) fn new<S: Into<Site<'a>>>(sites: impl IntoIterator<Item = S>) -> Self {
        let parsed = sites
            .into_iter()
            .map(Into::into)
            .filter(|s: &Site<'a>| s.enabled)
            .filter_map(|s| match stored_body(s.config) {
                Some(body) => Some((s, body)),
                None => {
                    tracing::error!(domain = %s.domain, "stored site body no longer parses; left out");
                    None
                }
            })
            .collect();
        Self(parsed)
    }

    /// What [`for_agent`] renders for `agent` from these sites.
    pub(crate) fn for_agent(&self, c: &CaddyConfig, agent: &Agent) -> (String, String) {
        let target = Target {
            admin: agent.caddy_admin.as_deref().unwrap_or(&c.admin),
            access_log: agent.access_log.as_deref().unwrap_or(&c.access_log),
        };
        self.render(c, &target, Some(agent.id))
    }

    /// The Caddyfile of the sites `agent` serves (all of them for `None`), and its hash.
    fn render(&self, c: &CaddyConfig, target: &Target<'_>, agent: Option<i64>) -> (String, String) {
        let sites: Vec<SiteBlock<'_>> = self
            .0
            .iter()
            .filter(|(s, _)| agent.is_none_or(|id| s.served_by(id)))
            .map(|(s, body)| SiteBlock {
                address: s.domain,
                body,
            })
            .collect();
        let mut global = global_options(c);
        global.admin = (target.admin != CADDY_DEFAULT_ADMIN).then(|| target.admin.to_string());
        let log = AccessLog {
            path: target.access_log.to_string(),
            ..access_log(c)
        };
        let text = render(&global, &sites, Some(&log));
        let hash = config_hash(&text);
        (text, hash)
    }
}
