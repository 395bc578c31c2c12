//! The hub's HTTP client for agents: push a Caddyfile, validate one, read health. Every
//! call has a timeout, so a hanging agent never holds up a request or the other agents.

use super::Fleet;
use super::tls::{self, Trust};
use crate::db::agents::{Agent, Report, RunningState};
use crate::wire::{Health, ProbeOutcome, ProbeRequest, Running, Warning};
use serde::Deserialize;
use std::time::Duration;

/// How a push ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// Caddy loaded it; its hash, and Caddy's warnings if any.
    Applied { hash: String, warnings: Vec<String> },
    /// Caddy refused it; its message, verbatim.
    Rejected { error: String },
    /// The agent (or its Caddy) could not be reached, or did not answer in time.
    Unreachable { error: String },
    /// No answer within a deploy's wait for the agent: the push goes on without the deploy,
    /// or the agent is left to the reconciler, and either stores its own outcome (see
    /// [`super::push`]); why, in words for the person.
    Pending { why: String },
}

/// How a validation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    Valid { warnings: Vec<String> },
    Invalid { error: String },
    Unavailable { error: String },
}

/// How an adaptation ended: Caddy's JSON for a Caddyfile, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Adaptation {
    Adapted(serde_json::Value),
    Invalid { error: String },
    Unavailable { error: String },
}

/// Any answer of `/caddy/reload`, `/validate` or `/adapt` (or an [`ErrorBody`]), read
/// by its HTTP status; what a body lacks is empty, and a body that is not JSON reads as
/// empty throughout.
///
/// [`ErrorBody`]: crate::wire::ErrorBody
#[derive(Deserialize, Default)]
#[serde(default)]
struct Answer {
    hash: String,
    warnings: Vec<Warning>,
    error: String,
    /// `/caddy/adapt` only: Caddy's JSON.
    result: Option<serde_json::Value>,
}

fn warnings(list: Vec<Warning>) -> Vec<String> {
    list.into_iter()
        .map(|w| format!("line {}: {}", w.line, w.message))
        .collect()
}

fn endpoint(agent: &Agent, path: &str) -> String {
    format!("{}{path}", agent.url.trim_end_matches('/'))
}

/// Describes a failed call without echoing anything secret. A TLS failure (pin mismatch,
/// unknown CA, …) says which, because "cannot connect" would send people looking at the
/// network instead.
fn describe(e: &reqwest::Error, agent: &Agent) -> String {
    if let Some(why) = Trust::of(agent)
        .ok()
        .and_then(|trust| tls::explain(e, &trust))
    {
        why
    } else if e.is_timeout() {
        "the agent did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the agent".into()
    } else if closed_early(e) {
        "the agent closed the connection before answering (it may have stopped or crashed)".into()
    } else if !crate::domain::tls::is_https(&agent.url) {
        // What an agent serving HTTPS looks like to plain HTTP.
        "the agent's answer could not be read (if it serves HTTPS, its URL must start with \
         https://)"
            .into()
    } else {
        "the agent's answer could not be read".into()
    }
}

/// Why a redirect answer is a failure: agent clients never follow one (see
/// [`tls::base_client`]). Says where it pointed, without any credentials in that address.
pub fn redirected(response: &reqwest::Response) -> Option<String> {
    let status = response.status();
    if !status.is_redirection() {
        return None;
    }
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "nowhere".to_string(), crate::domain::agent_url::redact);
    Some(format!(
        "the agent answered with a redirect ({} to {to}); Gatehouse does not follow an \
         agent's redirects: check the agent's URL",
        status.as_u16()
    ))
}

/// Whether the connection ended, reset or at end of stream, before a whole answer came: what
/// an agent killed in the middle of a request looks like (a TLS server spoken to in plain
/// HTTP answers bytes that are not HTTP instead, and keeps the HTTPS hint below).
fn closed_early(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
            )
        {
            return true;
        }
        // hyper's IncompleteMessage; hyper is not a direct dependency to downcast to.
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = err.source();
    }
    false
}

