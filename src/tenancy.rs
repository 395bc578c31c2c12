//! The tenant policy in force (config file, then the Settings page) and the judgement of a
//! `user`'s site by a real Caddy: the agent adapts the site alone, and
//! [`crate::domain::tenant::judge`] reads what Caddy would run.

use std::net::IpAddr;
use std::time::Duration;

use rusqlite::Connection;

use crate::config::{Config, VhostsConfig};
use crate::db::agents::Agent;
use crate::db::{Db, DbError};
use crate::domain::tenant::{self, Refusal, Reserved, ReservedHost, TenantPolicy};
pub use crate::domain::tenant_lists::{ListKey, Lists, Parsed};
use crate::fleet::Fleet;
use crate::fleet::client::{self, Adaptation};

/// The lists in force: the Settings page's once saved, the config file's before.
pub fn lists(conn: &Connection, config: &VhostsConfig) -> Result<Lists, DbError> {
    let mut lists = config.tenant_lists();
    for key in ListKey::ALL {
        if let Some(items) = crate::db::settings::list(conn, key.setting())? {
            lists.from_settings = true;
            match key {
                ListKey::Networks => lists.networks = items,
                ListKey::UpstreamHosts => lists.upstream_hosts = items,
                ListKey::UnixSockets => lists.unix_sockets = items,
            }
        }
    }
    Ok(lists)
}

/// Stores the lists from the Settings page (already parsed, so known to be valid).
pub fn save_lists(conn: &Connection, lists: &Lists) -> Result<(), DbError> {
    for key in ListKey::ALL {
        let items: Vec<&str> = lists
            .get(key)
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        crate::db::settings::put_list(conn, key.setting(), &items)?;
    }
    Ok(())
}

/// `host:port` (or `[v6]:port`, or `:port`) of an authority; None for a unix socket.
fn host_port(authority: &str) -> Option<(String, u16)> {
    let authority = authority.trim();
    if authority.starts_with("unix/") {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once("]:")?,
        None => authority.rsplit_once(':')?,
    };
    Some((host.to_ascii_lowercase(), port.parse().ok()?))
}

fn reserve(out: &mut Vec<Reserved>, host: &str, port: u16, what: &str) {
    let mut add = |host: ReservedHost| {
        out.push(Reserved {
            host,
            port,
            what: what.to_string(),
        })
    };
    // Whatever address it names, the same port on loopback may reach it on its own host.
    add(ReservedHost::Loopback);
    match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => add(ReservedHost::Ip(ip)),
        Ok(_) => {}
        Err(_) if host.is_empty() || host == "localhost" => {}
        Err(_) => add(ReservedHost::Name(host.trim_end_matches('.').to_string())),
    }
}

/// The addresses of Gatehouse's own parts and of every Caddy admin endpoint: never dialled
/// by a user's site, whatever networks are open. An agent named by a host name is looked up,
/// briefly, so that its addresses are closed too.
pub async fn reserved(config: &Config, agents: &[Agent]) -> Vec<Reserved> {
    let mut out = Vec::new();
    let hub = config.listen;
    reserve(
        &mut out,
        &hub.ip().to_string(),
        hub.port(),
        "the Gatehouse hub",
    );
    if let Ok(url) = reqwest::Url::parse(&config.public_url)
        && let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default())
    {
        reserve(
            &mut out,
            host.trim_matches(['[', ']']),
            port,
            "the Gatehouse hub",
        );
    }
    // Caddy's own sites: proxying to them from loopback would reach another site as a local
    // client (past its `remote_ip` limits), with any Host header.
    let site_ports: Vec<u16> = [80, 443]
        .into_iter()
        .chain(config.vhosts.user_ports.iter().copied())
        .collect();
    for port in &site_ports {
        reserve(&mut out, "", *port, "Caddy's own sites");
    }
    let admins = std::iter::once(config.caddy.admin.as_str())
        .chain(agents.iter().filter_map(|a| a.caddy_admin.as_deref()));
    let admin_ports: Vec<(String, u16)> = admins.filter_map(host_port).collect();
    for (host, port) in &admin_ports {
        reserve(&mut out, host, *port, "a Caddy admin endpoint");
    }
    for agent in agents {
        let Ok(url) = reqwest::Url::parse(&agent.url) else {
            continue;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            continue;
        };
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let what = format!("the agent {}", agent.name);
        reserve(&mut out, &host, port, &what);
        let mut ips: Vec<IpAddr> = host.parse().into_iter().collect();
        if ips.is_empty() {
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            if let Ok(Ok(found)) = tokio::time::timeout(Duration::from_secs(1), lookup).await {
                ips.extend(found.map(|a| a.ip()));
            }
        }
        // The agent's host also runs its Caddy: its admin endpoint may listen there too.
        for ip in ips {
            out.push(Reserved {
                host: ReservedHost::Ip(ip),
                port,
                what: what.clone(),
            });
            for (_, admin_port) in &admin_ports {
                out.push(Reserved {
                    host: ReservedHost::Ip(ip),
                    port: *admin_port,
                    what: "a Caddy admin endpoint".into(),
                });
            }
            for port in &site_ports {
                out.push(Reserved {
                    host: ReservedHost::Ip(ip),
                    port: *port,
                    what: "Caddy's own sites".into(),
                });
            }
            // A hub on every interface may share the agent's host.
            if hub.ip().is_unspecified() {
                out.push(Reserved {
                    host: ReservedHost::Ip(ip),
                    port: hub.port(),
                    what: "the Gatehouse hub".into(),
                });
            }
        }
    }
    // One line per address: the first reason found names it.
    let mut seen: Vec<(ReservedHost, u16)> = Vec::new();
    out.retain(|r| {
        let key = (r.host.clone(), r.port);
        let new = !seen.contains(&key);
        seen.push(key);
        new
    });
    out
}

