//! The reconciler: asks every agent how it is, and pushes the database's config to any that
//! runs something else (it was away, or its Caddy restarted, or someone changed it by hand).
//! Failures back off per agent, from the check interval up to five minutes.

use super::Fleet;
use super::client::{self, Push};
use crate::config::Config;
use crate::db::agents::{self, Agent};
use crate::db::{Db, DbError, vhosts};
use crate::site_config;
use std::sync::Arc;
use std::time::Duration;

/// What checking one agent found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    InSync,
    Pushed,
    Offline(String),
    Rejected(String),
    Failed(String),
}

impl Sync {
    pub fn ok(&self) -> bool {
        matches!(self, Sync::InSync | Sync::Pushed)
    }
}

/// Checks one agent now and brings it in step with the database.
pub async fn sync_agent(db: &Db, fleet: &Fleet, config: &Config, id: i64) -> Result<Sync, DbError> {
    let Some(agent) = db.run(move |c| agents::find(c, id)).await? else {
        return Ok(Sync::Failed("no such agent".into()));
    };
    let report = client::health(fleet, &agent, super::HEALTH_TIMEOUT).await;
    let online = report.online;
    let error = report.error.clone();
    let stored = report.clone();
    db.run(move |c| agents::record_report(c, id, &stored))
        .await?;
    if !online {
        return Ok(Sync::Offline(error.unwrap_or_default()));
    }
    if !report.caddy_reachable {
        return Ok(Sync::Failed("the agent cannot reach its Caddy".into()));
    }
    // The same lock as deploys: a push from here never lands between a deploy's pushes.
    let _turn = fleet.deploy_lock.lock().await;
    let (agent, text, hash) = {
        let caddy = config.caddy.clone();
        db.run(move |c| {
            let agent: Agent = agents::find(c, id)?
                .ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
            let all = vhosts::list(c, &vhosts::Filter::default())?;
            let (text, hash) = site_config::for_agent(&caddy, &agent, &all);
            Ok((agent, text, hash))
        })
        .await?
    };
    if agent.applied_hash.as_deref() == Some(hash.as_str()) {
        return Ok(Sync::InSync);
    }
    let outcome = client::push(fleet, &agent, &text, fleet.push_timeout).await;
    let result = match &outcome {
        Push::Applied { .. } => Sync::Pushed,
        Push::Rejected { error } => Sync::Rejected(error.clone()),
        Push::Unreachable { error } => Sync::Failed(error.clone()),
    };
    db.run(move |c| match &outcome {
        Push::Applied { hash, .. } => agents::record_push(c, id, Some(hash), None),
        Push::Rejected { error } | Push::Unreachable { error } => {
            agents::record_push(c, id, None, Some(error))
        }
    })
    .await?;
    if result == Sync::Pushed {
        tracing::info!(agent = %agent.name, "agent caught up with the database");
    }
    Ok(result)
}

/// Runs for the life of the hub: every interval, every agent that is due.
pub fn spawn(db: Db, fleet: Arc<Fleet>, config: Arc<Config>) -> tokio::task::JoinHandle<()> {
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
            crate::memory::release_freed();
        }
    })
}