async fn post(
    fleet: &Fleet,
    agent: &Agent,
    path: &str,
    caddyfile: &str,
    timeout: Duration,
) -> Result<(u16, Answer), String> {
    post_with(&fleet.client_for(agent)?, agent, path, caddyfile, timeout).await
}

async fn post_with(
    http: &reqwest::Client,
    agent: &Agent,
    path: &str,
    caddyfile: &str,
    timeout: Duration,
) -> Result<(u16, Answer), String> {
    let (status, bytes) = send(
        http,
        agent,
        path,
        "text/caddyfile",
        caddyfile.to_string(),
        timeout,
    )
    .await?;
    Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
}

/// POSTs `body` to the agent with its token; the answer's status and body.
async fn send(
    http: &reqwest::Client,
    agent: &Agent,
    path: &str,
    content_type: &'static str,
    body: String,
    timeout: Duration,
) -> Result<(u16, axum::body::Bytes), String> {
    let response = http
        .post(endpoint(agent, path))
        .bearer_auth(agent.token.expose())
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| describe(&e, agent))?;
    if let Some(why) = redirected(&response) {
        return Err(why);
    }
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| describe(&e, agent))?;
    Ok((status, bytes))
}

/// Has the agent ask its own Caddy for a site (`POST /caddy/probe`): what a visitor would
/// get from that Caddy now. Err: the agent itself could not be asked.
pub async fn probe(
    fleet: &Fleet,
    agent: &Agent,
    request: &ProbeRequest,
    timeout: Duration,
) -> Result<ProbeOutcome, String> {
    let body = serde_json::to_string(request).map_err(|e| e.to_string())?;
    let (status, bytes) = send(
        &fleet.client_for(agent)?,
        agent,
        "/caddy/probe",
        "application/json",
        body,
        timeout,
    )
    .await?;
    match (status, serde_json::from_slice::<ProbeOutcome>(&bytes)) {
        (_, Ok(outcome)) => Ok(outcome),
        (401, _) => Err("the agent refused our token".into()),
        (404, _) => Err("the agent is older than this hub (no /caddy/probe); upgrade it".into()),
        (status, _) => Err(format!("the agent answered {status}")),
    }
}

/// What a push needs of the fleet, owned: a push may run on in a task of its own after the
/// deploy that started it has moved on.
pub(crate) struct Pusher {
    /// The client [`Fleet::client_for`] gives for the agent, or why there is none.
    http: Result<reqwest::Client, String>,
    pushes: crate::metrics::Outcomes,
    timeout: Duration,
}

impl Pusher {
    pub(crate) fn for_agent(fleet: &Fleet, agent: &Agent) -> Self {
        Self {
            http: fleet.client_for(agent),
            pushes: fleet.stats.pushes.clone(),
            timeout: fleet.push_timeout,
        }
    }
}

/// Loads `caddyfile` into the agent's Caddy, within the fleet's push timeout. Only
/// [`super::push`] calls this: it keeps pushes to one agent in order.
pub(crate) async fn push(pusher: &Pusher, agent: &Agent, caddyfile: &str) -> Push {
    let push = match &pusher.http {
        Ok(http) => push_once(http, agent, caddyfile, pusher.timeout).await,
        Err(error) => Push::Unreachable {
            error: error.clone(),
        },
    };
    let outcome = match push {
        Push::Applied { .. } => "applied",
        Push::Rejected { .. } => "rejected",
        Push::Unreachable { .. } => "unreachable",
        Push::Pending { .. } => "pending",
    };
    pusher
        .pushes
        .get_or_create(&crate::metrics::OutcomeLabels::of(outcome))
        .inc();
    push
}

async fn push_once(
    http: &reqwest::Client,
    agent: &Agent,
    caddyfile: &str,
    timeout: Duration,
) -> Push {
    match post_with(http, agent, "/caddy/reload", caddyfile, timeout).await {
        Ok((200, a)) if !a.hash.is_empty() => Push::Applied {
            hash: a.hash,
            warnings: warnings(a.warnings),
        },
        // A 200 without a hash is not an agent's answer (a proxy's page, a broken agent).
        Ok((200, _)) => Push::Unreachable {
            error: "the agent's answer could not be read".into(),
        },
        Ok((422, a)) => Push::Rejected { error: a.error },
        Ok((401, _)) => Push::Unreachable {
            error: "the agent refused our token".into(),
        },
        Ok((502, a)) => Push::Unreachable {
            error: format!("the agent cannot reach its Caddy: {}", a.error),
        },
        Ok((status, _)) => Push::Unreachable {
            error: format!("the agent answered {status}"),
        },
        Err(error) => Push::Unreachable { error },
    }
}

