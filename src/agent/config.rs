//! Typed settings for the agent, layered like the hub's: built-in defaults, then the TOML file
//! given by `--config`/`GATEHOUSE_AGENT_CONFIG`, then `GATEHOUSE_AGENT_*` environment
//! variables. Any unknown key or bad value stops start-up with a message naming the key.
//!
//! The layering itself is the hub's (`crate::config::layer`), scoped to this prefix.

use super::caddy::CaddyAdmin;
use crate::config::layer::{ConfigError, EnvScope, layered, origin};
use crate::config::{LogConfig, Secret};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Environment variables with this prefix configure the agent.
pub const ENV_PREFIX: &str = "GATEHOUSE_AGENT_";
/// Read by clap for `--config`; not a config key itself.
pub const ENV_CONFIG_PATH: &str = "GATEHOUSE_AGENT_CONFIG";

/// The agent's variables (the config path variable is clap's, not a key).
const AGENT_ENV: EnvScope = EnvScope {
    prefix: ENV_PREFIX,
    ignore: &[ENV_CONFIG_PATH],
};
/// Shorter tokens are refused: the token is all that stands between the network and Caddy.
pub const MIN_TOKEN_CHARS: usize = 16;

/// Every setting of the agent. `config/agent.toml` documents each key with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Address and port the agent's API listens on.
    pub listen: SocketAddr,
    /// The Bearer token the hub must send. After [`AgentConfig::load`] this is the effective
    /// token, whether it came from here or from `token_file`.
    pub token: Secret,
    /// A file whose trimmed contents are the token; empty means unused.
    pub token_file: String,
    /// Caddy's admin API; loopback only.
    pub caddy_admin: CaddyAdmin,
    /// The JSON access log the hub's Caddyfile makes every site write.
    pub access_log: String,
    /// Where the log tailer keeps what makes entry ids survive a restart.
    pub state_file: String,
    /// How many recent access-log entries the agent keeps for `/logs` and for resuming.
    pub log_buffer_lines: u64,
    /// Asked once at start for `caddy version`; empty skips the question.
    pub caddy_binary: String,
    /// How long a `/load` or `/adapt` may take; large configurations take seconds.
    pub load_timeout_secs: u64,
    /// PEM certificate (chain) for serving the API over HTTPS; empty serves plain HTTP.
    pub tls_cert: String,
    /// PEM private key for `tls_cert`; set both or neither.
    pub tls_key: String,
    /// Bearer token for `GET /metrics`; empty: only direct requests from this machine.
    pub metrics_token: Secret,
    /// A client must send a request's whole head within this many seconds (see the hub's
    /// `security.header_read_timeout_secs`); the TLS handshake gets as long.
    pub header_read_timeout_secs: u64,
    /// Connections served at once; further ones wait until one closes.
    pub max_connections: u64,
    pub log: LogConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            token: Secret::default(),
            token_file: String::new(),
            caddy_admin: CaddyAdmin::default(),
            access_log: "/var/log/caddy/gatehouse-access.log".into(),
            state_file: "./gatehouse-agent-state.json".into(),
            log_buffer_lines: 10_000,
            caddy_binary: "caddy".into(),
            load_timeout_secs: 120,
            tls_cert: String::new(),
            tls_key: String::new(),
            metrics_token: Secret::default(),
            header_read_timeout_secs: 10,
            max_connections: 256,
            log: LogConfig::default(),
        }
    }
}

