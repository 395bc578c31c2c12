//! Pushes to one agent, one at a time and in order. Every push (a deploy's, a restore's,
//! the reconciler's) runs under that agent's own lock and stores its outcome before it lets
//! the next one in, so the applied hash in the database is always what the agent loaded
//! last. A hanging agent therefore holds up only its own pushes.
//!
//! A deploy waits for each agent at most [`Fleet::deploy_wait`], the wait for its lock
//! included ([`push_bounded`]). An agent that has not answered by then is *pending*: a push
//! that had started is not cancelled, it goes on in its own task and stores its outcome
//! when it ends; one that never got the agent's lock is not made at all. Either way the
//! reconciler, which compares the stored applied hash with the committed render, brings the
//! agent to the committed state afterwards.

use super::Fleet;
use super::client::{self, Push, Pusher};
use crate::db::agents::{self, Agent};
use crate::db::{Db, DbError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One agent's lock, and when the push holding it started.
#[derive(Clone, Default)]
struct Lane {
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Written only by whoever holds `lock`.
    started: Arc<Mutex<Option<Instant>>>,
}

/// Every agent's [`Lane`], made on first use.
#[derive(Default)]
pub(crate) struct Lanes(Mutex<HashMap<i64, Lane>>);

impl Lanes {
    fn of(&self, agent: i64) -> Lane {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(agent)
            .or_default()
            .clone()
    }

    /// The agent's turn, once the push under way (if any) has ended.
    async fn turn(&self, agent: i64) -> Turn {
        let lane = self.of(agent);
        let guard = lane.lock.clone().lock_owned().await;
        Turn::new(guard, lane)
    }

    /// The agent's turn if no push to it is under way, without waiting: for the reconciler,
    /// which asks while it holds the deploy lock (the order is always deploy lock, then an
    /// agent's), and must not keep deploys waiting behind a hanging agent.
    pub(crate) fn try_turn(&self, agent: i64) -> Option<Turn> {
        let lane = self.of(agent);
        let guard = lane.lock.clone().try_lock_owned().ok()?;
        Some(Turn::new(guard, lane))
    }
}

/// The right to push to one agent: held from before its push until the outcome is stored.
pub(crate) struct Turn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    lane: Lane,
}

impl Turn {
    fn new(guard: tokio::sync::OwnedMutexGuard<()>, lane: Lane) -> Self {
        *lane.started.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        Self {
            _guard: guard,
            lane,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self
            .lane
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Pushes `text` to `agent` in `turn` with the full push timeout, in a task of its own (a
/// caller that goes away does not cut the push short), and stores the outcome.
pub(crate) async fn push_in_turn(
    db: &Db,
    fleet: &Fleet,
    turn: Turn,
    agent: &Agent,
    text: &str,
) -> Push {
    let task = spawn(db, fleet, turn, agent, text);
    task.await.unwrap_or_else(stopped)
}

/// A push that waits its turn however long the one before takes, with the full push
/// timeout: for looking into a refusal ([`super::quarantine`]) with an agent that has just
/// answered.
pub(crate) async fn push_waiting(db: &Db, fleet: &Fleet, agent: &Agent, text: &str) -> Push {
    let turn = fleet.lanes.turn(agent.id).await;
    push_in_turn(db, fleet, turn, agent, text).await
}

/// A deploy's push: `text` to `agent` in its turn, waiting at most [`Fleet::deploy_wait`]
/// for the turn and the answer together; [`Push::Pending`] past that (see the module doc).
pub(crate) async fn push_bounded(db: &Db, fleet: &Fleet, agent: &Agent, text: &str) -> Push {
    let wait = fleet.deploy_wait;
    let deadline = tokio::time::Instant::now() + wait;
    let lane = fleet.lanes.of(agent.id);
    let guard = match lane.lock.clone().try_lock_owned() {
        Ok(guard) => guard,
        // A push that has already outlived a deploy's wait is not waited for again.
        Err(_) if overdue(&lane, wait) => return pending_behind(),
        Err(_) => match tokio::time::timeout_at(deadline, lane.lock.clone().lock_owned()).await {
            Ok(guard) => guard,
            Err(_) => return pending_behind(),
        },
    };
    let mut task = spawn(db, fleet, Turn::new(guard, lane), agent, text);
    match tokio::time::timeout_at(deadline, &mut task).await {
        Ok(done) => done.unwrap_or_else(stopped),
        Err(_) => {
            tracing::warn!(
                agent = %agent.name,
                "no answer within {} s; the push goes on and the reconciler catches the agent up",
                wait.as_secs()
            );
            Push::Pending {
                why: format!(
                    "no answer within {} s; the push goes on, and the agent is caught up \
                     when it answers",
                    wait.as_secs()
                ),
            }
        }
    }
}

fn overdue(lane: &Lane, wait: Duration) -> bool {
    lane.started
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .is_some_and(|at| at.elapsed() >= wait)
}

fn pending_behind() -> Push {
    Push::Pending {
        why: "an earlier push to this agent has not ended; the agent is caught up when it \
              answers"
            .into(),
    }
}

fn stopped(_: tokio::task::JoinError) -> Push {
    Push::Unreachable {
        error: "the push stopped before the agent answered".into(),
    }
}

fn spawn(
    db: &Db,
    fleet: &Fleet,
    turn: Turn,
    agent: &Agent,
    text: &str,
) -> tokio::task::JoinHandle<Push> {
    let (db, pusher) = (db.clone(), Pusher::for_agent(fleet, agent));
    let (agent, text) = (agent.clone(), text.to_owned());
    tokio::spawn(async move {
        let push = client::push(&pusher, &agent, &text).await;
        if let Err(error) = record(&db, agent.id, &push).await {
            tracing::error!(agent = %agent.name, %error, "the outcome of a push could not be stored");
        }
        if let Push::Rejected { error } = &push {
            tracing::warn!(agent = %agent.name, %error, "Caddy rejected a push");
        }
        drop(turn);
        push
    })
}

/// Stores what a push did: the hash the agent now runs, or why it runs what it ran before.
async fn record(db: &Db, id: i64, push: &Push) -> Result<(), DbError> {
    let (hash, error) = match push {
        Push::Applied { hash, .. } => (Some(hash.clone()), None),
        Push::Rejected { error } | Push::Unreachable { error } => (None, Some(error.clone())),
        Push::Pending { .. } => return Ok(()),
    };
    db.run(move |c| {
        // Without an fsync of its own: one per agent per deploy was a tenth of the hub's CPU
        // at 50 agents. The next commit makes it durable; losing it to a power cut only
        // makes the reconciler push again, and the agent's `/health` reports its hash anyway.
        c.pragma_update(None, "synchronous", "NORMAL")?;
        let stored = agents::record_push(c, id, hash.as_deref(), error.as_deref());
        c.pragma_update(None, "synchronous", "FULL")?;
        stored
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_agent_has_one_turn_at_a_time_and_others_are_free() {
        let lanes = Lanes::default();
        let turn = lanes.try_turn(1).expect("a free agent's turn");
        assert!(lanes.try_turn(1).is_none(), "taken while a push runs");
        assert!(lanes.try_turn(2).is_some(), "another agent is not held up");
        let lane = lanes.of(1);
        assert!(overdue(&lane, Duration::ZERO), "a push under way");
        assert!(!overdue(&lane, Duration::from_secs(60)));
        drop(turn);
        assert!(
            !overdue(&lane, Duration::ZERO),
            "nothing under way once it ends"
        );
        assert!(lanes.try_turn(1).is_some(), "free again once the push ends");
    }
}
