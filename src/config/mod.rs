//! Typed settings for the hub. Layers, later wins: built-in defaults, then the TOML file
//! given by `--config`/`GATEHOUSE_CONFIG`, then `GATEHOUSE_*` environment variables.
//! Any unknown key or bad value stops start-up with a message that names the key.

pub(crate) mod layer;

pub use crate::domain::Secret;
pub(crate) use layer::ConfigError;
use layer::{EnvScope, layered, origin};

use crate::domain::Role;
use crate::domain::tls::{CaCertificates, CertFingerprint, TlsSettings, is_https};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Environment variables with this prefix configure the hub.
pub(crate) const ENV_PREFIX: &str = "GATEHOUSE_";
/// The name of the key file in the data directory unless `secret_key_file` says otherwise.
pub(crate) const DEFAULT_KEY_FILE: &str = "secret.key";
/// Read by clap for `--config`; not a config key itself.
const ENV_CONFIG_PATH: &str = "GATEHOUSE_CONFIG";
/// Reserved for the agent's own configuration, so the hub ignores it.
const ENV_AGENT_PREFIX: &str = "GATEHOUSE_AGENT_";

/// Every setting of the hub. `config/gatehouse.toml` documents each key with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address and port the portal listens on.
    pub listen: SocketAddr,
    /// Directory holding the SQLite database; created on first run.
    pub data_dir: PathBuf,
    /// The URL people use to reach the portal (`https://…` turns on Secure cookies).
    /// Empty means `http://<listen>`.
    pub public_url: String,
    /// Preset token for the first-run setup URL; empty means a random one per start.
    pub setup_token: Secret,
    /// The file holding the key that seals agent tokens and TOTP secrets in the database.
    /// Empty means `secret.key` in `data_dir`; made (mode 0600) on first run if absent.
    pub secret_key_file: String,
    /// The key itself (32 bytes, base64 or hex), usually from `GATEHOUSE_SECRET_KEY`; when
    /// set, `secret_key_file` is not used.
    pub secret_key: Secret,
    pub log: LogConfig,
    pub session: SessionConfig,
    pub security: SecurityConfig,
    pub caddy: CaddyConfig,
    pub vhosts: VhostsConfig,
    pub fleet: FleetConfig,
    pub metrics: MetricsConfig,
}

/// Who may read `GET /metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Bearer token a scraper must send; empty: only direct requests from this machine.
    pub token: Secret,
}

/// How the hub talks to its agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// How often the reconciler checks every agent (health, drift), in seconds.
    pub reconcile_interval_secs: u64,
    /// A push to one agent (Caddy loading the whole file) must finish within this.
    pub push_timeout_secs: u64,
    /// How long a deploy waits for any one agent (its turn and its answer) before leaving
    /// it pending: its push goes on, and the reconciler catches it up.
    pub deploy_wait_secs: u64,
    /// A live-log connection to an agent that nobody watches is closed after this long.
    pub log_idle_grace_secs: u64,
    /// Agents declared here are added at start-up and kept in step with this list.
    pub agents: Vec<AgentDecl>,
}

/// An agent declared in the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDecl {
    pub name: String,
    /// Base URL of the agent, e.g. `http://10.0.0.5:7070`.
    pub url: String,
    /// The agent's bearer token; or give `token_file`.
    #[serde(default)]
    pub token: Secret,
    #[serde(default)]
    pub token_file: String,
    /// For an https URL: a PEM file of the CA that alone may sign the agent's certificate.
    #[serde(default)]
    pub tls_ca_file: String,
    /// For an https URL: the SHA-256 of the agent's certificate, the only one accepted.
    #[serde(default)]
    pub tls_pin: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            reconcile_interval_secs: 5,
            push_timeout_secs: 60,
            deploy_wait_secs: 5,
            log_idle_grace_secs: 30,
            agents: Vec::new(),
        }
    }
}

