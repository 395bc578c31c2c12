//! The deploy pipeline: validate → database → render per agent → push in parallel.
//!
//! Under the fleet's deploy lock, the change is first applied in a transaction that is
//! rolled back, only to render what every agent would run before and after it. The new
//! configs are pushed in parallel (in stages under a rollout policy, see [`super::rollout`]).
//! If any Caddy rejects its config, or a probed stage got worse, the agents that took the
//! new one get their previous one back and nothing is committed. Otherwise the change is
//! applied again and committed (nothing else can write vhosts meanwhile: same lock). An
//! agent that cannot be reached does not block the change; it is left out of sync for the
//! reconciler.
//!
//! No agent holds up the others. Pushes to one agent are ordered by that agent's own lock
//! ([`super::push`]) and each stores its outcome before releasing it, so the applied hash
//! stored for an agent is always what it loaded last. The deploy lock orders the commits,
//! but a deploy waits for any one agent at most `fleet.deploy_wait_secs`, the wait for its
//! lock included. An agent that has not answered by then is *pending*: it is left out of
//! this deploy (its rejection, should one come, no longer stops the change), its push goes
//! on in the background and stores its own outcome, and the reconciler, which compares the
//! stored applied hash with the committed render, catches it up afterwards. That keeps the
//! guarantee: what an agent runs is always some committed state of the database, or is
//! about to be caught up to it. A pending push can only land what this deploy rendered
//! (committed, or put back everywhere else and never committed); either way its outcome is
//! stored in order with that agent's other pushes, and an applied hash that differs from
//! the committed render is what the reconciler looks for. A late rejection leaves the
//! agent on its previous config with the error stored, and the reconciler tries again.
//!
//! [`plan`] is the dry run alone: what each agent's Caddyfile would become, with nothing
//! pushed or stored, for a person to see before they apply.

use super::Fleet;
use super::client::Push;
use super::history::{self, Ending};
use super::progress;
use super::quarantine::{self, AfterChange, Quarantined};
use super::{push, rollout, site_config};
use crate::config::CaddyConfig;
use crate::db::agents::{self, Agent};
use crate::db::changelog::Author;
use crate::db::users::User;
use crate::db::vhosts::{self, Vhost};
use crate::db::{Db, DbError};
use rusqlite::Connection;

/// Why a change did not go through. `E` is the change's own refusal.
#[derive(Debug)]
pub enum DeployError<E> {
    /// The change itself was refused (taken domain, gone, …).
    Refused(E),
    /// A Caddy rejected the new config: nothing changed anywhere.
    Rejected { agent: String, error: String },
    /// The rollout's probe found the canary stage worse after the change: every agent got
    /// its previous config back, nothing changed.
    Worse(rollout::ProbeFailure),
    /// The database failed around the change.
    Db(DbError),
}

impl<E> From<DbError> for DeployError<E> {
    fn from(e: DbError) -> Self {
        DeployError::Db(e)
    }
}

