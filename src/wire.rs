//! The JSON the agent answers the hub with, one type per shape. The agent writes these and
//! the hub's client reads them, so both sides agree on every field. Reading is lenient where
//! an agent older than a field (or a stand-in answering for one) leaves it out.

use crate::domain::access_log::Entry;
use serde::{Deserialize, Serialize};

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok`: the agent answered. Caddy's state is in `caddy`.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub agent_version: String,
    pub caddy: CaddyHealth,
    /// [`config_hash`](crate::domain::caddyfile::config_hash) of the last Caddyfile Caddy accepted from this agent process; `None`
    /// until the first successful reload (the agent does not know what Caddy ran before), and
    /// again once Caddy's process has restarted since (it then runs its startup config).
    pub applied_hash: Option<String>,
    /// Whether Caddy still runs what this agent loaded (compared through `GET /config/`).
    /// Absent from agents older than this field, read as `unknown`.
    #[serde(default)]
    pub running: Running,
    #[serde(default)]
    pub access_log: String,
    /// The API is served over HTTPS (`tls_cert` and `tls_key` are set).
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub log: LogHealth,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaddyHealth {
    /// `GET /config/` answered 200 within two seconds.
    #[serde(default)]
    pub reachable: bool,
    /// `caddy version` as read once at start, `None` if that failed.
    pub version: Option<String>,
    /// Caddy's admin `host:port`; the hub's Caddyfile must carry it in `admin`.
    #[serde(default)]
    pub admin: String,
    /// Where the same Caddy process's admin API answers instead, when a config loaded outside
    /// the agent moved it (`running` is then `admin_moved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<String>,
}

/// Whether Caddy runs the config this agent loaded last, in `/health`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Running {
    /// Caddy's `/config/` is the one it had right after the agent's last load (key order and
    /// whitespace aside).
    Matches,
    /// Caddy answers with another config: someone loaded one through its admin API directly.
    Changed,
    /// Caddy's admin API went silent at the configured address, and the same Caddy process
    /// answers at Caddy's default one: a config without `admin` was loaded outside the agent.
    /// The agent's next reload goes there and moves it back.
    AdminMoved,
    /// Nothing to compare with (no load since the agent or Caddy started), Caddy cannot be
    /// read, or a load is under way. Also what the hub reads for a value it does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// `POST /caddy/reload`, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReloadOutcome {
    /// 200: Caddy runs this Caddyfile now; `warnings` are Caddy's (e.g. not `caddy fmt`-clean).
    Applied {
        hash: String,
        warnings: Vec<Warning>,
    },
    /// 422: Caddy refused it and keeps its previous configuration.
    Rejected { caddy_status: u16, error: String },
    /// 502: Caddy did not answer; nothing is known to have changed.
    CaddyUnreachable { error: String },
}

/// `POST /caddy/validate`, tagged by `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ValidateOutcome {
    /// 200: Caddy's adapter accepts it.
    Valid { warnings: Vec<Warning> },
    /// 422: Caddy's adapter refuses it, in its own words.
    Invalid { error: String },
    /// 502: Caddy did not answer.
    CaddyUnreachable { error: String },
}

/// `POST /caddy/adapt`, tagged by `status`: what Caddy would run for a Caddyfile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AdaptOutcome {
    /// 200: Caddy's JSON for it, nothing loaded.
    Adapted {
        result: serde_json::Value,
        warnings: Vec<Warning>,
    },
    /// 422: Caddy's adapter refuses it, in its own words.
    Invalid { error: String },
    /// 502: Caddy did not answer.
    CaddyUnreachable { error: String },
}

/// Any refusal that is not Caddy's: bad token (401), body not UTF-8 (400), too large (413).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// One of Caddy's warnings about an accepted Caddyfile, e.g. that it is not `caddy fmt`-clean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub line: u64,
    #[serde(default)]
    pub message: String,
}

/// `GET /logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogsPage {
    /// Oldest first.
    #[serde(default)]
    pub entries: Vec<Entry>,
    /// The newest id the agent accounts for (see
    /// [`LogStore::last_id`](crate::agent::logs::LogStore::last_id)); pass it as `since` to
    /// `/logs/stream` to follow on from here.
    #[serde(default)]
    pub last_id: u64,
    /// Lines of the access log the agent could not read, since it started.
    #[serde(default)]
    pub malformed: u64,
}

/// `/health`'s view of the log: `"log": {"malformed": M, "last_id": N, "file": "<path>"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHealth {
    pub malformed: u64,
    pub last_id: u64,
    pub file: String,
}

/// `event: gap` of `GET /logs/stream`: `missing` entries could not be delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gap {
    pub missing: u64,
}

/// `POST /caddy/probe`'s body: ask the agent's own Caddy for one site, as a visitor would.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRequest {
    /// The site's address as the Caddyfile has it (`http://app.example.com:8080`,
    /// `example.com`, `*.example.com`).
    pub address: String,
    /// The path asked for; `/` when left out.
    #[serde(default = "root_path")]
    pub path: String,
    /// How long the request may take, in milliseconds (the agent keeps it within its own
    /// bounds).
    #[serde(default)]
    pub timeout_ms: u64,
}

fn root_path() -> String {
    "/".into()
}

/// `POST /caddy/probe`, tagged by `status`: what Caddy answered for the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// 200: Caddy answered with HTTP status `code`, `millis` after the request was sent, on
    /// its listener `listener`.
    Answered {
        code: u16,
        millis: u64,
        listener: String,
    },
    /// 200: Caddy's listener for the site gave no answer in time (refused, reset, timed out).
    NoAnswer { error: String, millis: u64 },
    /// 200: Caddy has no listener for the site's port: it does not serve the site.
    NotServed { error: String },
    /// 422: the request names no site (a bad address or path).
    Invalid { error: String },
    /// 502: Caddy's admin API did not answer, so where it listens is unknown.
    CaddyUnreachable { error: String },
}