impl AgentDecl {
    /// The token, read from `token_file` when `token` is empty.
    pub(crate) fn resolve_token(&self) -> Result<Secret, String> {
        if !self.token.is_empty() {
            return Ok(self.token.clone());
        }
        if self.token_file.is_empty() {
            return Err(format!(
                "agent {:?} needs a token or a token_file",
                self.name
            ));
        }
        std::fs::read_to_string(&self.token_file)
            .map(|t| Secret::new(t.trim()))
            .map_err(|e| {
                format!(
                    "agent {:?}: cannot read token_file {}: {e}",
                    self.name, self.token_file
                )
            })
    }

    /// How the hub trusts this agent, from `tls_ca_file` and `tls_pin`, checked as the
    /// agents form checks them.
    pub(crate) fn resolve_tls(&self) -> Result<TlsSettings, String> {
        let (ca_file, pin) = (self.tls_ca_file.trim(), self.tls_pin.trim());
        if ca_file.is_empty() && pin.is_empty() {
            return Ok(Default::default());
        }
        let name = &self.name;
        if !is_https(&self.url) {
            return Err(format!(
                "agent {name:?}: tls_ca_file and tls_pin need an https:// url"
            ));
        }
        if !ca_file.is_empty() && !pin.is_empty() {
            return Err(format!(
                "agent {name:?}: set tls_ca_file or tls_pin, not both"
            ));
        }
        let ca = (!ca_file.is_empty())
            .then(|| {
                let text = std::fs::read_to_string(ca_file).map_err(|e| {
                    format!("agent {name:?}: cannot read tls_ca_file {ca_file}: {e}")
                })?;
                CaCertificates::parse(&text)
                    .map_err(|e| format!("agent {name:?}: tls_ca_file {ca_file}: {e}"))
            })
            .transpose()?;
        let pin = (!pin.is_empty())
            .then(|| {
                CertFingerprint::parse(pin).map_err(|e| format!("agent {name:?}: tls_pin: {e}"))
            })
            .transpose()?;
        Ok(TlsSettings { ca, pin })
    }
}

/// What goes into every generated Caddyfile besides the sites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaddyConfig {
    /// The ACME account email for certificates; empty leaves it out.
    pub acme_email: String,
    /// Where Caddy writes its own log; empty keeps Caddy's default (stderr).
    pub log: String,
    /// Caddy's admin API address on the agents. Written as `admin …` unless it is Caddy's
    /// default, because loading a Caddyfile without it moves the admin endpoint.
    pub admin: String,
    /// The JSON access log every site writes to (what the live log viewer reads).
    pub access_log: String,
    /// Caddy rolls the access log at this size, in MiB …
    pub access_log_roll_size_mb: u32,
    /// … and keeps this many rolled files.
    pub access_log_roll_keep: u32,
    /// Addresses every site listens on (`default_bind`); empty: every interface.
    pub default_bind: Vec<String>,
}

/// Rules for virtual hosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VhostsConfig {
    /// Static-file and PHP roots of `user` sites must be this directory or below it.
    pub(crate) user_root_base: String,
    /// Directives a `user` may write in a raw site body. Admins may write anything.
    pub(crate) user_directives: Vec<String>,
    /// Networks (addresses or CIDRs) users' sites may make Caddy connect to. Empty: none.
    /// The Settings page overrides it once an admin saves there.
    pub user_networks: Vec<String>,
    /// Upstream host names (exact, or `*.suffix`) users' sites may dial.
    pub user_upstream_hosts: Vec<String>,
    /// Unix sockets (absolute paths) users' sites may dial, e.g. PHP-FPM's.
    pub user_unix_sockets: Vec<String>,
    /// The hub's own `caddy` binary, to judge users' sites when no agent's Caddy answers;
    /// empty: only agents judge.
    pub caddy_binary: String,
    /// Ports a `user`'s site address may name (besides none at all). Admins may use any.
    pub user_ports: Vec<u16>,
}

