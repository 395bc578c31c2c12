//! What a `user`'s site may make Caddy do, judged on Caddy's own adapted JSON of that site.
//!
//! **Why the adapted JSON, not the Caddyfile tokens.** The Caddyfile is a surface syntax with
//! shorthands (`reverse_proxy /api/* host:1`, `{upstream_hostport}`, `php_fastcgi`,
//! `forward_auth`), positional matchers, subdirectives that take a file name or an address in
//! one position and a header name in the next, and a directive order that Caddy sorts for
//! itself. A token model of all of that is a second Caddyfile parser that can disagree with the
//! real one, and every disagreement is a hole. The JSON that Caddy's own adapter produces is
//! exactly what Caddy will run: every upstream is a `dial` string, every matcher a named
//! module, every file path a named field. Judging that leaves nothing to interpret.
//!
//! The judge is an **allowlist**: a handler, matcher or field it does not know is refused, so a
//! Caddy release or plugin that adds a field that reads a file or dials an address stays
//! refused until someone here has looked at it. The cost is that a `user`'s site can only be
//! saved while some agent's Caddy can adapt it (the portal says so); admins are never judged.
//!
//! The cheaper checks on the tokens (`crate::domain::caddyfile::BodyPolicy`: structure, the
//! directive allowlist, `import`, `{env.*}`, `{file.*}`) still run first, because they work
//! without a Caddy and point at a line and column.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value};

/// An upstream host name an admin lets users dial: exactly `name`, or with a leading `*.`
/// any name below it.
///
/// Host names are only allowed when listed because DNS is not ours: a name that resolves to a
/// public address today can be pointed at `127.0.0.1` or at the agent tomorrow, and Caddy
/// resolves it again at every dial. Only names whose DNS an admin controls belong here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern(String);

impl NamePattern {
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        let t = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let name = t.strip_prefix("*.").unwrap_or(&t);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(format!(
                "{text:?} is not a host name or a *.suffix pattern, e.g. app.internal.example or *.svc.example"
            ));
        }
        if name.parse::<IpAddr>().is_ok() || name.split('.').all(|l| l.parse::<u32>().is_ok()) {
            return Err(format!(
                "{text:?} is an address, not a name; list addresses under networks"
            ));
        }
        if is_loopback_name(name) {
            return Err(format!(
                "{text:?} always means this machine itself; list 127.0.0.1 under networks if you mean it"
            ));
        }
        Ok(NamePattern(t))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn matches(&self, host: &str) -> bool {
        match self.0.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            None => host == self.0,
        }
    }
}

/// Parses a network an admin opens to users' sites: an address (`10.0.0.7`, a single host) or
/// a CIDR (`10.0.0.0/24`, `fd00::/8`).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    let net = if t.contains('/') {
        t.parse::<IpNet>().map_err(|_| {
            format!("{t:?} is not a network; write an address or a CIDR such as 10.0.0.0/24")
        })?
    } else {
        IpNet::from(t.parse::<IpAddr>().map_err(|_| {
            format!("{t:?} is not an address; write an address or a CIDR such as 10.0.0.0/24")
        })?)
    };
    let first = canonical(net.network());
    if never_dialable(first).is_some() && net.prefix_len() > 0 {
        return Err(format!(
            "{t:?} is {}; sites of users can never reach it",
            never_dialable(first).unwrap_or_default()
        ));
    }
    Ok(net.trunc())
}

/// Where a host of a [`Reserved`] address is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReservedHost {
    /// Any loopback address (`127.0.0.0/8`, `::1`): a service bound to one loopback address
    /// or to all interfaces answers there.
    Loopback,
    Ip(IpAddr),
    Name(String),
}

/// A socket address users' sites may never dial, even inside an allowed network: an agent,
/// a Caddy admin endpoint, the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub host: ReservedHost,
    pub port: u16,
    /// What it is, for the refusal: "Caddy's admin endpoint", "the agent edge-1", ...
    pub what: String,
}

/// What a `user`'s site may make Caddy do. Admins build it from the config file and the
/// Settings page; the hub adds the addresses of its own parts as [`Reserved`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TenantPolicy {
    /// Networks users' sites may dial (proxy upstreams, load-balancer members, health checks,
    /// FastCGI). Empty: none.
    pub networks: Vec<IpNet>,
    /// Host names users' sites may dial.
    pub upstream_hosts: Vec<NamePattern>,
    /// Unix sockets users' sites may dial, as absolute paths (`/run/php/php8.2-fpm.sock`).
    pub unix_sockets: Vec<String>,
    /// Ports a user's site may listen on.
    pub ports: Vec<u16>,
    /// Static-file and PHP roots must be this folder or below it.
    pub root_base: String,
    /// Never dialled, whatever the networks say.
    pub reserved: Vec<Reserved>,
}

/// Which part of a site a refusal is about, so a form can put it beside the right field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum About {
    /// An address Caddy would connect to: the upstream fields of the templates.
    Dial,
    /// A file or folder on the server.
    Path,
    /// Anything else the site does.
    Site,
}