/// A change as the pipeline runs it: twice (a dry run, then for real), each time inside a
/// transaction it does not open itself.
pub trait Change<T, E>:
    Fn(&Connection, &Author<'_>) -> Result<T, E> + Clone + Send + Sync + 'static
{
}

impl<T, E, F> Change<T, E> for F where
    F: Fn(&Connection, &Author<'_>) -> Result<T, E> + Clone + Send + Sync + 'static
{
}

/// What one agent gets from a deploy.
struct Step {
    agent: Agent,
    after: String,
    after_hash: String,
    /// The sites after the change, for setting aside one the change did not touch.
    change: std::sync::Arc<AfterChange>,
}

fn all_vhosts(c: &Connection) -> Result<Vec<Vhost>, DbError> {
    vhosts::list(c, &vhosts::Filter::default())
}

/// Runs `change` through the whole pipeline on behalf of `user`, under the fleet's deploy
/// lock.
async fn deploy<T, E, F>(
    db: &Db,
    fleet: &Fleet,
    caddy: &CaddyConfig,
    user: &User,
    change: F,
) -> Result<T, DeployError<E>>
where
    F: Change<T, E>,
    T: Send + 'static,
    E: Send + 'static,
{
    let started = std::time::Instant::now();
    let result = run_deploy(db, fleet, caddy, user, change).await;
    let outcome = match &result {
        Ok(_) => "applied",
        Err(DeployError::Refused(_)) => "refused",
        Err(DeployError::Rejected { .. }) => "rejected",
        Err(DeployError::Worse(_)) => "rolled_back",
        Err(DeployError::Db(_)) => "failed",
    };
    let stats = &fleet.stats;
    stats
        .deploys
        .get_or_create(&crate::metrics::OutcomeLabels::of(outcome))
        .inc();
    stats
        .deploy_seconds
        .observe(started.elapsed().as_secs_f64());
    // Off the answer's path: trimming a large heap takes a moment.
    crate::memory::release_freed_later();
    result
}

/// The change applied in a transaction that is rolled back: what each agent would run after
/// it, and every site as stored before it and after it.
async fn dry_run<T, E, F>(
    db: &Db,
    caddy: &CaddyConfig,
    user: &User,
    change: F,
) -> Result<(Vec<Step>, Vec<Vhost>, Vec<Vhost>), DeployError<E>>
where
    F: Change<T, E>,
    T: Send + 'static,
    E: Send + 'static,
{
    let (uid, email, caddy_c) = (user.id, user.email.clone(), caddy.clone());
    let plan = db
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let fleet_agents = agents::list(&tx)?;
            let before = all_vhosts(&tx)?;
            if let Err(e) = change(
                &tx,
                &Author {
                    user_id: uid,
                    email: &email,
                },
            ) {
                return Ok(Err(e));
            }
            let after = all_vhosts(&tx)?;
            drop(tx);
            let after = std::sync::Arc::new(AfterChange::new(&before, after));
            // What each agent ran before is rendered only if it has to be put back.
            let parsed = site_config::Parsed::new(&after.sites);
            let steps = fleet_agents
                .into_iter()
                .map(|agent| {
                    let (after_text, after_hash) = after.render(&parsed, &caddy_c, &agent);
                    Step {
                        agent,
                        after: after_text,
                        after_hash,
                        change: after.clone(),
                    }
                })
                .collect::<Vec<_>>();
            let after = after.sites.clone();
            Ok(Ok((steps, before, after)))
        })
        .await?;
    plan.map_err(DeployError::Refused)
}

/// What a change would do to one agent's Caddyfile, as rendered from the database.
#[derive(Debug, Clone)]
pub struct AgentPlan {
    pub agent_id: i64,
    pub agent: String,
    /// The agent's Caddyfile as the sites stand now.
    pub before: String,
    /// Its Caddyfile once the change is made: exactly what the deploy would push.
    pub after: String,
    /// [`config_hash`](crate::domain::caddyfile::config_hash) of `after`: what the agent
    /// reports running once it has the change.
    pub after_hash: String,
}

impl AgentPlan {
    pub fn changed(&self) -> bool {
        self.before != self.after
    }

    /// A unified line diff from `before` to `after` (empty when nothing changes).
    pub fn diff(&self) -> String {
        if !self.changed() {
            return String::new();
        }
        similar::TextDiff::from_lines(&self.before, &self.after)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{} (now)", self.agent),
                &format!("{} (after)", self.agent),
            )
            .to_string()
    }
}

/// What `change` would do on every agent, without doing it: the change runs in a
/// transaction that is rolled back, as the deploy's own dry run, and nothing is pushed. The
/// change's own refusal is reported as a deploy would report it.
pub async fn plan<T, E, F>(
    db: &Db,
    caddy: &CaddyConfig,
    user: &User,
    change: F,
) -> Result<Vec<AgentPlan>, DeployError<E>>
where
    F: Change<T, E>,
    T: Send + 'static,
    E: Send + 'static,
{
    let (steps, before, _) = dry_run(db, caddy, user, change).await?;
    Ok(steps
        .into_iter()
        .map(|s| AgentPlan {
            agent_id: s.agent.id,
            before: site_config::for_agent(caddy, &s.agent, &before).0,
            agent: s.agent.name,
            after: s.after,
            after_hash: s.after_hash,
        })
        .collect())
}