/// The whole policy for users' sites, as it stands now.
pub async fn policy(db: &Db, config: &Config) -> Result<(TenantPolicy, Vec<Agent>), DbError> {
    let vhosts = config.vhosts.clone();
    let (lists, agents) = db
        .run(move |c| Ok((lists(c, &vhosts)?, crate::db::agents::list(c)?)))
        .await?;
    // Stored lists were checked when saved; a bad entry (edited by hand) opens nothing.
    let parsed = lists.parse().unwrap_or_else(|(key, why)| {
        tracing::error!(list = key.config_key(), %why, "tenant policy list is invalid; treating every list as empty");
        Parsed::default()
    });
    let policy = TenantPolicy {
        networks: parsed.networks,
        upstream_hosts: parsed.upstream_hosts,
        unix_sockets: parsed.unix_sockets,
        // An address without a port listens on 443 (or 80), which is always allowed.
        ports: [80, 443]
            .into_iter()
            .chain(config.vhosts.user_ports.iter().copied())
            .collect(),
        root_base: config.vhosts.user_root_base.clone(),
        reserved: reserved(config, &agents).await,
    };
    Ok((policy, agents))
}

/// What a Caddy made of a `user`'s site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Refused(Vec<Refusal>),
    /// Caddy's adapter itself refuses the site, in its own words.
    Invalid(String),
    /// No Caddy could be asked.
    Unavailable(String),
}

/// How long one agent may take to adapt one site.
const ADAPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Agents asked before giving up, when the first ones cannot answer.
const ADAPT_TRIES: usize = 3;

/// Has an online agent's Caddy adapt `block` (one site, as [`crate::fleet::site_config::judged_block`]
/// writes it), or when none answers the hub's own `caddy` (`vhosts.caddy_binary`), and judges
/// the result for `site_host`.
pub async fn judge(
    db: &Db,
    fleet: &Fleet,
    config: &Config,
    block: &str,
    site_host: &str,
) -> Result<Verdict, DbError> {
    let (policy, agents) = policy(db, config).await?;
    let mut last_error = None;
    for agent in agents
        .iter()
        .filter(|a| a.online && a.caddy_reachable)
        .take(ADAPT_TRIES)
    {
        match client::adapt(fleet, agent, block, ADAPT_TIMEOUT).await {
            Adaptation::Adapted(json) => {
                let refusals = tenant::judge(&json, site_host, &policy);
                return Ok(if refusals.is_empty() {
                    Verdict::Allowed
                } else {
                    Verdict::Refused(refusals)
                });
            }
            Adaptation::Invalid { error } => return Ok(Verdict::Invalid(error)),
            Adaptation::Unavailable { error } => {
                tracing::warn!(agent = %agent.name, %error, "could not adapt a user's site");
                last_error = Some(format!("{}: {error}", agent.name));
            }
        }
    }
    if !config.vhosts.caddy_binary.is_empty() {
        match local_adapt(&config.vhosts.caddy_binary, block).await {
            Ok(Adaptation::Adapted(json)) => {
                let refusals = tenant::judge(&json, site_host, &policy);
                return Ok(if refusals.is_empty() {
                    Verdict::Allowed
                } else {
                    Verdict::Refused(refusals)
                });
            }
            Ok(Adaptation::Invalid { error }) => return Ok(Verdict::Invalid(error)),
            Ok(Adaptation::Unavailable { error }) | Err(error) => {
                tracing::warn!(%error, "the hub's own caddy could not adapt a user's site");
                last_error.get_or_insert(error);
            }
        }
    }
    let why = match last_error {
        Some(e) => format!("no Caddy could answer ({e})"),
        None => "no agent with a running Caddy is online".to_string(),
    };
    Ok(Verdict::Unavailable(format!(
        "A site of a user is saved only after a Caddy has checked what it would do, and {why}. \
         Try again once an agent is online."
    )))
}

