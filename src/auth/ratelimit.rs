//! A sliding one-minute window of attempts per key (`ip:…`, `account:…`), in memory.
//! Every attempt counts while it runs, so the next one after the limit is refused even when it
//! would have been right: a guesser learns nothing from it, and many guesses sent at once
//! cannot all slip in before the first fails. An attempt that turns out right is then
//! [refunded](Limiter::refund): only failures use up the limit, so a team signing in from
//! behind one address does not lock itself out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Stale keys are swept when the map grows past this, so memory stays bounded.
const SWEEP_AT: usize = 10_000;

pub struct Limiter {
    per_window: usize,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Limiter {
    pub fn per_minute(limit: u32) -> Self {
        Self {
            per_window: limit.max(1) as usize,
            hits: Mutex::new(HashMap::new()),
        }
    }

    /// Records an attempt under every key, or refuses it with the seconds to wait when any
    /// key is already at its limit (a refused attempt is not recorded).
    pub fn attempt(&self, keys: &[String]) -> Result<(), u64> {
        self.attempt_at(keys, Instant::now())
    }

    fn attempt_at(&self, keys: &[String], now: Instant) -> Result<(), u64> {
        let mut hits = self.hits.lock().expect("limiter lock");
        if hits.len() > SWEEP_AT {
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let mut wait = None;
        for key in keys {
            if let Some(q) = hits.get_mut(key) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    q.pop_front();
                }
                if q.len() >= self.per_window {
                    let oldest = *q.front().expect("non-empty at the limit");
                    let secs = (WINDOW - now.duration_since(oldest)).as_secs_f64().ceil() as u64;
                    wait = Some(wait.map_or(secs, |w: u64| w.max(secs)).max(1));
                }
            }
        }
        if let Some(secs) = wait {
            return Err(secs);
        }
        for key in keys {
            hits.entry(key.clone()).or_default().push_back(now);
        }
        Ok(())
    }

    /// Takes back one attempt under every key: the one [`Limiter::attempt`] just recorded for
    /// an attempt that succeeded.
    pub fn refund(&self, keys: &[String]) {
        let mut hits = self.hits.lock().expect("limiter lock");
        for key in keys {
            if let Some(q) = hits.get_mut(key) {
                q.pop_back();
                if q.is_empty() {
                    hits.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attempt_after_the_limit_is_refused_until_the_window_passes() {
        let limiter = Limiter::per_minute(5);
        let keys = vec!["ip:1".to_string(), "account:a".to_string()];
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(
                limiter
                    .attempt_at(&keys, t0 + Duration::from_secs(i))
                    .is_ok()
            );
        }
        let wait = limiter
            .attempt_at(&keys, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, 50);
        assert!(
            limiter
                .attempt_at(&keys, t0 + Duration::from_secs(61))
                .is_ok()
        );
    }

    #[test]
    fn refunded_attempts_do_not_use_up_the_limit() {
        let limiter = Limiter::per_minute(2);
        let keys = vec!["ip:1".to_string()];
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limiter.attempt_at(&keys, t0).is_ok());
            limiter.refund(&keys);
        }
        assert!(limiter.attempt_at(&keys, t0).is_ok());
        assert!(limiter.attempt_at(&keys, t0).is_ok());
        assert!(
            limiter.attempt_at(&keys, t0).is_err(),
            "failures still count"
        );
    }

    #[test]
    fn one_exhausted_key_blocks_even_with_a_fresh_one() {
        let limiter = Limiter::per_minute(2);
        let t0 = Instant::now();
        let a = |acct: &str| vec!["ip:9".to_string(), format!("account:{acct}")];
        assert!(limiter.attempt_at(&a("x"), t0).is_ok());
        assert!(limiter.attempt_at(&a("y"), t0).is_ok());
        assert!(
            limiter.attempt_at(&a("z"), t0).is_err(),
            "the IP is spent across accounts"
        );
        assert!(
            limiter
                .attempt_at(&["ip:other".into(), "account:z".into()], t0)
                .is_ok()
        );
    }
}