impl VhostsConfig {
    /// The tenant policy's lists as this file gives them (the Settings page may override).
    pub(crate) fn tenant_lists(&self) -> crate::domain::tenant_lists::Lists {
        crate::domain::tenant_lists::Lists {
            networks: self.user_networks.clone(),
            upstream_hosts: self.user_upstream_hosts.clone(),
            unix_sockets: self.user_unix_sockets.clone(),
            from_settings: false,
        }
    }
}

/// Caddy's own default admin address; no `admin` line is needed for it.
pub(crate) const CADDY_DEFAULT_ADMIN: &str = "localhost:2019";

impl Default for CaddyConfig {
    fn default() -> Self {
        Self {
            acme_email: String::new(),
            log: String::new(),
            admin: CADDY_DEFAULT_ADMIN.into(),
            access_log: "/var/log/caddy/gatehouse-access.log".into(),
            access_log_roll_size_mb: 50,
            access_log_roll_keep: 5,
            default_bind: Vec::new(),
        }
    }
}

impl Default for VhostsConfig {
    fn default() -> Self {
        Self {
            user_root_base: "/srv/www".into(),
            user_directives: crate::domain::caddyfile::DEFAULT_USER_DIRECTIVES
                .iter()
                .map(|d| d.to_string())
                .collect(),
            user_networks: Vec::new(),
            user_upstream_hosts: Vec::new(),
            user_unix_sockets: Vec::new(),
            caddy_binary: "caddy".into(),
            user_ports: vec![80, 443],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log collectors.
    pub(crate) format: LogFormat,
    /// A tracing filter such as `info` or `gatehouse=debug,tower_http=info`.
    pub(crate) level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// A session unused for this long ends.
    pub(crate) idle_timeout_minutes: u64,
    /// A session ends this long after login, however active.
    pub(crate) absolute_timeout_hours: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Roles that must enrol in TOTP two-factor authentication.
    pub(crate) require_2fa_roles: Vec<Role>,
    /// Login and TOTP attempts allowed per minute, per IP and per account.
    pub login_attempts_per_minute: u32,
    /// Largest request body accepted, in KiB.
    pub max_body_kib: u64,
    /// A request (headers and body) must complete within this many seconds.
    pub request_timeout_secs: u64,
    /// Reverse proxies (e.g. the Caddy in front of the portal) whose `X-Forwarded-For` is
    /// believed. Empty: the connecting address is the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// A client must send a request's whole head (request line and headers) within this many
    /// seconds of starting it, or of connecting; an idle kept-alive connection closes then too.
    pub header_read_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen queue until one closes.
    pub max_connections: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            public_url: String::new(),
            setup_token: Secret::default(),
            secret_key_file: String::new(),
            secret_key: Secret::default(),
            log: LogConfig::default(),
            session: SessionConfig::default(),
            security: SecurityConfig::default(),
            caddy: CaddyConfig::default(),
            vhosts: VhostsConfig::default(),
            fleet: FleetConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_minutes: 60,
            absolute_timeout_hours: 12,
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            require_2fa_roles: vec![Role::Admin],
            login_attempts_per_minute: 5,
            header_read_timeout_secs: 10,
            max_connections: 512,
            max_body_kib: 1024,
            request_timeout_secs: 30,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Config {
    /// Loads the configuration from the process environment and the optional file.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// Loads the configuration from the optional file and the given environment.
    pub(crate) fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (config, from_env): (Config, _) = layered(path, env, &HUB_ENV)?;
        config
            .validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: origin(&from_env, key),
                key: key.to_string(),
                message,
            })?;
        Ok(config)
    }

