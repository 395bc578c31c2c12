//! The hub's side of the agents: the HTTP client, the Caddyfile rendering, the deploy
//! pipeline that keeps every Caddy equal to the database or changes nothing, the
//! reconciler that catches up agents that were away, and quarantine, which sets aside on one
//! agent a site its Caddy refuses when nobody is changing it.

pub(crate) mod client;
pub(crate) mod deploy;
pub mod history;
pub mod logs;
pub(crate) mod progress;
pub(crate) mod push;
pub(crate) mod quarantine;
pub mod reconcile;
pub mod rollout;
pub mod site_config;
pub(crate) mod tls;

use crate::db::agents::Agent;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by every request and the reconciler.
pub struct Fleet {
    /// For agents on plain http or trusted through the public web PKI. Anything that calls
    /// an agent goes through [`Fleet::client_for`], which also knows the other kinds.
    http: reqwest::Client,
    /// Orders the changes: held by a deploy from its dry run to its commit (waiting for each
    /// agent at most `deploy_wait`), and by the reconciler only while it renders and takes
    /// the agent's turn. Always taken before an agent's own lock in [`push::Lanes`], never
    /// after. Taken through [`Fleet::between_deploys`] outside this module.
    deploy_lock: tokio::sync::Mutex<()>,
    /// Each agent's own lock: pushes to one agent run one at a time, in order, and store
    /// their outcome before the next; see [`push`].
    pub(crate) lanes: push::Lanes,
    pub(crate) push_timeout: Duration,
    /// How long a deploy waits for any one agent before leaving it pending.
    pub(crate) deploy_wait: Duration,
    /// When each agent may next be retried after a failure, and the current backoff.
    backoff: Mutex<HashMap<i64, (Instant, Duration)>>,
    /// One client per agent with its own CA or pin, rebuilt when those change: health checks
    /// run every few seconds and should reuse their connections.
    tls_clients: Mutex<HashMap<i64, (tls::Trust, reqwest::Client)>>,
    pub(crate) stats: FleetStats,
}

/// What `/metrics` reports about deploys and pushes.
#[derive(Clone)]
pub(crate) struct FleetStats {
    /// Deploys by outcome: `applied`, `refused` (the change itself), `rejected` (by a Caddy),
    /// `rolled_back` (by the rollout's probe), `failed` (the database).
    pub(crate) deploys: crate::metrics::Outcomes,
    /// How long a deploy took, lock wait included.
    pub(crate) deploy_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Pushes to agents (deploys, restores and the reconciler) by outcome: `applied`,
    /// `rejected`, `unreachable`.
    pub(crate) pushes: crate::metrics::Outcomes,
}

impl FleetStats {
    fn new() -> Self {
        Self {
            deploys: Default::default(),
            deploy_seconds: crate::metrics::histogram(),
            pushes: Default::default(),
        }
    }

    pub(crate) fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "gatehouse_deploys",
            "Changes run through the deploy pipeline, by outcome",
            self.deploys.clone(),
        );
        registry.register(
            "gatehouse_deploy_duration_seconds",
            "Time a deploy took, from request to commit or rollback",
            self.deploy_seconds.clone(),
        );
        registry.register(
            "gatehouse_agent_pushes",
            "Caddyfiles pushed to agents, by outcome",
            self.pushes.clone(),
        );
    }
}

/// Health checks are quick or the agent counts as away.
pub(crate) const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// `fleet.deploy_wait_secs` unless configured.
const DEFAULT_DEPLOY_WAIT: Duration = Duration::from_secs(5);

impl Fleet {
    pub(crate) fn new(push_timeout: Duration) -> Self {
        let http = tls::base_client()
            .build()
            .expect("a reqwest client with rustls builds");
        Self {
            http,
            deploy_lock: tokio::sync::Mutex::new(()),
            lanes: push::Lanes::default(),
            push_timeout,
            deploy_wait: DEFAULT_DEPLOY_WAIT.min(push_timeout),
            backoff: Mutex::new(HashMap::new()),
            tls_clients: Mutex::new(HashMap::new()),
            stats: FleetStats::new(),
        }
    }

    /// A deploy waits at most `wait` for any one agent (see [`push::push_bounded`]).
    pub(crate) fn with_deploy_wait(mut self, wait: Duration) -> Self {
        self.deploy_wait = wait;
        self
    }

    /// The client that trusts `agent` the way its record says; an error says why there is
    /// none (a stored CA or pin that cannot be used), in words for the agents page.
    pub(crate) fn client_for(&self, agent: &Agent) -> Result<reqwest::Client, String> {
        let trust = tls::Trust::of(agent)?;
        if trust == tls::Trust::PublicPki {
            return Ok(self.http.clone());
        }
        let mut clients = self.tls_clients.lock().expect("tls clients lock");
        if let Some((known, client)) = clients.get(&agent.id)
            && *known == trust
        {
            return Ok(client.clone());
        }
        let client = trust.client()?;
        clients.insert(agent.id, (trust, client.clone()));
        Ok(client)
    }

    /// Waits until no deploy is between its dry run and its commit (and the reconciler is not
    /// rendering) and keeps the next one waiting while the returned guard lives: for changes
    /// to the agents themselves, which must not land between a deploy's dry run and its
    /// commit. A push left pending by an earlier deploy may still be under way; it stores
    /// its outcome against the agent's id.
    pub(crate) async fn between_deploys(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.deploy_lock.lock().await
    }

    /// Whether the reconciler should try `agent` now.
    pub(crate) fn due(&self, agent: i64) -> bool {
        self.backoff
            .lock()
            .expect("backoff lock")
            .get(&agent)
            .is_none_or(|(next, _)| Instant::now() >= *next)
    }

    /// Doubles the wait before the next try (from `base`, at most five minutes).
    pub(crate) fn failed(&self, agent: i64, base: Duration) {
        let mut map = self.backoff.lock().expect("backoff lock");
        let wait = map
            .get(&agent)
            .map_or(base, |(_, w)| (*w * 2).min(MAX_BACKOFF));
        map.insert(agent, (Instant::now() + wait, wait));
    }

    pub(crate) fn succeeded(&self, agent: i64) {
        self.backoff.lock().expect("backoff lock").remove(&agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_limit_and_resets_on_success() {
        let fleet = Fleet::new(Duration::from_secs(1));
        assert!(fleet.due(1));
        fleet.failed(1, Duration::from_secs(5));
        assert!(!fleet.due(1));
        for _ in 0..10 {
            fleet.failed(1, Duration::from_secs(5));
        }
        assert_eq!(fleet.backoff.lock().unwrap()[&1].1, MAX_BACKOFF);
        fleet.succeeded(1);
        assert!(fleet.due(1));
    }
}