impl AgentConfig {
    /// Loads the configuration from the process environment and the optional file.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// Loads the configuration from the optional file and the given environment, then reads
    /// `token_file` when it is set.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (mut config, from_env): (AgentConfig, _) = layered(path, env, &AGENT_ENV)?;
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin(&from_env, key),
            key: key.to_string(),
            message,
        };
        config
            .resolve_token()
            .and_then(|()| config.validate())
            .map_err(|(key, message)| invalid(key, message))?;
        Ok(config)
    }

    /// Puts the token from `token_file` into `token`, then checks what the hub will send.
    fn resolve_token(&mut self) -> Result<(), (&'static str, String)> {
        if !self.token_file.is_empty() {
            if !self.token.is_empty() {
                return Err(("token_file", "set `token` or `token_file`, not both".into()));
            }
            let text = std::fs::read_to_string(&self.token_file).map_err(|e| {
                (
                    "token_file",
                    format!("cannot read {}: {e}", self.token_file),
                )
            })?;
            self.token = Secret::new(text.trim());
        }
        let token = self.token.expose();
        if token.is_empty() {
            return Err((
                "token",
                format!(
                    "the agent needs a token of at least {MIN_TOKEN_CHARS} characters: set \
                     `token` ({ENV_PREFIX}TOKEN) or `token_file` ({ENV_PREFIX}TOKEN_FILE)"
                ),
            ));
        }
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err((
                "token",
                format!("must be at least {MIN_TOKEN_CHARS} characters long"),
            ));
        }
        // The hub sends it in an HTTP header, where anything else cannot travel intact.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err((
                "token",
                "must be printable ASCII without spaces (it travels in an HTTP header)".into(),
            ));
        }
        Ok(())
    }

    /// Rules serde cannot express; returns the offending key and why.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let log = &self.access_log;
        if !log.starts_with('/') || log.contains("..") || log.chars().any(char::is_control) {
            return Err(("access_log", "must be an absolute path without `..`".into()));
        }
        if self.state_file.trim().is_empty() {
            return Err(("state_file", "must name a file".into()));
        }
        if self.log_buffer_lines == 0 || self.log_buffer_lines > 1_000_000 {
            return Err(("log_buffer_lines", "must be between 1 and 1000000".into()));
        }
        if self.load_timeout_secs == 0 || self.load_timeout_secs > 3_600 {
            return Err((
                "load_timeout_secs",
                "must be between 1 and 3600 seconds".into(),
            ));
        }
        if !(1..=300).contains(&self.header_read_timeout_secs) {
            return Err((
                "header_read_timeout_secs",
                "must be between 1 and 300 seconds".into(),
            ));
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(("max_connections", "must be between 1 and 65536".into()));
        }
        match (self.tls_cert.is_empty(), self.tls_key.is_empty()) {
            (false, true) => {
                return Err(("tls_key", "set it with `tls_cert` (both or neither)".into()));
            }
            (true, false) => {
                return Err(("tls_cert", "set it with `tls_key` (both or neither)".into()));
            }
            _ => {}
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| ("log.level", format!("not a valid log filter: {e}")))?;
        Ok(())
    }

    /// Whether the API is served over HTTPS.
    pub fn tls(&self) -> bool {
        !self.tls_cert.is_empty()
    }

    /// Where the token came from, for the start-up log line (never the token itself).
    pub fn token_source(&self) -> &'static str {
        if self.token_file.is_empty() {
            "token"
        } else {
            "token_file"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use crate::config::layer::testing::{env, file};

    const TOKEN: &str = "0123456789abcdef-token";

    fn error(path: Option<&Path>, pairs: &[(&str, &str)]) -> String {
        AgentConfig::load_from(path, env(pairs))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_token_alone_gives_the_documented_defaults() {
        let config =
            AgentConfig::load_from(None, env(&[("GATEHOUSE_AGENT_TOKEN", TOKEN)])).unwrap();
        assert_eq!(
            config,
            AgentConfig {
                token: Secret::new(TOKEN),
                ..AgentConfig::default()
            }
        );
        assert_eq!(config.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.caddy_admin.authority(), "localhost:2019");
    }

    #[test]
    fn the_shipped_config_file_documents_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/agent.toml");
        let shipped: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        for (key, default) in crate::config::layer::default_keys::<AgentConfig>() {
            let mut value = Some(&shipped);
            let mut leaf = None;
            for part in key.split('.') {
                leaf = value.and_then(|t| t.get(part));
                value = leaf.and_then(toml::Value::as_table);
            }
            assert_eq!(
                leaf,
                Some(&default),
                "config/agent.toml does not document `{key}` with its default"
            );
        }
        let config =
            AgentConfig::load_from(Some(&path), env(&[("GATEHOUSE_AGENT_TOKEN", TOKEN)])).unwrap();
        assert_eq!(config.caddy_admin, CaddyAdmin::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let f =
            file("listen = \"127.0.0.1:9000\"\nload_timeout_secs = 5\n[log]\nformat = \"text\"\n");
        let config = AgentConfig::load_from(
            Some(f.path()),
            env(&[
                ("GATEHOUSE_AGENT_TOKEN", TOKEN),
                ("GATEHOUSE_AGENT_LOG_FORMAT", "json"),
                ("GATEHOUSE_AGENT_LOAD_TIMEOUT_SECS", "30"),
                ("GATEHOUSE_AGENT_CADDY_ADMIN", "http://127.0.0.1:2999"),
                ("GATEHOUSE_AGENT_CONFIG", "/ignored/here"),
                ("GATEHOUSE_LISTEN", "hub setting, not ours"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(config.load_timeout_secs, 30);
        assert_eq!(config.caddy_admin.authority(), "127.0.0.1:2999");
    }

    #[test]
    fn the_token_file_gives_its_trimmed_contents() {
        let f = file(&format!("  {TOKEN}\n"));
        let config = AgentConfig::load_from(
            None,
            env(&[("GATEHOUSE_AGENT_TOKEN_FILE", f.path().to_str().unwrap())]),
        )
        .unwrap();
        assert_eq!(config.token.expose(), TOKEN);
        assert_eq!(config.token_source(), "token_file");
    }

    #[test]
    fn start_up_without_a_usable_token_names_the_key() {
        let err = error(None, &[]);
        assert!(
            err.contains("`token`") && err.contains("token_file"),
            "{err}"
        );
        let err = error(None, &[("GATEHOUSE_AGENT_TOKEN", "short")]);
        assert!(
            err.contains("`token`") && err.contains("GATEHOUSE_AGENT_TOKEN"),
            "{err}"
        );
        let err = error(
            None,
            &[("GATEHOUSE_AGENT_TOKEN", "has a space in it, long")],
        );
        assert!(err.contains("`token`"), "{err}");
        let err = error(
            None,
            &[("GATEHOUSE_AGENT_TOKEN_FILE", "/nonexistent/token")],
        );
        assert!(
            err.contains("`token_file`") && err.contains("/nonexistent/token"),
            "{err}"
        );
        let f = file(TOKEN);
        let err = error(
            None,
            &[
                ("GATEHOUSE_AGENT_TOKEN", TOKEN),
                ("GATEHOUSE_AGENT_TOKEN_FILE", f.path().to_str().unwrap()),
            ],
        );
        assert!(err.contains("not both"), "{err}");
    }

    #[test]
    fn a_non_loopback_caddy_admin_is_refused_naming_the_key() {
        for admin in [
            "http://10.0.0.5:2019",
            "http://caddy.example.com:2019",
            "https://localhost:2019",
            "http://0.0.0.0:2019",
            "http://localhost:2019/config",
            "localhost:2019",
        ] {
            let err = error(
                None,
                &[
                    ("GATEHOUSE_AGENT_TOKEN", TOKEN),
                    ("GATEHOUSE_AGENT_CADDY_ADMIN", admin),
                ],
            );
            assert!(
                err.contains("`caddy_admin`") && err.contains("GATEHOUSE_AGENT_CADDY_ADMIN"),
                "{admin}: {err}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let f = file(&format!("token = \"{TOKEN}\"\n[log]\ncolour = true\n"));
        let err = error(Some(f.path()), &[]);
        assert!(err.contains("colour"), "{err}");
        let err = error(None, &[("GATEHOUSE_AGENT_LISTN", "x")]);
        assert!(err.contains("GATEHOUSE_AGENT_LISTN"), "{err}");
        for (var, value, key) in [
            ("GATEHOUSE_AGENT_LISTEN", "nowhere", "`listen`"),
            (
                "GATEHOUSE_AGENT_LOAD_TIMEOUT_SECS",
                "0",
                "`load_timeout_secs`",
            ),
            (
                "GATEHOUSE_AGENT_LOAD_TIMEOUT_SECS",
                "soon",
                "`load_timeout_secs`",
            ),
            ("GATEHOUSE_AGENT_ACCESS_LOG", "relative.log", "`access_log`"),
            (
                "GATEHOUSE_AGENT_LOG_BUFFER_LINES",
                "0",
                "`log_buffer_lines`",
            ),
            ("GATEHOUSE_AGENT_STATE_FILE", " ", "`state_file`"),
            (
                "GATEHOUSE_AGENT_HEADER_READ_TIMEOUT_SECS",
                "0",
                "`header_read_timeout_secs`",
            ),
            ("GATEHOUSE_AGENT_MAX_CONNECTIONS", "0", "`max_connections`"),
            ("GATEHOUSE_AGENT_LOG_FORMAT", "xml", "`log.format`"),
        ] {
            let err = error(None, &[("GATEHOUSE_AGENT_TOKEN", TOKEN), (var, value)]);
            assert!(err.contains(key) && err.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn a_tls_certificate_without_its_key_or_the_reverse_is_refused_naming_the_missing_key() {
        for (set, missing) in [
            ("GATEHOUSE_AGENT_TLS_CERT", "`tls_key`"),
            ("GATEHOUSE_AGENT_TLS_KEY", "`tls_cert`"),
        ] {
            let err = error(
                None,
                &[
                    ("GATEHOUSE_AGENT_TOKEN", TOKEN),
                    (set, "/etc/gatehouse/agent.pem"),
                ],
            );
            assert!(err.contains(missing), "{set}: {err}");
        }
        let config = AgentConfig::load_from(
            None,
            env(&[
                ("GATEHOUSE_AGENT_TOKEN", TOKEN),
                ("GATEHOUSE_AGENT_TLS_CERT", "/etc/gatehouse/agent.pem"),
                ("GATEHOUSE_AGENT_TLS_KEY", "/etc/gatehouse/agent.key"),
            ]),
        )
        .unwrap();
        assert!(config.tls());
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let config =
            AgentConfig::load_from(None, env(&[("GATEHOUSE_AGENT_TOKEN", TOKEN)])).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(debug.contains("Secret(***)"), "{debug}");
    }
}
