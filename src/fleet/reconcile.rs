//! The reconciler: asks every agent how it is, and pushes the database's config to any that
//! runs something else (it was away, or its Caddy restarted, or someone changed it by hand).
//! Failures back off per agent, from the check interval up to five minutes.
//!
//! A config loaded straight into Caddy's admin API leaves the agent's applied hash as it was,
//! so the hash alone would say "in sync"; the agent's own comparison of Caddy's `/config/`
//! (`running` in its `/health`) is what reveals it. Such an agent is marked "changed outside
//! Gatehouse", audited once per episode, and given the database's config again.

use super::Fleet;
use super::client::{self, Push};
use super::quarantine::{self, Quarantined};
use super::{push, site_config};
use crate::config::Config;
use crate::db::agents::{self, Agent, Report, RunningState};
use crate::db::audit;
use crate::db::{Db, DbError, vhosts};
use std::sync::Arc;
use std::time::Duration;

/// What checking one agent found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    InSync,
    Pushed,
    /// Caddy ran a config loaded outside Gatehouse; the database's is loaded again.
    Restored,
    /// Caddy refused some sites; they were set aside on this agent, the rest pushed.
    Quarantined(Quarantined),
    Offline(String),
    Rejected(String),
    Failed(String),
    /// Another push to the agent is under way (one a deploy left pending): it stores its own
    /// outcome, and the next check looks again. Not a failure of the agent.
    Busy,
}

impl Sync {
    pub(crate) fn ok(&self) -> bool {
        matches!(
            self,
            Sync::InSync | Sync::Pushed | Sync::Restored | Sync::Quarantined(_) | Sync::Busy
        )
    }
}

/// Checks one agent now and brings it in step with the database.
pub async fn sync_agent(db: &Db, fleet: &Fleet, config: &Config, id: i64) -> Result<Sync, DbError> {
    let Some(agent) = db.run(move |c| agents::find(c, id)).await? else {
        return Ok(Sync::Failed("no such agent".into()));
    };
    let report = client::health(fleet, &agent, super::HEALTH_TIMEOUT).await;
    record_health(db, &agent, &report).await?;
    if !report.online {
        return Ok(Sync::Offline(report.error.unwrap_or_default()));
    }
    // Pushed even when the applied hash matches: that hash is what the agent loaded, not what
    // Caddy runs now. An admin API moved by the outside config is reached by the agent at
    // its new address, and the push moves it back.
    let outside = matches!(report.running, RunningState::ChangedOutside { .. });
    if !report.caddy_reachable && !outside {
        return Ok(Sync::Failed("the agent cannot reach its Caddy".into()));
    }
    catch_up(db, fleet, config, id, outside).await
}

