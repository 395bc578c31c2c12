//! Turns stored vhosts and the `[caddy]` settings into Caddyfile text: a single site block
//! for the live preview and the changelog diff, or the whole file an agent's Caddy loads.

use crate::config::{CADDY_DEFAULT_ADMIN, CaddyConfig};
use crate::db::vhosts::Vhost;
use crate::domain::caddyfile::{
    AccessLog, BodyPolicy, CaddyfileBody, GlobalOptions, SiteBlock, config_hash, render,
};

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

pub fn global_options(c: &CaddyConfig) -> GlobalOptions {
    GlobalOptions {
        admin: (c.admin != CADDY_DEFAULT_ADMIN).then(|| c.admin.clone()),
        email: non_empty(&c.acme_email),
        caddy_log: non_empty(&c.log),
        extra: None,
    }
}

pub fn access_log(c: &CaddyConfig) -> AccessLog {
    AccessLog {
        path: c.access_log.clone(),
        roll_size_mb: c.access_log_roll_size_mb,
        roll_keep: c.access_log_roll_keep,
    }
}

/// Exactly the block one site contributes to the Caddyfile, access log included.
pub fn site_block(c: &CaddyConfig, address: &str, body: &CaddyfileBody) -> String {
    let global = GlobalOptions {
        admin: None,
        email: None,
        caddy_log: None,
        extra: None,
    };
    render(
        &global,
        &[SiteBlock { address, body }],
        Some(&access_log(c)),
    )
}

/// A stored body, parsed again (it was validated and normalised when it was saved).
pub fn stored_body(config: &str) -> Option<CaddyfileBody> {
    CaddyfileBody::parse(config, &BodyPolicy::admin()).ok()
}

/// The whole Caddyfile for `vhosts` (only the enabled ones are served), and its hash.
pub fn whole(c: &CaddyConfig, vhosts: &[Vhost]) -> (String, String) {
    let bodies: Vec<(String, CaddyfileBody)> = vhosts
        .iter()
        .filter(|v| v.enabled)
        .filter_map(|v| match stored_body(&v.config) {
            Some(body) => Some((v.domain.clone(), body)),
            None => {
                tracing::error!(domain = %v.domain, "stored site body no longer parses; left out");
                None
            }
        })
        .collect();
    let sites: Vec<SiteBlock<'_>> = bodies
        .iter()
        .map(|(address, body)| SiteBlock { address, body })
        .collect();
    let text = render(&global_options(c), &sites, Some(&access_log(c)));
    let hash = config_hash(&text);
    (text, hash)
}