/// Why a site is refused for a `user`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refusal {
    pub about: About,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Judges the adapted JSON of a Caddyfile that holds one site, `site_host` (as Caddy's host
/// matcher will hold it: lowercase ASCII, `*.` for a wildcard). Empty when the site may run.
pub fn judge(adapted: &Value, site_host: &str, policy: &TenantPolicy) -> Vec<Refusal> {
    let mut judge = Judge {
        policy,
        site_host: site_host.to_ascii_lowercase(),
        out: BTreeSet::new(),
    };
    judge.placeholders(adapted);
    judge.top(adapted);
    judge.out.into_iter().collect()
}

/// Placeholders that Caddy fills from the host at request time: environment variables and
/// whole files. Refused in every string, whatever field it is in.
const HOST_PLACEHOLDERS: &[(&str, &str)] = &[
    ("{env.", "reads the server's environment variables"),
    ("{file.", "reads files on the server"),
    (
        "{system.",
        "reveals the server's host name and Caddy's working directory",
    ),
];

/// Networks never dialled (the cloud metadata service lives at a link-local address).
fn never_dialable(ip: IpAddr) -> Option<&'static str> {
    let ip = canonical(ip);
    if ip.is_unspecified() {
        return Some("the unspecified address (this machine)");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_link_local() => Some("a link-local address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Some("a link-local address"),
        _ => None,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

struct Judge<'a> {
    policy: &'a TenantPolicy,
    site_host: String,
    out: BTreeSet<Refusal>,
}

/// Whether a document root is known to be set, and so whether `file_server`, the `file`
/// matcher and FastCGI read below it rather than below Caddy's working directory.
type RootSet = bool;

fn keys_outside<'m>(map: &'m Map<String, Value>, allowed: &[&str]) -> Vec<&'m str> {
    map.keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect()
}

