//! The client for Caddy's admin API: load a Caddyfile, adapt one without loading it, and ask
//! whether Caddy answers. Caddy's answers become typed results so the HTTP layer only maps
//! them to responses.
//!
//! Caddy 2.6 checks the `Host` header of every admin request against the addresses its admin
//! endpoint listens on (403 `host not allowed` otherwise), and, when its `enforce_origin`
//! option is on, also requires a matching `Origin` (403 for a missing one). Every request
//! here therefore names the admin address in both headers, explicitly: reqwest leaves the
//! port out of `Host` when it is the scheme's default, which Caddy would refuse.
//!
//! Caddy also replaces its admin server on every `/load`, dropping idle connections, so the
//! client keeps none.

use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// How long `/health` waits for Caddy before calling it unreachable.
pub const REACHABLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest `GET /config/` read. 5,000 sites adapt to a few MiB of JSON; far more than that
/// is not a config this agent loaded, and is not buffered.
pub(crate) const MAX_CONFIG_BYTES: usize = 256 * 1024 * 1024;

/// Where Caddy's admin API listens: an `http://host:port` URL on loopback, parsed.
///
/// Only loopback is accepted because Caddy's admin API has no authentication of its own;
/// the agent's token is what guards it, and only while the API stays local.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaddyAdmin {
    raw: String,
    /// `host:port`, IPv6 in brackets: what Caddy's `admin` option and `Host` header take.
    authority: String,
}

impl CaddyAdmin {
    /// Parses `http://host:port` where host is `localhost` or a loopback IP.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let expected =
            "must be an http://host:port URL on this machine, e.g. http://localhost:2019";
        let url = reqwest::Url::parse(raw).map_err(|e| format!("{expected} ({e}), got {raw:?}"))?;
        if url.scheme() != "http"
            || !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!("{expected}, got {raw:?}"));
        }
        let host = url.host_str().unwrap_or_default();
        // The URL parser has already lower-cased names and normalised IPs (`127.1`).
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !loopback {
            return Err(format!(
                "Caddy's admin API must stay on this machine: {host:?} is not a loopback \
                 address; use localhost, 127.0.0.1 or [::1] (got {raw:?})"
            ));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{expected}, got {raw:?}"))?;
        Ok(Self {
            raw: raw.to_string(),
            authority: format!("{host}:{port}"),
        })
    }

    /// `host:port` exactly as the Caddyfile's `admin` global option must name it, so that a
    /// loaded Caddyfile keeps the admin endpoint where the agent looks for it.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.authority)
    }
}

impl Default for CaddyAdmin {
    fn default() -> Self {
        Self::parse("http://localhost:2019").expect("the default admin URL parses")
    }
}

impl TryFrom<String> for CaddyAdmin {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        Self::parse(&raw)
    }
}

impl From<CaddyAdmin> for String {
    fn from(admin: CaddyAdmin) -> String {
        admin.raw
    }
}

impl fmt::Display for CaddyAdmin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority)
    }
}

pub use crate::wire::Warning;

/// Why Caddy did not take a Caddyfile.
#[derive(Debug, thiserror::Error)]
pub enum CaddyError {
    /// Caddy answered with an error status; `message` is its own text.
    #[error("Caddy refused it ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// Caddy did not answer, or not in time.
    #[error("{0}")]
    Unreachable(String),
}

/// Talks to one Caddy's admin API.
#[derive(Debug, Clone)]
pub struct CaddyClient {
    admin: CaddyAdmin,
    http: reqwest::Client,
    load_timeout: Duration,
}

