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

/// Which agents serve a site, as [`Site`] holds it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Serve<'a> {
    All,
    /// These agents, by id.
    Only(&'a [i64]),
    /// The agents carrying any of these labels.
    Labels(&'a [String]),
}

/// One site as the Caddyfile holds it: its address, its stored body, whether it is served,
/// and by which agents.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The stored site's id; None for one not stored yet.
    pub(crate) id: Option<i64>,
    pub(crate) domain: &'a str,
    pub(crate) config: &'a str,
    pub(crate) enabled: bool,
    pub(crate) agents: Serve<'a>,
}

impl<'a> Site<'a> {
    /// A site served by every agent, as a preview asks a Caddy about it.
    pub(crate) fn everywhere(domain: &'a str, config: &'a str) -> Self {
        Self {
            id: None,
            domain,
            config,
            enabled: true,
            agents: Serve::All,
        }
    }

    pub(crate) fn served_by(&self, agent: &Agent) -> bool {
        match self.agents {
            Serve::All => true,
            Serve::Only(ids) => ids.contains(&agent.id),
            Serve::Labels(labels) => labels.iter().any(|l| agent.labels.contains(l)),
        }
    }

    /// Whether `agent`'s Caddyfile holds this site: it serves it, and has not set it aside
    /// (see [`crate::fleet::quarantine`]). Disabled sites are left out when rendering.
    pub(crate) fn rendered_for(&self, agent: &Agent) -> bool {
        self.served_by(agent) && self.id.is_none_or(|id| !agent.quarantined.contains(&id))
    }
}

impl<'a> From<&'a Vhost> for Site<'a> {
    fn from(v: &'a Vhost) -> Self {
        Self {
            id: Some(v.id),
            domain: &v.domain,
            config: &v.config,
            enabled: v.enabled,
            agents: if v.all_agents {
                Serve::All
            } else if !v.labels.is_empty() {
                Serve::Labels(&v.labels)
            } else {
                Serve::Only(&v.agent_ids)
            },
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

/// The Caddyfile agent `agent` must run: the enabled sites it serves, except those set aside
/// on it because its Caddy refuses them, with its own admin address and access log. Returns
/// the text and its hash.
pub fn for_agent<'a, S: Into<Site<'a>>>(
    c: &CaddyConfig,
    agent: &Agent,
    sites: impl IntoIterator<Item = S>,
) -> (String, String) {
    Parsed::new(sites).for_agent(c, agent)
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
        self.render(c, &target, Some(agent))
    }

    /// The Caddyfile of the sites `agent` holds (see [`Site::rendered_for`]; all of them for
    /// `None`), and its hash.
    fn render(
        &self,
        c: &CaddyConfig,
        target: &Target<'_>,
        agent: Option<&Agent>,
    ) -> (String, String) {
        let sites: Vec<SiteBlock<'_>> = self
            .0
            .iter()
            .filter(|(s, _)| agent.is_none_or(|a| s.rendered_for(a)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn site(id: i64, domain: &str, all: bool, ids: &[i64], labels: &[&str]) -> Vhost {
        Vhost {
            id,
            domain: domain.into(),
            template: "raw".into(),
            params: "{}".into(),
            config: "respond \"hi\"".into(),
            enabled: true,
            owner_id: None,
            all_agents: all,
            agent_ids: ids.to_vec(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            created_at: 0,
            updated_at: 0,
        }
    }

    fn agent(id: i64, labels: &[&str]) -> Agent {
        Agent {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            ..Agent::test(id)
        }
    }

    /// The sites whose blocks `agent`'s Caddyfile holds.
    fn served(agent: &Agent, sites: &[Vhost]) -> Vec<String> {
        let (text, _) = for_agent(&CaddyConfig::default(), agent, sites);
        sites
            .iter()
            .filter(|s| text.contains(&format!("{} {{", s.domain)))
            .map(|s| s.domain.clone())
            .collect()
    }

    #[test]
    fn a_site_served_by_label_is_rendered_only_on_agents_carrying_it() {
        let sites = [
            site(1, "all.test", true, &[], &[]),
            site(2, "eu.test", false, &[], &["eu"]),
            site(3, "chosen.test", false, &[3], &[]),
            site(4, "eu-or-us.test", false, &[], &["eu", "us"]),
        ];
        assert_eq!(
            served(&agent(1, &["canary", "eu"]), &sites),
            ["all.test", "eu.test", "eu-or-us.test"]
        );
        assert_eq!(
            served(&agent(2, &["us"]), &sites),
            ["all.test", "eu-or-us.test"]
        );
        assert_eq!(
            served(&agent(3, &[]), &sites),
            ["all.test", "chosen.test"],
            "an agent without labels serves no site by label"
        );
    }
}
