//! A deploy's progress, agent by agent, for whoever waits on it: the portal shows it while
//! a deploy takes longer than a person should wait for an answer.
//!
//! The one who asks for a deploy runs it inside [`Watch::watching`]; the pipeline reports
//! to the watch of the task it runs in ([`started`], [`track`]), and [`carry`] takes that
//! watch along into the task a deploy is moved to. A deploy nobody watches reports to
//! nobody.

use super::client::Push;
use super::history::{Outcome, Report};
use std::future::Future;
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static WATCH: Watch;
}

/// One agent's part of a deploy: under way (`None`) or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub agent_id: i64,
    pub agent: String,
    pub outcome: Option<Outcome>,
}

/// Where a deploy reports its progress; cheap to clone, shared by the deploy and its
/// watchers.
#[derive(Clone, Default)]
pub(crate) struct Watch(Arc<Mutex<Vec<Step>>>);

impl Watch {
    /// Runs `f` with this watch receiving the progress of the deploys it runs.
    pub(crate) async fn watching<F: Future>(self, f: F) -> F::Output {
        WATCH.scope(self, f).await
    }

    /// Every agent's step so far (empty until the deploy has planned its pushes).
    pub(crate) fn steps(&self) -> Vec<Step> {
        self.0.lock().expect("progress lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Step>)) {
        f(&mut self.0.lock().expect("progress lock"));
    }
}

/// `f`, reporting to the watch of the current task: for a deploy spawned into a task of
/// its own.
pub(crate) fn carry<F: Future>(f: F) -> impl Future<Output = F::Output> {
    let watch = WATCH.try_with(Watch::clone).unwrap_or_default();
    WATCH.scope(watch, f)
}

fn report(f: impl FnOnce(&mut Vec<Step>)) {
    let _ = WATCH.try_with(|w| w.update(f));
}

/// The deploy pushes to these agents (by id and name), all under way.
pub(crate) fn started<'a>(agents: impl IntoIterator<Item = (i64, &'a str)>) {
    let steps = agents
        .into_iter()
        .map(|(agent_id, agent)| Step {
            agent_id,
            agent: agent.to_string(),
            outcome: None,
        })
        .collect();
    report(|s| *s = steps);
}

/// Awaits `push` (what a deploy does for agent `agent`: `None` when nothing was needed)
/// and reports how it ended.
pub(crate) async fn track(agent: i64, push: impl Future<Output = Option<Push>>) -> Option<Push> {
    let outcome = push.await;
    let done = Report::of([(agent, "")], std::slice::from_ref(&outcome));
    if let Some(done) = done.agents.into_iter().next() {
        report(|steps| {
            if let Some(step) = steps.iter_mut().find(|s| s.agent_id == agent) {
                step.outcome = Some(done.outcome);
            }
        });
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watched_deploy_reports_each_agent_in_its_own_task_too() {
        let watch = Watch::default();
        let seen = watch.clone();
        watch
            .watching(async {
                tokio::spawn(carry(async {
                    started([(1, "edge-1"), (2, "edge-2")]);
                    track(1, async { None }).await;
                }))
                .await
                .unwrap();
            })
            .await;
        let steps = seen.steps();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].outcome, Some(Outcome::Unchanged));
        assert_eq!(steps[1].outcome, None, "edge-2 is still under way");
    }

    #[tokio::test]
    async fn an_unwatched_deploy_reports_to_nobody() {
        started([(1, "edge-1")]);
        assert_eq!(track(1, async { None }).await, None);
    }
}