pub async fn validate(
    fleet: &Fleet,
    agent: &Agent,
    caddyfile: &str,
    timeout: Duration,
) -> Validation {
    match post(fleet, agent, "/caddy/validate", caddyfile, timeout).await {
        Ok((200, a)) => Validation::Valid {
            warnings: warnings(a.warnings),
        },
        Ok((422, a)) => Validation::Invalid { error: a.error },
        Ok((401, _)) => Validation::Unavailable {
            error: "the agent refused our token".into(),
        },
        Ok((status, a)) => Validation::Unavailable {
            error: format!("the agent answered {status} {}", a.error),
        },
        Err(error) => Validation::Unavailable { error },
    }
}

/// Caddy's JSON for `caddyfile`, through the agent's `/caddy/adapt`; nothing is loaded.
pub async fn adapt(fleet: &Fleet, agent: &Agent, caddyfile: &str, timeout: Duration) -> Adaptation {
    match post(fleet, agent, "/caddy/adapt", caddyfile, timeout).await {
        Ok((
            200,
            Answer {
                result: Some(result),
                ..
            },
        )) => Adaptation::Adapted(result),
        Ok((422, a)) => Adaptation::Invalid { error: a.error },
        Ok((401, _)) => Adaptation::Unavailable {
            error: "the agent refused our token".into(),
        },
        Ok((404, _)) => Adaptation::Unavailable {
            error: "the agent is older than this hub (no /caddy/adapt); upgrade it".into(),
        },
        Ok((status, a)) => Adaptation::Unavailable {
            error: format!("the agent answered {status} {}", a.error),
        },
        Err(error) => Adaptation::Unavailable { error },
    }
}

pub async fn health(fleet: &Fleet, agent: &Agent, timeout: Duration) -> Report {
    let offline = |error: String| Report {
        online: false,
        error: Some(error),
        ..Report::default()
    };
    let http = match fleet.client_for(agent) {
        Ok(http) => http,
        Err(error) => return offline(error),
    };
    let response = match http
        .get(endpoint(agent, "/health"))
        .timeout(timeout)
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            return offline(
                redirected(&r)
                    .unwrap_or_else(|| format!("the agent answered {}", r.status().as_u16())),
            );
        }
        Err(e) => return offline(describe(&e, agent)),
    };
    match response.json::<Health>().await {
        Ok(h) => {
            let running = running_state(h.running, h.caddy.moved_to.as_deref());
            let error = match &running {
                RunningState::ChangedOutside { why } => Some(why.clone()),
                _ => (!h.caddy.reachable).then(|| "the agent cannot reach its Caddy".to_string()),
            };
            Report {
                online: true,
                caddy_reachable: h.caddy.reachable,
                caddy_version: h.caddy.version,
                caddy_admin: Some(h.caddy.admin).filter(|a| !a.is_empty()),
                access_log: Some(h.access_log).filter(|a| !a.is_empty()),
                applied_hash: h.applied_hash,
                running,
                error,
            }
        }
        Err(_) => offline("the agent's health answer could not be read".into()),
    }
}

/// The agent's verdict on what its Caddy runs, in the words the agents page shows.
fn running_state(running: Running, moved_to: Option<&str>) -> RunningState {
    match running {
        Running::Matches => RunningState::Matches,
        Running::Changed => RunningState::ChangedOutside {
            why: "Caddy runs a configuration loaded outside Gatehouse (through its admin API)"
                .into(),
        },
        Running::AdminMoved => RunningState::ChangedOutside {
            why: format!(
                "a configuration loaded outside Gatehouse moved Caddy's admin API to {}",
                moved_to.unwrap_or("another address")
            ),
        },
        Running::Unknown => RunningState::Unknown,
    }
}