    /// Rules serde cannot express; returns the offending key and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !self.public_url.is_empty() {
            let url = reqwest::Url::parse(&self.public_url)
                .map_err(|e| ("public_url", format!("not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err((
                    "public_url",
                    "must be an http:// or https:// URL with a host".into(),
                ));
            }
        }
        if !self.secret_key.is_empty() {
            crate::domain::secret::key_bytes(self.secret_key.expose())
                .map_err(|e| ("secret_key", e))?;
        }
        for (key, path) in [
            ("caddy.access_log", &self.caddy.access_log),
            ("vhosts.user_root_base", &self.vhosts.user_root_base),
        ] {
            if !path.starts_with('/') || path.contains("..") || path.chars().any(char::is_control) {
                return Err((key, "must be an absolute path without `..`".into()));
            }
        }
        self.vhosts
            .tenant_lists()
            .parse()
            .map_err(|(key, why)| (key.config_key(), why))?;
        if let Some(bad) = self
            .caddy
            .default_bind
            .iter()
            .find(|a| a.parse::<std::net::IpAddr>().is_err())
        {
            return Err((
                "caddy.default_bind",
                format!("{bad:?} is not an IP address, e.g. 127.0.0.1 or 10.0.0.5"),
            ));
        }
        if self.vhosts.user_ports.contains(&0) {
            return Err((
                "vhosts.user_ports",
                "ports are numbers from 1 to 65535".into(),
            ));
        }
        if !self.caddy.log.is_empty() && !self.caddy.log.starts_with('/') {
            return Err(("caddy.log", "must be empty or an absolute path".into()));
        }
        if self.caddy.admin.is_empty()
            || self
                .caddy
                .admin
                .chars()
                .any(|c| c.is_whitespace() || "{}\"'#".contains(c))
        {
            return Err((
                "caddy.admin",
                "must be an address such as localhost:2019".into(),
            ));
        }
        if self
            .caddy
            .acme_email
            .chars()
            .any(|c| c.is_whitespace() || "{}\"'#".contains(c))
        {
            return Err(("caddy.acme_email", "must be an email address".into()));
        }
        if self.caddy.access_log_roll_size_mb == 0 || self.caddy.access_log_roll_keep == 0 {
            return Err((
                "caddy.access_log_roll_size_mb",
                "rolling needs a size and a count of at least 1".into(),
            ));
        }
        if !(1..=3600).contains(&self.fleet.reconcile_interval_secs) {
            return Err((
                "fleet.reconcile_interval_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !(1..=3600).contains(&self.fleet.push_timeout_secs) {
            return Err((
                "fleet.push_timeout_secs",
                "must be between 1 and 3600".into(),
            ));
        }
        if !(1..=self.fleet.push_timeout_secs).contains(&self.fleet.deploy_wait_secs) {
            return Err((
                "fleet.deploy_wait_secs",
                "must be at least 1 and at most fleet.push_timeout_secs".into(),
            ));
        }
        for agent in &self.fleet.agents {
            if agent.name.trim().is_empty() {
                return Err((
                    "fleet.agents",
                    format!("agent {:?} needs a name and an http(s) url", agent.name),
                ));
            }
            if let Err(why) = crate::domain::agent_url::AgentUrl::parse(&agent.url) {
                return Err((
                    "fleet.agents",
                    format!("agent {:?}: url: {why}", agent.name),
                ));
            }
            agent.resolve_token().map_err(|e| ("fleet.agents", e))?;
            agent.resolve_tls().map_err(|e| ("fleet.agents", e))?;
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ("log.level", format!("not a valid log filter: {e}")))?;
        let positive = [
            (
                "session.idle_timeout_minutes",
                self.session.idle_timeout_minutes,
            ),
            (
                "session.absolute_timeout_hours",
                self.session.absolute_timeout_hours,
            ),
            (
                "security.login_attempts_per_minute",
                u64::from(self.security.login_attempts_per_minute),
            ),
            ("security.max_body_kib", self.security.max_body_kib),
            (
                "security.request_timeout_secs",
                self.security.request_timeout_secs,
            ),
            (
                "security.header_read_timeout_secs",
                self.security.header_read_timeout_secs,
            ),
            ("security.max_connections", self.security.max_connections),
        ];
        // Upper bounds keep the arithmetic on them far from overflow.
        let maximum = [525_600, 8_760, 1_000, 1_048_576, 3_600, 300, 65_536];
        for ((key, value), max) in positive.into_iter().zip(maximum) {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
            if value > max {
                return Err((key, format!("must be at most {max}")));
            }
        }
        Ok(())
    }

    /// The key file's path: `secret_key_file`, or `secret.key` in the data directory.
    pub(crate) fn key_file_path(&self) -> PathBuf {
        if self.secret_key_file.is_empty() {
            self.data_dir.join(DEFAULT_KEY_FILE)
        } else {
            PathBuf::from(&self.secret_key_file)
        }
    }

    /// Where the SQLite database lives.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("gatehouse.db")
    }

    /// The portal's base URL without a trailing slash, for links printed to the log.
    pub(crate) fn base_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_string()
        }
    }

    /// Cookies carry `Secure` when people reach the portal over HTTPS.
    pub(crate) fn cookies_secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