impl CaddyClient {
    pub fn new(admin: CaddyAdmin, load_timeout: Duration) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            // A proxy from the environment must never sit between the agent and loopback.
            .no_proxy()
            // Caddy restarts its admin server on every load and closes the old server's idle
            // connections, so a pooled connection fails the next request ("connection closed
            // before message completed"). A fresh loopback connection per request is cheap.
            .pool_max_idle_per_host(0)
            .connect_timeout(REACHABLE_TIMEOUT)
            .user_agent(concat!("gatehouse-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            admin,
            http,
            load_timeout,
        })
    }

    pub fn admin(&self) -> &CaddyAdmin {
        &self.admin
    }

    /// `POST /load`: Caddy replaces its running configuration with this Caddyfile, or keeps
    /// the old one and says why not.
    pub async fn load(&self, caddyfile: Bytes) -> Result<Vec<Warning>, CaddyError> {
        let body = self.post_caddyfile("/load", caddyfile).await?;
        Ok(parse_load_warnings(&body))
    }

    /// `POST /adapt`: Caddy parses the Caddyfile into its JSON without loading it. Errors that
    /// only show when modules are provisioned (a bad regexp, say) are not caught here.
    pub async fn adapt(&self, caddyfile: Bytes) -> Result<Vec<Warning>, CaddyError> {
        self.adapt_json(caddyfile)
            .await
            .map(|(_, warnings)| warnings)
    }

    /// [`CaddyClient::adapt`], keeping the JSON Caddy would run: what the hub judges a
    /// `user`'s site on.
    pub async fn adapt_json(
        &self,
        caddyfile: Bytes,
    ) -> Result<(serde_json::Value, Vec<Warning>), CaddyError> {
        #[derive(Deserialize)]
        struct Adapted {
            #[serde(default)]
            result: serde_json::Value,
            #[serde(default)]
            warnings: Vec<Warning>,
        }
        let body = self.post_caddyfile("/adapt", caddyfile).await?;
        serde_json::from_slice::<Adapted>(&body)
            .map(|adapted| (adapted.result, adapted.warnings))
            .map_err(|e| {
                CaddyError::Unreachable(format!("Caddy's /adapt answer is not what 2.6 sends: {e}"))
            })
    }

    /// Whether `GET /config/` answers 200 within [`REACHABLE_TIMEOUT`]. The body is never
    /// read: only the status matters and the configuration can be megabytes.
    pub async fn reachable(&self) -> bool {
        let request = self
            .request(reqwest::Method::GET, "/config/")
            .timeout(REACHABLE_TIMEOUT);
        match request.send().await {
            Ok(response) => response.status() == reqwest::StatusCode::OK,
            Err(err) => {
                tracing::debug!(error = %chain(&err), "Caddy's admin API does not answer");
                false
            }
        }
    }

    /// The same client aimed at another admin address (where a config loaded outside the
    /// agent may have moved Caddy's admin endpoint).
    pub(crate) fn at(&self, admin: CaddyAdmin) -> Self {
        Self {
            admin,
            ..self.clone()
        }
    }

    /// `GET /config/`: the JSON Caddy runs now, as Caddy prints it, at most
    /// [`MAX_CONFIG_BYTES`] and within [`REACHABLE_TIMEOUT`] (a `/health` waits for it).
    pub(crate) async fn running_config(&self) -> Result<Vec<u8>, CaddyError> {
        self.config_at("/config/").await
    }

    /// `GET <path>` of Caddy's config API, as [`CaddyClient::running_config`] reads it.
    async fn config_at(&self, path: &str) -> Result<Vec<u8>, CaddyError> {
        let failed = |err: reqwest::Error| CaddyError::Unreachable(root_cause(&err));
        let mut response = self
            .request(reqwest::Method::GET, path)
            .timeout(REACHABLE_TIMEOUT)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_CONFIG_BYTES {
                return Err(CaddyError::Unreachable(format!(
                    "Caddy's config is larger than {} MiB",
                    MAX_CONFIG_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(CaddyError::Rejected {
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        Ok(body)
    }

    /// When the Caddy process started, as its admin API's `/metrics` says
    /// (`process_start_time_seconds`, kept as text: it is only compared). A different value
    /// than at the last load means Caddy was restarted and runs its startup config. `None`
    /// when Caddy does not answer or does not say.
    pub async fn started_at(&self) -> Option<String> {
        let response = self
            .request(reqwest::Method::GET, "/metrics")
            .timeout(REACHABLE_TIMEOUT)
            .send()
            .await
            .ok()?;
        if response.status() != reqwest::StatusCode::OK {
            return None;
        }
        process_start_time(&response.text().await.ok()?)
    }

    /// Every address Caddy's HTTP servers listen on, as its running config names them
    /// (`":8080"`, `"127.0.0.1:443"`, `"tcp/[::1]:80-81"`): where a visitor's request for a
    /// site reaches this Caddy. Empty when no HTTP app runs.
    pub(crate) async fn listeners(&self) -> Result<Vec<String>, CaddyError> {
        let body = match self.config_at("/config/apps/http/servers").await {
            Ok(body) => body,
            // No HTTP app (or no config at all) to traverse: no HTTP server listens.
            Err(CaddyError::Rejected {
                status: 400,
                message,
            }) if message.contains("invalid traversal path") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        #[derive(Deserialize)]
        struct Server {
            #[serde(default)]
            listen: Vec<String>,
        }
        let servers: Option<std::collections::BTreeMap<String, Server>> =
            serde_json::from_slice(&body).map_err(|e| {
                CaddyError::Unreachable(format!("Caddy's HTTP servers are not what 2.6 sends: {e}"))
            })?;
        Ok(servers
            .into_iter()
            .flatten()
            .flat_map(|(_, server)| server.listen)
            .collect())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let authority = self.admin.authority();
        self.http
            .request(method, self.admin.url(path))
            .header(reqwest::header::HOST, authority)
            .header(reqwest::header::ORIGIN, format!("http://{authority}"))
    }

    /// Sends a Caddyfile and returns the body of a 2xx answer.
    async fn post_caddyfile(&self, path: &str, caddyfile: Bytes) -> Result<Bytes, CaddyError> {
        let unreachable = |err: reqwest::Error| {
            let reason = if err.is_timeout() {
                format!("no answer within {} s", self.load_timeout.as_secs())
            } else {
                root_cause(&err)
            };
            tracing::warn!(admin = %self.admin, path, error = %chain(&err), "Caddy's admin API failed");
            CaddyError::Unreachable(format!(
                "Caddy's admin API at {} did not answer: {reason}",
                self.admin
            ))
        };
        let response = self
            .request(reqwest::Method::POST, path)
            .header(reqwest::header::CONTENT_TYPE, "text/caddyfile")
            .timeout(self.load_timeout)
            .body(caddyfile)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(body);
        }
        Err(CaddyError::Rejected {
            status: status.as_u16(),
            message: error_message(&body),
        })
    }
}

/// The value of `process_start_time_seconds` in Prometheus text.
fn process_start_time(metrics: &str) -> Option<String> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix("process_start_time_seconds ")?.trim();
        (!value.is_empty()).then(|| value.to_string())
    })
}

/// `/load` answers an empty body, or a JSON array of warnings. Anything else is kept as one
/// warning rather than dropped, so an unexpected answer is seen.
fn parse_load_warnings(body: &[u8]) -> Vec<Warning> {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(text).unwrap_or_else(|_| {
        vec![Warning {
            file: String::new(),
            line: 0,
            message: text.to_string(),
        }]
    })
}

/// Caddy's own error text: the `error` field of its JSON, or the raw body if it is not JSON.
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct CaddyErrorBody {
        error: String,
    }
    match serde_json::from_slice::<CaddyErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => String::from_utf8_lossy(body).trim_end().to_string(),
    }
}