async fn run_deploy<T, E, F>(
    db: &Db,
    fleet: &Fleet,
    caddy: &CaddyConfig,
    user: &User,
    change: F,
) -> Result<T, DeployError<E>>
where
    F: Change<T, E>,
    T: Send + 'static,
    E: Send + 'static,
{
    let _turn = fleet.deploy_lock.lock().await;
    let (change, trace) = history::trace(change);

    // 1. Dry run: render every agent's config before and after, then roll back.
    let (steps, before_vhosts, after_vhosts) = dry_run(db, caddy, user, change.clone()).await?;
    let before = &before_vhosts;
    progress::started(steps.iter().map(|s| (s.agent.id, s.agent.name.as_str())));

    // 2. Push, stage by stage: all agents at once unless a rollout policy stages the change
    //    (see `rollout`), when each canary stage is probed before the next one is pushed.
    //    Within a stage, a refusal caused by a site the change did not touch sets that site
    //    aside on that agent (see `quarantine`); what each agent set aside is its outcome.
    let agents: Vec<&Agent> = steps.iter().map(|s| &s.agent).collect();
    let changed = (before_vhosts.as_slice(), after_vhosts.as_slice());
    let set_aside = std::sync::Mutex::new(Vec::<Quarantined>::new());
    let (staged_steps, set_aside_ref) = (&steps, &set_aside);
    let push = move |members: Vec<usize>| -> futures::future::BoxFuture<'_, _> {
        Box::pin(async move {
            let (outcomes, quarantined) =
                push_stage(db, fleet, caddy, staged_steps, &members).await?;
            set_aside_ref
                .lock()
                .expect("set-aside lock")
                .extend(quarantined);
            Ok(outcomes)
        })
    };
    let (outcomes, worse) = rollout::staged(db, fleet, &agents, changed, push).await?;
    let mut report = history::Report::of(
        steps.iter().map(|s| (s.agent.id, s.agent.name.as_str())),
        &outcomes,
    );
    for q in set_aside.into_inner().expect("set-aside lock") {
        let error = q
            .sites
            .iter()
            .map(|(domain, why)| format!("{domain}: {}", why.error))
            .collect::<Vec<_>>()
            .join("; ");
        report.set(q.agent_id, history::Outcome::Quarantined { error });
    }

    // 3. A rejection anywhere, or a stage made worse: put back the previous config where
    //    the new one landed.
    let failed = worse.map(DeployError::Worse).or_else(|| {
        steps.iter().zip(&outcomes).find_map(|(s, o)| match o {
            Some(Push::Rejected { error }) => Some(DeployError::Rejected {
                agent: s.agent.name.clone(),
                error: error.clone(),
            }),
            _ => None,
        })
    });
    if let Some(failed) = failed {
        let restores = steps.iter().zip(&outcomes).filter_map(|(s, o)| match o {
            Some(Push::Applied { .. }) => Some(async move {
                let text = site_config::for_agent(caddy, &s.agent, before).0;
                let result = push::push_bounded(db, fleet, &s.agent, &text).await;
                (s.agent.id, result)
            }),
            _ => None,
        });
        let restored = futures::future::join_all(restores).await;
        let why = match &failed {
            DeployError::Worse(seen) => {
                format!("a probe found the change made things worse: {seen}")
            }
            DeployError::Rejected { agent, .. } => format!("Caddy on {agent} refused the change"),
            _ => "the change was not made".to_string(),
        };
        let report = report.restored(&restored, &why);
        record(db, restored).await?;
        history::record(db, user, &trace, report, Ending::Rejected).await;
        match &failed {
            DeployError::Worse(seen) => {
                tracing::warn!(probe = %seen, "the change made the canary stage worse; it was undone everywhere");
            }
            DeployError::Rejected { agent, .. } => {
                tracing::warn!(%agent, "Caddy rejected the change; nothing was changed");
            }
            _ => {}
        }
        return Err(failed);
    }

    // 4. Commit the change for real. The lock guarantees it renders as it did in the dry run.
    let result = match commit(db, user, change).await {
        Err(DeployError::Db(e)) => {
            // The agents took a change the database could not keep: give them back the
            // state the database still has.
            let restores = steps.iter().zip(&outcomes).filter_map(|(s, o)| match o {
                Some(Push::Applied { .. }) => Some(async move {
                    let text = site_config::for_agent(caddy, &s.agent, before).0;
                    let result = push::push_bounded(db, fleet, &s.agent, &text).await;
                    (s.agent.id, result)
                }),
                _ => None,
            });
            let restored = futures::future::join_all(restores).await;
            let report = report.restored(&restored, "the database could not keep the change");
            let _ = record(db, restored).await;
            history::record(db, user, &trace, report, Ending::Failed).await;
            return Err(DeployError::Db(e));
        }
        result => result,
    };
    if result.is_ok()
        && let Some(s) = steps.first()
    {
        quarantine::release(db, s.change.touched.clone()).await?;
    }
    let pushed = steps
        .iter()
        .zip(outcomes)
        .filter_map(|(s, o)| o.map(|o| (s.agent.id, o)))
        .collect::<Vec<_>>();
    record(db, pushed).await?;
    if result.is_ok() {
        history::record(db, user, &trace, report, Ending::Committed).await;
    }
    result
}