/// The hub's variables; `GATEHOUSE_AGENT_*` belong to the agent.
pub(crate) const HUB_ENV: EnvScope = EnvScope {
    prefix: ENV_PREFIX,
    ignore: &[ENV_CONFIG_PATH, ENV_AGENT_PREFIX],
};

#[cfg(test)]
mod tests {
    use super::layer::testing::{env, file};
    use super::layer::{default_keys, read_file};
    use super::*;
    use toml::Value;

    #[test]
    fn no_file_and_no_env_gives_the_embedded_defaults() {
        let config = Config::load_from(None, env(&[])).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.db_path(), Path::new("./data/gatehouse.db"));
    }

    #[test]
    fn the_shipped_config_file_documents_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gatehouse.toml");
        let shipped = read_file(&path).unwrap();
        let mut documented = Vec::new();
        for (key, _) in default_keys::<Config>() {
            let mut value = Some(&shipped);
            let mut leaf = None;
            for part in key.split('.') {
                leaf = value.and_then(|t| t.get(part));
                value = leaf.and_then(Value::as_table);
            }
            assert!(
                leaf.is_some(),
                "config/gatehouse.toml does not document `{key}`"
            );
            documented.push(key);
        }
        assert!(!documented.is_empty());
        assert_eq!(
            Config::load_from(Some(&path), env(&[])).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let f = file("listen = \"127.0.0.1:9000\"\n[log]\nformat = \"text\"\n");
        let config = Config::load_from(
            Some(f.path()),
            env(&[
                ("GATEHOUSE_LOG_FORMAT", "json"),
                ("GATEHOUSE_SECURITY_LOGIN_ATTEMPTS_PER_MINUTE", "9"),
                ("GATEHOUSE_SECURITY_REQUIRE_2FA_ROLES", "admin, user"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.security.login_attempts_per_minute, 9);
        assert_eq!(
            config.security.require_2fa_roles,
            vec![Role::Admin, Role::User]
        );
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let f = file("[log]\nformat = \"text\"\ncolour = true\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn a_deploy_wait_longer_than_a_push_is_refused_by_name() {
        let f = file("[fleet]\npush_timeout_secs = 10\ndeploy_wait_secs = 30\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("fleet.deploy_wait_secs"), "{err}");
        let f = file("[fleet]\npush_timeout_secs = 10\ndeploy_wait_secs = 10\n");
        let config = Config::load_from(Some(f.path()), env(&[])).unwrap();
        assert_eq!(config.fleet.deploy_wait_secs, 10);
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_key() {
        let f = file("[session]\nidle_timeout_minutes = \"soon\"\n");
        let err = Config::load_from(Some(f.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("session.idle_timeout_minutes"), "{err}");
    }

    #[test]
    fn a_bad_value_from_the_environment_names_the_key_and_variable() {
        let err = Config::load_from(None, env(&[("GATEHOUSE_LOG_FORMAT", "xml")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("log.format") && err.contains("GATEHOUSE_LOG_FORMAT"),
            "{err}"
        );
        let err = Config::load_from(None, env(&[("GATEHOUSE_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`listen`") && err.contains("GATEHOUSE_LISTEN"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_environment_variable_is_named() {
        let err = Config::load_from(None, env(&[("GATEHOUSE_LISTN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GATEHOUSE_LISTN"), "{err}");
    }

    #[test]
    fn semantic_rules_name_their_key() {
        for (var, value, key) in [
            ("GATEHOUSE_PUBLIC_URL", "ftp://x", "public_url"),
            (
                "GATEHOUSE_SECURITY_HEADER_READ_TIMEOUT_SECS",
                "0",
                "security.header_read_timeout_secs",
            ),
            (
                "GATEHOUSE_SECURITY_MAX_CONNECTIONS",
                "100000",
                "security.max_connections",
            ),
            ("GATEHOUSE_LOG_LEVEL", "not a [filter", "log.level"),
            (
                "GATEHOUSE_SECURITY_MAX_BODY_KIB",
                "0",
                "security.max_body_kib",
            ),
        ] {
            let err = Config::load_from(None, env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{var}: {err}");
        }
    }

    #[test]
    fn a_declared_agent_url_with_a_user_or_password_stops_start_up_naming_the_key() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            f.path(),
            "[[fleet.agents]]\nname = \"edge-1\"\nurl = \"http://admin:hunter2@10.0.0.5:7070\"\n\
             token = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let err = Config::load_from(Some(f.path()), Vec::<(String, String)>::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fleet.agents") && err.contains("edge-1") && err.contains("password"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2"),
            "the message repeats the password: {err}"
        );
    }

    #[test]
    fn a_declared_agents_tls_settings_are_checked_and_named() {
        let agent = |url: &str, ca: &str, pin: &str| AgentDecl {
            name: "edge-1".into(),
            url: url.into(),
            token: Secret::new("0123456789abcdef"),
            token_file: String::new(),
            tls_ca_file: ca.into(),
            tls_pin: pin.into(),
        };
        let pin = "AB:".repeat(31) + "AB";
        let settings = agent("https://10.0.0.5:7070", "", &pin)
            .resolve_tls()
            .unwrap();
        assert_eq!(settings.pin_hex(), Some("ab".repeat(32)));
        assert_eq!(settings.ca, None);
        assert_eq!(
            agent("https://a:1", "", "").resolve_tls().unwrap(),
            TlsSettings::default()
        );
        for (url, ca, pin, why) in [
            ("http://10.0.0.5:7070", "", pin.as_str(), "https://"),
            ("https://a:1", "", "12:34", "64 hex digits"),
            (
                "https://a:1",
                "/nonexistent/ca.pem",
                "",
                "/nonexistent/ca.pem",
            ),
            (
                "https://a:1",
                "/nonexistent/ca.pem",
                pin.as_str(),
                "not both",
            ),
        ] {
            let config = Config {
                fleet: FleetConfig {
                    agents: vec![agent(url, ca, pin)],
                    ..FleetConfig::default()
                },
                ..Config::default()
            };
            let (key, message) = config.validate().unwrap_err();
            assert_eq!(key, "fleet.agents");
            assert!(
                message.contains(why) && message.contains("edge-1"),
                "{message}"
            );
        }
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = Config {
            setup_token: Secret::new("hunter2-very-secret"),
            secret_key: Secret::new("c2VjcmV0LWtleS1ieXRlcy0zMi1sb25nLXh4eHh4eHg="),
            ..Config::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("c2VjcmV0"), "{debug}");
        assert!(debug.contains("Secret(***)"));
    }

    #[test]
    fn https_public_url_turns_on_secure_cookies() {
        let config = Config {
            public_url: "https://gh.example.com/".into(),
            ..Config::default()
        };
        assert!(config.cookies_secure());
        assert_eq!(config.base_url(), "https://gh.example.com");
        assert!(!Config::default().cookies_secure());
    }
}