/// The innermost cause (e.g. `Connection refused (os error 111)`): reqwest's own message
/// only says that sending failed.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

/// The whole cause chain, for the log.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(source) = current {
        out.push_str(": ");
        out.push_str(&source.to_string());
        current = source.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_admin_urls_give_the_address_the_caddyfile_must_name() {
        for (raw, authority) in [
            ("http://localhost:2019", "localhost:2019"),
            ("http://127.0.0.1:2019/", "127.0.0.1:2019"),
            ("http://[::1]:2999", "[::1]:2999"),
            ("http://LOCALHOST:2019", "localhost:2019"),
            ("http://127.0.0.1", "127.0.0.1:80"),
        ] {
            let admin = CaddyAdmin::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(admin.authority(), authority, "{raw}");
        }
    }

    #[test]
    fn admin_urls_off_this_machine_or_not_plain_http_are_refused() {
        for raw in [
            "http://10.0.0.5:2019",
            "http://192.168.1.1:2019",
            "http://0.0.0.0:2019",
            "http://[::]:2019",
            "http://caddy.example.com:2019",
            "http://localhost.example.com:2019",
            "https://localhost:2019",
            "http://user:pw@localhost:2019",
            "http://localhost:2019/config/",
            "http://localhost:2019/?x=1",
            "localhost:2019",
            "",
        ] {
            assert!(CaddyAdmin::parse(raw).is_err(), "{raw} was accepted");
        }
        let err = CaddyAdmin::parse("http://10.0.0.5:2019").unwrap_err();
        assert!(err.contains("loopback"), "{err}");
    }

    #[test]
    fn load_warnings_are_read_from_caddys_json_array() {
        assert!(parse_load_warnings(b"").is_empty());
        assert!(parse_load_warnings(b"\n").is_empty());
        let warnings = parse_load_warnings(
            br#"[{"file":"Caddyfile","line":7,"message":"Caddyfile input is not formatted"}]"#,
        );
        assert_eq!(
            warnings,
            vec![Warning {
                file: "Caddyfile".into(),
                line: 7,
                message: "Caddyfile input is not formatted".into()
            }]
        );
        let odd = parse_load_warnings(b"something else");
        assert_eq!(odd[0].message, "something else");
    }

    #[test]
    fn caddys_process_start_is_read_from_its_metrics() {
        let metrics = "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
                       # TYPE process_start_time_seconds gauge\n\
                       process_start_time_seconds 1.79532677855e+09\n\
                       process_virtual_memory_bytes 1.2e+09\n";
        assert_eq!(
            process_start_time(metrics).as_deref(),
            Some("1.79532677855e+09")
        );
        assert_eq!(process_start_time("go_goroutines 12\n"), None);
    }

    #[test]
    fn caddys_error_is_its_json_error_field_or_else_the_raw_body() {
        assert_eq!(
            error_message(b"{\"error\":\"Caddyfile:8: unrecognized directive: frobnicate\"}\n"),
            "Caddyfile:8: unrecognized directive: frobnicate"
        );
        assert_eq!(error_message(b"bad gateway\n"), "bad gateway");
    }
}
