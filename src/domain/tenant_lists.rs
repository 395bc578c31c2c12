//! The admin's lists of the tenant policy as text (networks, upstream host names, unix
//! sockets), where they come from and how each entry is parsed. The config file and the
//! Settings page both give them; [`super::tenant`] judges sites against the parsed form.

use super::tenant::{NamePattern, parse_network};
use ipnet::IpNet;

/// One of the admin's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKey {
    Networks,
    UpstreamHosts,
    UnixSockets,
}

impl ListKey {
    pub const ALL: [ListKey; 3] = [
        ListKey::Networks,
        ListKey::UpstreamHosts,
        ListKey::UnixSockets,
    ];

    /// The key in the config file.
    pub fn config_key(self) -> &'static str {
        match self {
            ListKey::Networks => "vhosts.user_networks",
            ListKey::UpstreamHosts => "vhosts.user_upstream_hosts",
            ListKey::UnixSockets => "vhosts.user_unix_sockets",
        }
    }

    /// The row of the `settings` table once the Settings page has saved it.
    pub(crate) fn setting(self) -> &'static str {
        match self {
            ListKey::Networks => "tenant.networks",
            ListKey::UpstreamHosts => "tenant.upstream_hosts",
            ListKey::UnixSockets => "tenant.unix_sockets",
        }
    }

    /// The form field on the Settings page.
    pub fn field(self) -> &'static str {
        match self {
            ListKey::Networks => "networks",
            ListKey::UpstreamHosts => "upstream_hosts",
            ListKey::UnixSockets => "unix_sockets",
        }
    }
}

/// The admin's lists as text, one entry per item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    pub networks: Vec<String>,
    pub upstream_hosts: Vec<String>,
    pub unix_sockets: Vec<String>,
    /// Whether these come from the Settings page (else from the config file).
    pub from_settings: bool,
}

/// The lists, parsed.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub networks: Vec<IpNet>,
    pub upstream_hosts: Vec<NamePattern>,
    pub unix_sockets: Vec<String>,
}

/// The kernel limits a socket path to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

fn parse_socket(text: &str) -> Result<String, String> {
    let path = text.trim();
    let path = path.strip_prefix("unix/").unwrap_or(path);
    if !path.starts_with('/')
        || path.len() > MAX_SOCKET_PATH
        || path.split('/').any(|s| s == "..")
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-@+".contains(c))
    {
        return Err(format!(
            "{text:?} is not a socket path; write an absolute path such as /run/php/php8.2-fpm.sock"
        ));
    }
    Ok(path.to_string())
}

impl Lists {
    pub fn get(&self, key: ListKey) -> &[String] {
        match key {
            ListKey::Networks => &self.networks,
            ListKey::UpstreamHosts => &self.upstream_hosts,
            ListKey::UnixSockets => &self.unix_sockets,
        }
    }

    /// Every entry parsed; the first list with a bad entry and why.
    pub fn parse(&self) -> Result<Parsed, (ListKey, String)> {
        Ok(Parsed {
            networks: parse_all(ListKey::Networks, &self.networks, parse_network)?,
            upstream_hosts: parse_all(
                ListKey::UpstreamHosts,
                &self.upstream_hosts,
                NamePattern::parse,
            )?,
            unix_sockets: parse_all(ListKey::UnixSockets, &self.unix_sockets, parse_socket)?,
        })
    }

    /// The first bad entry of each list, so a form can say all of them at once.
    pub fn problems(&self) -> Vec<(ListKey, String)> {
        [
            parse_all(ListKey::Networks, &self.networks, parse_network).err(),
            parse_all(
                ListKey::UpstreamHosts,
                &self.upstream_hosts,
                NamePattern::parse,
            )
            .err(),
            parse_all(ListKey::UnixSockets, &self.unix_sockets, parse_socket).err(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

fn parse_all<T>(
    key: ListKey,
    items: &[String],
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, (ListKey, String)> {
    items
        .iter()
        .filter(|i| !i.trim().is_empty())
        .map(|i| f(i).map_err(|why| (key, why)))
        .collect()
}