/// An enabled site owned by a `user` that breaks the policy as it stands now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    pub id: i64,
    pub domain: String,
    pub owner: String,
    pub why: String,
}

/// What a review of users' sites found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Review {
    /// Every enabled site of a `user` that breaks the policy (none: all keep to it).
    Breaches(Vec<Breach>),
    /// No Caddy could judge, and why.
    Unavailable(String),
}

/// Judges every enabled site a `user` owns, as if it were saved now. The policy applies when
/// a site is saved, so closing a network, or upgrading from a version without this policy,
/// changes nothing already running by itself: this is how an admin finds what to fix.
pub async fn review(db: &Db, fleet: &Fleet, config: &Config) -> Result<Review, DbError> {
    let (sites, owners) = db
        .run(|c| Ok((crate::db::vhosts::enabled(c)?, crate::db::users::list(c)?)))
        .await?;
    let mut breaches = Vec::new();
    for site in sites {
        let Some(owner) = owners
            .iter()
            .find(|u| Some(u.id) == site.owner_id && !u.is_admin())
        else {
            continue;
        };
        let (Ok(address), Some(body)) = (
            crate::domain::vhost::SiteAddress::parse(&site.domain),
            crate::fleet::site_config::stored_body(&site.config),
        ) else {
            continue;
        };
        let block = crate::fleet::site_config::judged_block(address.as_str(), &body);
        let why = match judge(db, fleet, config, &block, address.host()).await? {
            Verdict::Allowed => continue,
            Verdict::Refused(refusals) => refusals
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            Verdict::Invalid(error) => format!("Caddy refuses it: {error}"),
            Verdict::Unavailable(why) => return Ok(Review::Unavailable(why)),
        };
        breaches.push(Breach {
            id: site.id,
            domain: site.domain,
            owner: owner.email.clone(),
            why,
        });
    }
    Ok(Review::Breaches(breaches))
}

/// `caddy adapt` on the hub's own machine, for when no agent's Caddy answers: the JSON is
/// Caddy's own, whichever Caddy reads it. Nothing is loaded and nothing is written.
async fn local_adapt(binary: &str, block: &str) -> Result<Adaptation, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(binary)
        .args(["adapt", "--config", "/dev/stdin", "--adapter", "caddyfile"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {binary}: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    stdin
        .write_all(block.as_bytes())
        .await
        .map_err(|e| format!("{binary}: {e}"))?;
    drop(stdin);
    let output = tokio::time::timeout(ADAPT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{binary} adapt did not finish in time"))?
        .map_err(|e| format!("{binary}: {e}"))?;
    if !output.status.success() {
        let error = String::from_utf8_lossy(&output.stderr);
        let error = error
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Error: "))
            .unwrap_or_else(|| error.trim())
            .replace("/dev/stdin", "Caddyfile");
        return Ok(Adaptation::Invalid { error });
    }
    serde_json::from_slice(&output.stdout)
        .map(Adaptation::Adapted)
        .map_err(|e| format!("{binary} adapt printed no JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_every_kind_of_entry_and_name_the_bad_one() {
        let lists = Lists {
            networks: vec!["10.0.0.0/8".into(), " 192.168.1.5 ".into(), "".into()],
            upstream_hosts: vec!["*.svc.example".into()],
            unix_sockets: vec!["unix//run/php/fpm.sock".into()],
            from_settings: true,
        };
        let parsed = lists.parse().unwrap();
        assert_eq!(parsed.networks.len(), 2);
        assert_eq!(parsed.unix_sockets, vec!["/run/php/fpm.sock".to_string()]);
        let bad = Lists {
            unix_sockets: vec!["/run/../var/run/docker.sock".into()],
            ..lists.clone()
        };
        assert_eq!(bad.parse().unwrap_err().0, ListKey::UnixSockets);
        let bad = Lists {
            networks: vec!["169.254.169.254".into()],
            ..lists
        };
        assert_eq!(bad.parse().unwrap_err().0, ListKey::Networks);
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            host_port("localhost:2019"),
            Some(("localhost".into(), 2019))
        );
        assert_eq!(host_port("[::1]:2019"), Some(("::1".into(), 2019)));
        assert_eq!(host_port(":2019"), Some(("".into(), 2019)));
        assert_eq!(host_port("unix//run/caddy.sock"), None);
    }

    #[test]
    fn a_named_admin_endpoint_is_closed_on_loopback_and_by_name() {
        let mut out = Vec::new();
        reserve(&mut out, "caddy-admin.internal", 2019, "x");
        assert!(
            out.iter()
                .any(|r| r.host == ReservedHost::Loopback && r.port == 2019)
        );
        assert!(
            out.iter()
                .any(|r| r.host == ReservedHost::Name("caddy-admin.internal".into()))
        );
    }
}