impl Judge<'_> {
    fn refuse(&mut self, about: About, message: impl Into<String>) {
        self.out.insert(Refusal {
            about,
            message: message.into(),
        });
    }

    fn unknown(&mut self, what: &str, keys: Vec<&str>) {
        for key in keys {
            self.refuse(
                About::Site,
                format!("{what} option `{key}` is not available to users' sites."),
            );
        }
    }

    fn placeholders(&mut self, value: &Value) {
        match value {
            Value::String(s) => {
                for (needle, why) in HOST_PLACEHOLDERS {
                    if s.contains(needle) {
                        let name = needle.trim_start_matches('{');
                        self.refuse(
                            About::Site,
                            format!(
                                "The placeholder {{{name}…}} {why}; users' sites cannot use it."
                            ),
                        );
                    }
                }
            }
            Value::Array(list) => list.iter().for_each(|v| self.placeholders(v)),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                self.placeholders(&Value::String(k.clone()));
                self.placeholders(v);
            }),
            _ => {}
        }
    }

    fn top(&mut self, adapted: &Value) {
        let Some(top) = adapted.as_object() else {
            self.refuse(
                About::Site,
                "Caddy's reading of this site could not be judged.",
            );
            return;
        };
        for key in top.keys().filter(|k| *k != "apps") {
            let what = match key.as_str() {
                "logging" => "its own logging (log files anywhere on the server)",
                "storage" => "certificate storage",
                "admin" => "Caddy's admin settings",
                _ => "server-wide settings",
            };
            self.refuse(
                About::Site,
                format!("This site would change {what} (`{key}`); users' sites cannot."),
            );
        }
        let Some(apps) = top.get("apps").and_then(Value::as_object) else {
            return;
        };
        for key in apps.keys().filter(|k| *k != "http") {
            let what = match key.as_str() {
                "tls" => "TLS settings (certificates and keys read from disk, ACME issuers)",
                "pki" => "a certificate authority",
                _ => "another Caddy app",
            };
            self.refuse(
                About::Site,
                format!("This site would configure {what} (`{key}`); users' sites cannot."),
            );
        }
        let Some(http) = apps.get("http").and_then(Value::as_object) else {
            return;
        };
        let extra = keys_outside(http, &["servers"]);
        self.unknown("The HTTP app", extra);
        let Some(servers) = http.get("servers").and_then(Value::as_object) else {
            return;
        };
        for server in servers.values() {
            self.server(server);
        }
    }

    fn server(&mut self, server: &Value) {
        let Some(server) = server.as_object() else {
            return;
        };
        for key in server.keys() {
            match key.as_str() {
                "listen" | "routes" | "errors" | "automatic_https" => {}
                "logs" => self.refuse(
                    About::Site,
                    "This site would choose its own access logging; users' sites use the shared log.",
                ),
                "tls_connection_policies" => self.refuse(
                    About::Site,
                    "This site would set its own TLS (certificates and keys from disk); users' sites cannot.",
                ),
                other => self.refuse(
                    About::Site,
                    format!("This site would change the server option `{other}`; users' sites cannot."),
                ),
            }
        }
        for listen in server
            .get("listen")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.listen(listen.as_str().unwrap_or_default());
        }
        if let Some(auto) = server.get("automatic_https").and_then(Value::as_object) {
            let extra = keys_outside(auto, &["skip", "skip_certificates"]);
            self.unknown("Automatic HTTPS", extra);
        }
        self.site_routes(server.get("routes"));
        if let Some(errors) = server.get("errors").and_then(Value::as_object) {
            let extra = keys_outside(errors, &["routes"]);
            self.unknown("Error handling", extra);
            self.site_routes(errors.get("routes"));
        }
    }

    fn listen(&mut self, listen: &str) {
        let port = listen.strip_prefix(':').and_then(|p| p.parse::<u16>().ok());
        match port {
            Some(port) if self.policy.ports.contains(&port) => {}
            Some(port) => self.refuse(
                About::Site,
                format!(
                    "This site would listen on port {port}; users' sites may use {}.",
                    list(self.policy.ports.iter())
                ),
            ),
            None => self.refuse(
                About::Site,
                format!("This site would listen on {listen:?}; users' sites listen on every interface only."),
            ),
        }
    }

    /// The routes of the site itself: each must be limited to the site's own host name, so
    /// nothing in it applies to another site's requests.
    fn site_routes(&mut self, routes: Option<&Value>) {
        for route in routes.and_then(Value::as_array).into_iter().flatten() {
            let hosts: Option<Vec<String>> = route
                .get("match")
                .and_then(Value::as_array)
                .filter(|sets| sets.len() == 1)
                .and_then(|sets| sets[0].as_object())
                .filter(|set| set.len() == 1)
                .and_then(|set| set.get("host"))
                .and_then(Value::as_array)
                .map(|hosts| {
                    hosts
                        .iter()
                        .map(|h| h.as_str().unwrap_or_default().to_ascii_lowercase())
                        .collect()
                });
            match hosts {
                Some(hosts) if !hosts.is_empty() && hosts.iter().all(|h| *h == self.site_host) => {}
                _ => {
                    self.refuse(
                        About::Site,
                        "Part of this site would answer requests for other host names.",
                    );
                    continue;
                }
            }
            if let Some(route) = route.as_object() {
                let extra = keys_outside(route, &["match", "handle", "terminal", "group"]);
                self.unknown("A route", extra);
                self.handlers(route.get("handle"), false);
            }
        }
    }

    /// A list of routes run in order: a document root set without a matcher holds for the
    /// routes after it (and never leaks out of this list).
    fn routes(&mut self, routes: Option<&Value>, mut root: RootSet) {
        for route in routes.and_then(Value::as_array).into_iter().flatten() {
            let Some(route) = route.as_object() else {
                continue;
            };
            let extra = keys_outside(route, &["match", "handle", "terminal", "group"]);
            self.unknown("A route", extra);
            let conditional = route.contains_key("match");
            if conditional {
                self.matcher_sets(route.get("match"), root);
            }
            let sets_root = self.handlers(route.get("handle"), root);
            root |= sets_root && !conditional;
        }
    }

    /// Judges handlers run in order; true when one of them sets a document root below the
    /// base without a condition.
    fn handlers(&mut self, handlers: Option<&Value>, mut root: RootSet) -> bool {
        let mut set_here = false;
        for handler in handlers.and_then(Value::as_array).into_iter().flatten() {
            let Some(h) = handler.as_object() else {
                continue;
            };
            let name = h.get("handler").and_then(Value::as_str).unwrap_or_default();
            if self.handler(name, h, root) {
                root = true;
                set_here = true;
            }
        }
        set_here
    }

    /// Judges one handler; true when it sets the document root (a `vars` with `root`).
    fn handler(&mut self, name: &str, h: &Map<String, Value>, root: RootSet) -> bool {
        let allowed: &[&str] = match name {
            "subroute" => {
                self.unknown(
                    "subroute",
                    keys_outside(h, &["handler", "routes", "errors"]),
                );
                self.routes(h.get("routes"), root);
                if let Some(errors) = h.get("errors").and_then(Value::as_object) {
                    self.routes(errors.get("routes"), root);
                }
                return false;
            }
            "vars" => {
                // Caddy fills in placeholders in a name too, per request: a name that becomes
                // `root` would move the document root anywhere after it was judged.
                for key in h.keys().filter(|k| *k != "handler") {
                    if !plain_name(key) {
                        self.refuse(
                            About::Site,
                            format!(
                                "The vars name {key:?} is not a plain name; Caddy fills in a \
                                 placeholder there per request, so it could set the document root."
                            ),
                        );
                    }
                }
                let Some(value) = h.get("root") else {
                    return false;
                };
                return self.path("root", value.as_str().unwrap_or_default());
            }
            "reverse_proxy" => {
                self.reverse_proxy(h, root);
                return false;
            }
            "file_server" => {
                self.file_server(h, root);
                return false;
            }
            "map" => {
                self.map(h);
                &["handler", "source", "destinations", "mappings", "defaults"]
            }
            "static_response" => &[
                "handler",
                "status_code",
                "headers",
                "body",
                "close",
                "abort",
            ],
            "headers" => &["handler", "request", "response"],
            "rewrite" => &[
                "handler",
                "method",
                "uri",
                "strip_path_prefix",
                "strip_path_suffix",
                "uri_substring",
                "path_regexp",
                "query",
            ],
            "encode" => {
                if let Some(encodings) = h.get("encodings").and_then(Value::as_object) {
                    let extra = keys_outside(encodings, &["gzip", "zstd"]);
                    self.unknown("encode", extra);
                }
                &["handler", "encodings", "prefer", "minimum_length", "match"]
            }
            "authentication" => {
                let providers = h.get("providers").and_then(Value::as_object);
                for (key, provider) in providers.into_iter().flatten() {
                    if key != "http_basic" {
                        self.unknown("Authentication", vec![key.as_str()]);
                        continue;
                    }
                    if let Some(p) = provider.as_object() {
                        let extra = keys_outside(p, &["accounts", "hash", "realm", "hash_cache"]);
                        self.unknown("basicauth", extra);
                    }
                }
                &["handler", "providers"]
            }
            "request_body" => &["handler", "max_size"],
            "error" => &["handler", "error", "status_code"],
            "copy_response" => &["handler", "status_code"],
            "copy_response_headers" => &["handler", "include", "exclude"],
            other => {
                let why = match other {
                    "templates" => ": templates can include any file on the server",
                    "php_fastcgi" => ": it runs files on the server",
                    "acme_server" => ": it is a certificate authority",
                    "metrics" | "tracing" => ": it exposes server-wide data",
                    "invoke" => ": it runs routes defined elsewhere",
                    _ => "",
                };
                self.refuse(
                    About::Site,
                    format!("The `{other}` handler is not available to users' sites{why}."),
                );
                return false;
            }
        };
        let extra = keys_outside(h, allowed);
        self.unknown(name, extra);
        false
    }

    fn map(&mut self, h: &Map<String, Value>) {
        for dest in h
            .get("destinations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let d = dest.as_str().unwrap_or_default();
            let name = d.trim_start_matches('{').trim_end_matches('}');
            // A destination is set straight into the replacer, ahead of Caddy's own values:
            // `{http.vars.root}` would move the document root.
            const CADDYS: &[&str] = &["http.", "vars.", "env.", "file.", "system.", "time."];
            if !plain_name(name) || CADDYS.iter().any(|p| name.starts_with(p)) || name == "root" {
                self.refuse(
                    About::Site,
                    format!(
                        "map may not write Caddy's own placeholder {d}; use a name of your own."
                    ),
                );
            }
        }
    }

    fn matcher_sets(&mut self, sets: Option<&Value>, root: RootSet) {
        for set in sets.and_then(Value::as_array).into_iter().flatten() {
            for (name, value) in set.as_object().into_iter().flatten() {
                match name.as_str() {
                    "host" | "path" | "path_regexp" | "method" | "header" | "header_regexp"
                    | "query" | "protocol" | "remote_ip" | "client_ip" | "vars"
                    | "vars_regexp" => {}
                    "not" => self.matcher_sets(Some(value), root),
                    "file" => self.file_matcher(value, root),
                    "expression" => self.refuse(
                        About::Site,
                        "Expression (CEL) matchers are not available to users' sites: they can call \
                         matchers that read the server's disk. Use named matchers such as path or header.",
                    ),
                    other => self.refuse(
                        About::Site,
                        format!("The `{other}` matcher is not available to users' sites."),
                    ),
                }
            }
        }
    }

    fn file_matcher(&mut self, value: &Value, root: RootSet) {
        let Some(m) = value.as_object() else {
            return;
        };
        let extra = keys_outside(m, &["root", "try_files", "try_policy", "split_path"]);
        self.unknown("The file matcher", extra);
        self.needs_root("The `file` matcher", m, root);
    }

    fn file_server(&mut self, h: &Map<String, Value>, root: RootSet) {
        let extra = keys_outside(
            h,
            &[
                "handler",
                "root",
                "hide",
                "index_names",
                "browse",
                "canonical_uris",
                "status_code",
                "pass_thru",
                "precompressed",
                "precompressed_order",
            ],
        );
        self.unknown("file_server", extra);
        if let Some(browse) = h.get("browse").and_then(Value::as_object)
            && browse.contains_key("template_file")
        {
            self.refuse(
                About::Path,
                "A browse template is a file on the server; users' sites use the built-in one.",
            );
        }
        self.needs_root("file_server", h, root);
    }

    /// Something that reads files below a root: it must name a root below the base, or run
    /// after one was set without a condition; otherwise Caddy reads its working directory.
    fn needs_root(&mut self, what: &str, m: &Map<String, Value>, root: RootSet) {
        match m.get("root") {
            Some(value) => {
                self.path("root", value.as_str().unwrap_or_default());
            }
            None if root => {}
            None => self.refuse(
                About::Path,
                format!(
                    "{what} would read files without a document root set for every request, \
                     which means Caddy's working directory; set `root * {}/…` first.",
                    self.policy.root_base.trim_end_matches('/')
                ),
            ),
        }
    }

    /// A folder on the server: literal, absolute, and the base or below it. True when it is.
    fn path(&mut self, field: &str, path: &str) -> bool {
        let base: Vec<&str> = self
            .policy
            .root_base
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let ok = path.starts_with('/')
            && !path.contains(['{', '}', '\\'])
            && !segments.iter().any(|s| *s == ".." || *s == ".")
            && !base.is_empty()
            && segments.starts_with(&base);
        if !ok {
            self.refuse(
                About::Path,
                format!(
                    "The {field} {path:?} is not a folder inside {}; users' sites may only use files there.",
                    self.policy.root_base
                ),
            );
        }
        ok
    }

    fn reverse_proxy(&mut self, h: &Map<String, Value>, root: RootSet) {
        let extra = keys_outside(
            h,
            &[
                "handler",
                "upstreams",
                "transport",
                "load_balancing",
                "health_checks",
                "headers",
                "rewrite",
                "flush_interval",
                "request_buffers",
                "response_buffers",
                "buffer_requests",
                "buffer_responses",
                "max_buffer_size",
                "trusted_proxies",
                "handle_response",
            ],
        );
        for key in extra {
            let message = match key {
                "dynamic_upstreams" => "Dynamic upstreams (looked up in DNS at request time) are \
                                        not available to users' sites; list fixed upstreams."
                    .to_string(),
                other => {
                    format!("reverse_proxy option `{other}` is not available to users' sites.")
                }
            };
            self.refuse(About::Dial, message);
        }
        let health_port = h
            .get("health_checks")
            .and_then(|c| c.get("active"))
            .and_then(|a| a.get("port"))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok());
        if let Some(checks) = h.get("health_checks").and_then(Value::as_object) {
            self.unknown("Health check", keys_outside(checks, &["active", "passive"]));
            if let Some(active) = checks.get("active").and_then(Value::as_object) {
                let extra = keys_outside(
                    active,
                    &[
                        "path",
                        "uri",
                        "port",
                        "headers",
                        "interval",
                        "timeout",
                        "max_size",
                        "expect_status",
                        "expect_body",
                    ],
                );
                self.unknown("Active health check", extra);
            }
            if let Some(passive) = checks.get("passive").and_then(Value::as_object) {
                let extra = keys_outside(
                    passive,
                    &[
                        "fail_duration",
                        "max_fails",
                        "unhealthy_request_count",
                        "unhealthy_status",
                        "unhealthy_latency",
                    ],
                );
                self.unknown("Passive health check", extra);
            }
        }
        let upstreams = h.get("upstreams").and_then(Value::as_array);
        for upstream in upstreams.into_iter().flatten() {
            let Some(u) = upstream.as_object() else {
                continue;
            };
            self.unknown("An upstream", keys_outside(u, &["dial", "max_requests"]));
            let dial = u.get("dial").and_then(Value::as_str).unwrap_or_default();
            self.dial(dial, health_port);
        }
        self.transport(h.get("transport"), root);
        if let Some(lb) = h.get("load_balancing").and_then(Value::as_object) {
            let extra = keys_outside(
                lb,
                &[
                    "selection_policy",
                    "try_duration",
                    "try_interval",
                    "retries",
                    "retry_match",
                ],
            );
            self.unknown("Load balancing", extra);
            if let Some(policy) = lb.get("selection_policy").and_then(Value::as_object) {
                let name = policy
                    .get("policy")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                const POLICIES: &[&str] = &[
                    "random",
                    "random_choose",
                    "least_conn",
                    "round_robin",
                    "first",
                    "ip_hash",
                    "client_ip_hash",
                    "uri_hash",
                    "query",
                    "header",
                    "cookie",
                ];
                if !POLICIES.contains(&name) {
                    self.refuse(
                        About::Site,
                        format!(
                            "The load-balancing policy `{name}` is not available to users' sites."
                        ),
                    );
                }
            }
            self.matcher_sets(lb.get("retry_match"), root);
        }
        if let Some(rewrite) = h.get("rewrite").and_then(Value::as_object) {
            self.unknown(
                "reverse_proxy rewrite",
                keys_outside(rewrite, &["method", "uri"]),
            );
        }
        for response in h
            .get("handle_response")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(r) = response.as_object() else {
                continue;
            };
            self.unknown(
                "handle_response",
                keys_outside(r, &["match", "status_code", "routes"]),
            );
            if let Some(m) = r.get("match").and_then(Value::as_object) {
                self.unknown(
                    "handle_response matcher",
                    keys_outside(m, &["status_code", "headers"]),
                );
            }
            self.routes(r.get("routes"), root);
        }
    }

    /// Judges the transport; true when it is FastCGI.
    fn transport(&mut self, transport: Option<&Value>, root: RootSet) -> bool {
        let Some(t) = transport.and_then(Value::as_object) else {
            return false;
        };
        match t
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "http" => {
                let extra = keys_outside(
                    t,
                    &[
                        "protocol",
                        "tls",
                        "keep_alive",
                        "compression",
                        "max_conns_per_host",
                        "dial_timeout",
                        "dial_fallback_delay",
                        "response_header_timeout",
                        "expect_continue_timeout",
                        "max_response_header_size",
                        "write_buffer_size",
                        "read_buffer_size",
                        "read_timeout",
                        "write_timeout",
                        "versions",
                    ],
                );
                for key in extra {
                    let why = match key {
                        "resolver" => " (it sends DNS queries to any address)",
                        "forward_proxy_url" | "network_proxy" => " (it dials another proxy)",
                        "local_address" => " (it picks the server's own address)",
                        _ => "",
                    };
                    self.refuse(
                        About::Dial,
                        format!("Transport option `{key}` is not available to users' sites{why}."),
                    );
                }
                if let Some(tls) = t.get("tls").and_then(Value::as_object) {
                    let extra = keys_outside(
                        tls,
                        &[
                            "server_name",
                            "insecure_skip_verify",
                            "handshake_timeout",
                            "renegotiation",
                            "except_ports",
                        ],
                    );
                    for key in extra {
                        self.refuse(
                            About::Path,
                            format!(
                                "Transport TLS option `{key}` is not available to users' sites: \
                                 it reads certificates or keys from the server's disk."
                            ),
                        );
                    }
                }
                false
            }
            "fastcgi" => {
                let extra = keys_outside(
                    t,
                    &[
                        "protocol",
                        "root",
                        "split_path",
                        "resolve_root_symlink",
                        "dial_timeout",
                        "read_timeout",
                        "write_timeout",
                        "capture_stderr",
                    ],
                );
                for key in extra {
                    let why = if key == "env" {
                        ": it can point PHP at any script on the server"
                    } else {
                        ""
                    };
                    self.refuse(
                        About::Site,
                        format!("FastCGI option `{key}` is not available to users' sites{why}."),
                    );
                }
                self.needs_root("FastCGI", t, root);
                true
            }
            other => {
                self.refuse(
                    About::Dial,
                    format!("The `{other}` transport is not available to users' sites."),
                );
                false
            }
        }
    }

    /// An address Caddy will connect to, as in a `dial` field: `host:port`, `[v6]:port`,
    /// `network/address` (`unix//path`, `tcp4/host:port`).
    fn dial(&mut self, dial: &str, health_port: Option<u16>) {
        if dial.contains(['{', '}']) {
            self.refuse(
                About::Dial,
                format!(
                    "The upstream {dial:?} is a placeholder, filled in per request; \
                     users' sites must name fixed upstreams."
                ),
            );
            return;
        }
        let (network, address) = match dial.split_once('/') {
            Some((network, address)) if !network.contains(':') => {
                (network.to_ascii_lowercase(), address)
            }
            _ => ("tcp".to_string(), dial),
        };
        if network.starts_with("unix") {
            if network == "unix" && self.policy.unix_sockets.iter().any(|s| s == address) {
                return;
            }
            self.refuse(
                About::Dial,
                format!(
                    "The upstream {dial} is a unix socket on the server; users' sites may use only \
                     the sockets an admin lists on Settings."
                ),
            );
            return;
        }
        if !matches!(network.as_str(), "tcp" | "tcp4" | "tcp6") {
            self.refuse(
                About::Dial,
                format!("The upstream {dial} uses the network {network:?}; users' sites may use TCP only."),
            );
            return;
        }
        let Some((host, port)) = split_host_port(address) else {
            self.refuse(
                About::Dial,
                format!("The upstream {dial:?} is not a host and a single port."),
            );
            return;
        };
        for port in std::iter::once(port).chain(health_port) {
            self.dial_host(dial, &host, port);
        }
    }

    fn dial_host(&mut self, dial: &str, host: &str, port: u16) {
        let shown = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let shown = if dial.ends_with(&shown) {
            shown
        } else {
            format!("{shown} (from {dial})")
        };
        match host.parse::<IpAddr>() {
            Ok(ip) => {
                let ip = canonical(ip);
                if let Some(what) = never_dialable(ip) {
                    self.refuse(
                        About::Dial,
                        format!("Caddy would connect to {shown}, {what}; users' sites can never reach it."),
                    );
                    return;
                }
                if let Some(r) = self.reserved_ip(ip, port) {
                    let what = r.what.clone();
                    self.refuse(
                        About::Dial,
                        format!("Caddy would connect to {shown}, which is {what}; users' sites can never reach it."),
                    );
                    return;
                }
                // Loopback is reachable only through a network that is itself loopback: an
                // admin who opens 0.0.0.0/0 means "anywhere out there", not this server.
                let inside = self.policy.networks.iter().any(|n| {
                    n.contains(&ip) && (!ip.is_loopback() || canonical(n.network()).is_loopback())
                });
                if !inside {
                    let loopback = if ip.is_loopback() {
                        " (this server itself)"
                    } else {
                        ""
                    };
                    self.refuse(
                        About::Dial,
                        format!(
                            "Caddy would connect to {shown}{loopback}, which is outside the networks \
                             open to users' sites{}; an admin opens networks on Settings.",
                            self.open_networks()
                        ),
                    );
                }
            }
            Err(_) => {
                let name = host.trim_end_matches('.').to_ascii_lowercase();
                if let Some(r) = self.policy.reserved.iter().find(|r| {
                    r.port == port && matches!(&r.host, ReservedHost::Name(n) if *n == name)
                }) {
                    let what = r.what.clone();
                    self.refuse(
                        About::Dial,
                        format!("Caddy would connect to {shown}, which is {what}; users' sites can never reach it."),
                    );
                    return;
                }
                let listed = !is_loopback_name(&name)
                    && self.policy.upstream_hosts.iter().any(|p| p.matches(&name));
                if !listed {
                    self.refuse(
                        About::Dial,
                        format!(
                            "Caddy would connect to the host name {name:?}, which is not one an admin \
                             allows for users' sites (a name can be pointed at any address, this \
                             server included); use an address in an open network, or ask an admin to \
                             list the name on Settings."
                        ),
                    );
                }
            }
        }
    }

    fn reserved_ip(&self, ip: IpAddr, port: u16) -> Option<&Reserved> {
        self.policy.reserved.iter().find(|r| {
            r.port == port
                && match &r.host {
                    ReservedHost::Loopback => ip.is_loopback(),
                    ReservedHost::Ip(reserved) => canonical(*reserved) == ip,
                    ReservedHost::Name(_) => false,
                }
        })
    }

    fn open_networks(&self) -> String {
        if self.policy.networks.is_empty() {
            " (none are open yet)".into()
        } else {
            format!(" ({})", list(self.policy.networks.iter()))
        }
    }
}