/// The reconciler's push, once `/health` has said the agent can take one: the database's
/// render for agent `id`, unless its stored applied hash says it runs it already (and
/// Caddy was not given a config `outside` Gatehouse). A refusal is some site's (nobody is
/// changing anything here): it is set aside on this agent and the rest pushed.
pub async fn catch_up(
    db: &Db,
    fleet: &Fleet,
    config: &Config,
    id: i64,
    outside: bool,
) -> Result<Sync, DbError> {
    // Rendered under the deploy lock, so it is a committed state no deploy is about to
    // replace; the agent's own turn is taken before that lock is let go (always in that
    // order), so no deploy's push to it can come between the render and this push. The push
    // itself holds only the agent's lock, however long it takes.
    let between = fleet.deploy_lock.lock().await;
    let (agent, text, hash, all) = {
        let caddy = config.caddy.clone();
        db.run(move |c| {
            let agent: Agent = agents::find(c, id)?
                .ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
            let all = vhosts::list(c, &vhosts::Filter::default())?;
            let (text, hash) = site_config::for_agent(&caddy, &agent, &all);
            Ok((agent, text, hash, all))
        })
        .await?
    };
    if agent.applied_hash.as_deref() == Some(hash.as_str()) && !outside {
        super::history::landed(db, id).await?;
        return Ok(Sync::InSync);
    }
    // Never waited for under the deploy lock: a push that hangs would hold up every deploy.
    let Some(turn) = fleet.lanes.try_turn(id) else {
        return Ok(Sync::Busy);
    };
    drop(between);
    let outcome = push::push_in_turn(db, fleet, turn, &agent, &text).await;
    let (outcome, quarantined) = match outcome {
        Push::Rejected { .. } => {
            quarantine::recover(db, fleet, &config.caddy, &agent, &all, &[], outcome).await?
        }
        outcome => (outcome, None),
    };
    let result = match &outcome {
        Push::Applied { .. } if quarantined.is_some() => {
            Sync::Quarantined(quarantined.expect("just checked"))
        }
        Push::Applied { .. } if outside => Sync::Restored,
        Push::Applied { .. } => Sync::Pushed,
        Push::Rejected { error } => Sync::Rejected(error.clone()),
        Push::Unreachable { error } | Push::Pending { why: error } => Sync::Failed(error.clone()),
    };
    // What the database holds has landed (a site set aside shows as such, not as pending).
    if matches!(result, Sync::Pushed | Sync::Restored | Sync::Quarantined(_)) {
        super::history::landed(db, id).await?;
    }
    match result {
        Sync::Pushed => tracing::info!(agent = %agent.name, "agent caught up with the database"),
        Sync::Restored => tracing::warn!(
            agent = %agent.name,
            "Caddy had been given a config outside Gatehouse; the database's is loaded again"
        ),
        _ => {}
    }
    Ok(result)
}

/// Stores what an agent's `/health` said and, when it opens an episode of a config changed
/// outside Gatehouse, writes the one audit entry for it, in the same transaction: two
/// checks at once (the reconciler and "Sync now") cannot both open it.
pub(crate) async fn record_health(db: &Db, agent: &Agent, report: &Report) -> Result<(), DbError> {
    let (id, name, report) = (agent.id, agent.name.clone(), report.clone());
    let opened = db
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let opened = agents::record_report(&tx, id, &report)?;
            if opened && let RunningState::ChangedOutside { why } = &report.running {
                let detail = format!("agent {name}: {why}");
                let event = audit::Event {
                    action: audit::Action::CaddyChangedOutside,
                    user_id: None,
                    email: None,
                    detail: &detail,
                };
                // Noticed by the hub itself (the reconciler, or a test or sync an admin
                // asked for), not caused by whoever is signed in.
                let origin = audit::Origin {
                    ip: None,
                    user_agent: Some("gatehouse-hub".into()),
                };
                audit::record(&tx, &event, &origin)?;
            }
            tx.commit()?;
            Ok(opened)
        })
        .await?;
    if opened {
        tracing::warn!(agent = %agent.name, "Caddy's running config was changed outside Gatehouse");
    }
    Ok(())
}

/// Runs for the life of the hub: every interval, every agent that is due.
pub(crate) fn spawn(db: Db, fleet: Arc<Fleet>, config: Arc<Config>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let interval = Duration::from_secs(config.fleet.reconcile_interval_secs);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let ids = match db.run(|c| agents::list(c)).await {
                Ok(list) => list.into_iter().map(|a| a.id).collect::<Vec<_>>(),
                Err(e) => {
                    tracing::error!(error = %e, "reconciler cannot list agents");
                    continue;
                }
            };
            let checks = ids.into_iter().filter(|id| fleet.due(*id)).map(|id| {
                let (db, fleet, config) = (db.clone(), fleet.clone(), config.clone());
                async move {
                    match sync_agent(&db, &fleet, &config, id).await {
                        Ok(s) if s.ok() => fleet.succeeded(id),
                        Ok(_) => fleet.failed(id, interval),
                        Err(e) => {
                            tracing::error!(error = %e, "reconciler");
                            fleet.failed(id, interval);
                        }
                    }
                }
            });
            futures::future::join_all(checks).await;
            crate::memory::release_freed_off_runtime().await;
        }
    })
}
