//! The hub's side of the agents: the HTTP client, the deploy pipeline that keeps every
//! Caddy equal to the database or changes nothing, and the reconciler that catches up
//! agents that were away.

pub mod client;
pub mod deploy;
pub mod logs;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by every request and the reconciler.
pub struct Fleet {
    pub http: reqwest::Client,
    /// Held for the whole of a deploy or a reconcile push: pushes never interleave, so what
    /// an agent runs is always some committed state of the database, in order.
    pub deploy_lock: tokio::sync::Mutex<()>,
    pub push_timeout: Duration,
    /// When each agent may next be retried after a failure, and the current backoff.
    backoff: Mutex<HashMap<i64, (Instant, Duration)>>,
}

/// Health checks are quick or the agent counts as away.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Fleet {
    pub fn new(push_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a reqwest client with rustls builds");
        Self {
            http,
            deploy_lock: tokio::sync::Mutex::new(()),
            push_timeout,
            backoff: Mutex::new(HashMap::new()),
        }
    }

    /// Whether the reconciler should try `agent` now.
    pub fn due(&self, agent: i64) -> bool {
        self.backoff
            .lock()
            .expect("backoff lock")
            .get(&agent)
            .is_none_or(|(next, _)| Instant::now() >= *next)
    }

    /// Doubles the wait before the next try (from `base`, at most five minutes).
    pub fn failed(&self, agent: i64, base: Duration) {
        let mut map = self.backoff.lock().expect("backoff lock");
        let wait = map
            .get(&agent)
            .map_or(base, |(_, w)| (*w * 2).min(MAX_BACKOFF));
        map.insert(agent, (Instant::now() + wait, wait));
    }

    pub fn succeeded(&self, agent: i64) {
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