/// Pushes the new config to the agents `members` (indexes into `steps`) in parallel, where
/// an agent does not already run it: the one place a deploy pushes a change. Each member's
/// outcome, in order (None where nothing had to be pushed), once any refusal caused by a
/// site the change did not touch has been looked into ([`quarantine::in_deploy`]); and what
/// was set aside where.
async fn push_stage(
    db: &Db,
    fleet: &Fleet,
    caddy: &CaddyConfig,
    steps: &[Step],
    members: &[usize],
) -> Result<(Vec<Option<Push>>, Vec<Quarantined>), DbError> {
    // An agent never heard from has no known admin address: pushing could move its Caddy's
    // admin endpoint, so it waits for the reconciler, which asks first.
    let pushes = members.iter().map(|&i| {
        let s = &steps[i];
        progress::track(s.agent.id, async move {
            if s.agent.applied_hash.as_deref() == Some(s.after_hash.as_str()) {
                return None;
            }
            if s.agent.caddy_admin.is_none() {
                // Why it was never reached (refused certificate, …) says more than that it wasn't.
                let error = s.agent.last_error.clone();
                return Some(Push::Unreachable {
                    error: error.unwrap_or_else(|| "not contacted yet".into()),
                });
            }
            Some(push::push_bounded(db, fleet, &s.agent, &s.after).await)
        })
    });
    let outcomes = futures::future::join_all(pushes).await;
    let stage: Vec<(&Agent, &AfterChange)> = members
        .iter()
        .map(|&i| (&steps[i].agent, &*steps[i].change))
        .collect();
    quarantine::in_deploy(db, fleet, caddy, &stage, outcomes).await
}

/// Runs one change for `user` in an IMMEDIATE transaction (so concurrent changes queue
/// rather than interleave) and commits it only when the change succeeds: the change's own
/// refusal, or the database failing ([`DeployError::Db`], after which the agents must be
/// given back what they ran).
async fn commit<T, E, F>(db: &Db, user: &User, change: F) -> Result<T, DeployError<E>>
where
    F: FnOnce(&Connection, &Author<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    let (user_id, email) = (user.id, user.email.clone());
    db.run(move |c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let result = change(
            &tx,
            &Author {
                user_id,
                email: &email,
            },
        );
        if result.is_ok() {
            tx.commit()?;
        }
        Ok(result)
    })
    .await?
    .map_err(DeployError::Refused)
}

/// Runs `change` through the pipeline (see the module doc) in a task of its own: if the
/// request that asked for it times out or its browser goes away, the deploy still finishes
/// (pushes and commit, or restore) instead of stopping between the two.
pub async fn deploy_detached<T, E, F>(
    db: Db,
    fleet: std::sync::Arc<Fleet>,
    caddy: CaddyConfig,
    user: User,
    change: F,
) -> Result<T, DeployError<E>>
where
    F: Change<T, E>,
    T: Send + 'static,
    E: Send + 'static,
{
    let task = tokio::spawn(progress::carry(async move {
        deploy(&db, &fleet, &caddy, &user, change).await
    }));
    match task.await {
        Ok(result) => result,
        Err(e) => Err(DeployError::Db(DbError::Blocking(e.into()))),
    }
}

/// Stores what each push did to its agent beyond what the push stored itself (see
/// [`push`]): an agent that could not be reached is marked offline.
async fn record(db: &Db, outcomes: Vec<(i64, Push)>) -> Result<(), DbError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    db.run(move |c| {
        for (id, outcome) in &outcomes {
            match outcome {
                // Stored by the push itself, in order with the agent's other pushes.
                Push::Applied { .. } | Push::Rejected { .. } => {}
                Push::Unreachable { error } => {
                    agents::record_report(
                        c,
                        *id,
                        &agents::Report {
                            online: false,
                            error: Some(error.clone()),
                            ..Default::default()
                        },
                    )?;
                }
                // Stored by the push itself when it ends.
                Push::Pending { .. } => {}
            }
        }
        Ok(())
    })
    .await
}