/// A name with nothing Caddy would fill in: letters, digits, `_`, `-` and `.`.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn list<T: fmt::Display>(items: impl Iterator<Item = T>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

/// `host:port` or `[v6]:port` with one numeric port (no range); the host without brackets.
fn split_host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        (host, port)
    } else {
        let (host, port) = address.rsplit_once(':')?;
        if host.contains(':') {
            return None;
        }
        (host, port)
    };
    if host.is_empty() || host.contains('%') || !port.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> TenantPolicy {
        TenantPolicy {
            networks: vec![parse_network("10.1.0.0/16").unwrap()],
            upstream_hosts: vec![NamePattern::parse("*.svc.example").unwrap()],
            unix_sockets: vec!["/run/php/fpm.sock".into()],
            ports: vec![80, 443],
            root_base: "/srv/www".into(),
            reserved: vec![
                Reserved {
                    host: ReservedHost::Loopback,
                    port: 2019,
                    what: "Caddy's admin endpoint".into(),
                },
                Reserved {
                    host: ReservedHost::Ip("10.1.0.5".parse().unwrap()),
                    port: 7070,
                    what: "the agent edge-1".into(),
                },
            ],
        }
    }

    fn site(handlers: Value) -> Value {
        json!({"apps": {"http": {"servers": {"srv0": {
            "listen": [":443"],
            "routes": [{"match": [{"host": ["a.example.com"]}],
                        "handle": [{"handler": "subroute", "routes": [{"handle": handlers}]}],
                        "terminal": true}]
        }}}}})
    }

    fn proxy(dial: &str) -> Value {
        site(json!([{"handler": "reverse_proxy", "upstreams": [{"dial": dial}]}]))
    }

    fn verdict(adapted: &Value) -> Vec<String> {
        judge(adapted, "a.example.com", &policy())
            .into_iter()
            .map(|r| r.message)
            .collect()
    }

    #[test]
    fn upstreams_inside_an_open_network_are_accepted() {
        assert!(verdict(&proxy("10.1.2.3:8080")).is_empty());
        assert!(verdict(&proxy("api.svc.example:80")).is_empty());
        assert!(verdict(&proxy("unix//run/php/fpm.sock")).is_empty());
    }

    #[test]
    fn every_way_of_writing_an_address_outside_is_refused() {
        for dial in [
            "127.0.0.1:2019",
            "127.0.0.2:8080",
            "[::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.1.0.5]:7070",
            "10.1.0.5:7070",
            "0.0.0.0:80",
            "169.254.169.254:80",
            "[fe80::1]:80",
            "192.168.1.1:80",
            "localhost:80",
            "app.localhost:80",
            "2130706433:80",
            "evil.example:80",
            "unix//var/run/docker.sock",
            "unixgram//tmp/x",
            "udp/10.1.2.3:53",
            "{http.request.header.X-Target}",
            "10.1.2.3:{http.request.uri.query.p}",
            "10.1.2.3:80-90",
            "10.1.2.3",
            "[fe80::1%eth0]:80",
        ] {
            assert!(!verdict(&proxy(dial)).is_empty(), "{dial} was accepted");
        }
    }

    #[test]
    fn a_health_check_port_is_judged_like_an_upstream() {
        let adapted = site(json!([{"handler": "reverse_proxy",
            "upstreams": [{"dial": "10.1.0.5:80"}],
            "health_checks": {"active": {"port": 7070, "uri": "/"}}}]));
        let v = verdict(&adapted);
        assert!(v.iter().any(|m| m.contains("the agent edge-1")), "{v:?}");
    }

    #[test]
    fn host_placeholders_are_refused_in_any_field() {
        let adapted = site(json!([{"handler": "static_response", "body": "{file./etc/passwd}"}]));
        assert!(!verdict(&adapted).is_empty());
        let adapted =
            site(json!([{"handler": "headers", "response": {"set": {"X": ["{env.HOME}"]}}}]));
        assert!(!verdict(&adapted).is_empty());
    }

    #[test]
    fn files_are_read_only_below_a_root_set_for_every_request() {
        let ok = site(json!([
            {"handler": "vars", "root": "/srv/www/a"},
            {"handler": "file_server"}
        ]));
        assert!(verdict(&ok).is_empty(), "{:?}", verdict(&ok));
        let outside = site(json!([
            {"handler": "vars", "root": "/etc"},
            {"handler": "file_server"}
        ]));
        assert!(!verdict(&outside).is_empty());
        let no_root = site(json!([{"handler": "file_server"}]));
        assert!(!verdict(&no_root).is_empty());
        let sneaky = site(json!([{"handler": "vars", "root": "/srv/www/../../etc"}]));
        assert!(!verdict(&sneaky).is_empty());
        let prefix = site(json!([{"handler": "vars", "root": "/srv/www2"}]));
        assert!(!verdict(&prefix).is_empty());
    }

    #[test]
    fn a_root_set_under_a_matcher_does_not_cover_the_other_requests() {
        let adapted = json!({"apps": {"http": {"servers": {"srv0": {
            "listen": [":443"],
            "routes": [{"match": [{"host": ["a.example.com"]}],
                        "handle": [{"handler": "subroute", "routes": [
                            {"match": [{"path": ["/a/*"]}], "handle": [{"handler": "vars", "root": "/srv/www/a"}]},
                            {"handle": [{"handler": "file_server"}]}
                        ]}]}]
        }}}}});
        assert!(!verdict(&adapted).is_empty());
    }

    #[test]
    fn routes_for_other_hosts_and_other_ports_are_refused() {
        let mut adapted = proxy("10.1.2.3:80");
        adapted["apps"]["http"]["servers"]["srv0"]["routes"][0]["match"][0]["host"][0] =
            json!("b.example.com");
        assert!(!verdict(&adapted).is_empty());
        let mut adapted = proxy("10.1.2.3:80");
        adapted["apps"]["http"]["servers"]["srv0"]["listen"][0] = json!(":2019");
        assert!(!verdict(&adapted).is_empty());
    }

    #[test]
    fn unknown_handlers_matchers_fields_and_apps_are_refused() {
        for handlers in [
            json!([{"handler": "templates"}]),
            json!([{"handler": "reverse_proxy", "upstreams": [{"dial": "10.1.2.3:80"}],
                    "transport": {"protocol": "http", "tls": {"client_certificate_file": "/k"}}}]),
            json!([{"handler": "reverse_proxy", "upstreams": [{"dial": "10.1.2.3:80"}],
                    "transport": {"protocol": "fastcgi", "root": "/"}}]),
            json!([{"handler": "static_response", "frobnicate": 1}]),
            json!([{"handler": "map", "source": "{path}", "destinations": ["{http.vars.root}"]}]),
        ] {
            assert!(!verdict(&site(handlers.clone())).is_empty(), "{handlers}");
        }
        let mut tls = proxy("10.1.2.3:80");
        tls["apps"]["tls"] = json!({});
        assert!(!verdict(&tls).is_empty());
    }

    #[test]
    fn a_vars_name_caddy_would_fill_in_is_refused() {
        for key in ["{http.request.header.X-K}", "{vars.k}", "{rp.header.X}"] {
            let adapted = site(json!([{"handler": "vars", key: "/etc"}]));
            assert!(!verdict(&adapted).is_empty(), "{key}");
        }
        assert!(verdict(&site(json!([{"handler": "vars", "region": "eu-1"}]))).is_empty());
    }

    #[test]
    fn the_whole_internet_does_not_include_this_server() {
        let mut open = policy();
        open.networks = vec![
            parse_network("0.0.0.0/0").unwrap(),
            parse_network("::/0").unwrap(),
        ];
        let judge_with = |dial: &str| judge(&proxy(dial), "a.example.com", &open);
        assert!(judge_with("203.0.113.9:80").is_empty());
        for dial in [
            "127.0.0.1:6379",
            "127.0.0.53:53",
            "[::1]:6379",
            "[::ffff:127.0.0.1]:6379",
        ] {
            assert!(!judge_with(dial).is_empty(), "{dial}");
        }
        let mut listed = open.clone();
        listed.networks.push(parse_network("127.0.0.1").unwrap());
        assert!(judge(&proxy("127.0.0.1:6379"), "a.example.com", &listed).is_empty());
    }

    #[test]
    fn networks_and_names_are_parsed_strictly() {
        assert_eq!(
            parse_network("10.0.0.7").unwrap().to_string(),
            "10.0.0.7/32"
        );
        assert_eq!(
            parse_network("10.0.0.7/24").unwrap().to_string(),
            "10.0.0.0/24"
        );
        assert!(parse_network("169.254.0.0/16").is_err());
        assert!(parse_network("ten").is_err());
        assert!(NamePattern::parse("localhost").is_err());
        assert!(NamePattern::parse("10.0.0.1").is_err());
        assert!(NamePattern::parse("*.svc.example").is_ok());
        let p = NamePattern::parse("*.svc.example").unwrap();
        assert!(p.matches("a.svc.example") && p.matches("a.b.svc.example"));
        assert!(!p.matches("svc.example") && !p.matches("evilsvc.example"));
    }
}
