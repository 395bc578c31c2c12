//! The deployment history: what each deploy did on each agent, and which committed changes
//! have not reached an agent yet.
//!
//! The deploy pipeline catches the changelog entries its change writes ([`trace`]), turns
//! its pushes into an [`Outcome`] per agent ([`Report`]) and hands both to [`record`]. A
//! change committed while an agent was unreachable is *pending* on it, per site: exactly
//! when the site as that agent last had it would be served differently from the site as the
//! database has it now. It stops being pending when the agent takes the database's config
//! ([`landed`]: a later deploy or the reconciler), when a later change puts the site back
//! the way the agent has it, or when the agent is removed.
//!
//! The history is written after the change is committed; failing to write it is logged and
//! never undoes or fails the change.

use super::client::Push;
use super::deploy::Change;
use crate::db::changelog::{self, Author, Entry};
use crate::db::deploys::{self, NewPending, SiteRow};
use crate::db::users::User;
use crate::db::vhosts::Snapshot;
use crate::db::{Db, DbError};
use rusqlite::Connection;
use std::sync::{Arc, Mutex};

/// What a deploy did on one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The agent's Caddy loaded the new config.
    Applied,
    /// The agent already ran it: nothing was pushed.
    Unchanged,
    /// Its Caddy refused the new config, in Caddy's words; nothing was committed.
    Rejected { error: String },
    /// Offline or not answering: the committed change reaches it later, through the
    /// reconciler.
    Pending { why: String },
    /// Not reached by a deploy that was not committed: there is nothing to catch up.
    Unreached { why: String },
    /// It took the new config and was given its previous one back (another agent refused
    /// it, or a probe found things getting worse).
    RolledBack { why: String },
    /// It runs the config without sites its Caddy refuses, set aside with Caddy's words.
    Quarantined { error: String },
}

impl Outcome {
    /// The stored name, also the class and `data-outcome` the pages use.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Pending { .. } => "pending",
            Outcome::Unreached { .. } => "unreached",
            Outcome::RolledBack { .. } => "rolled_back",
            Outcome::Quarantined { .. } => "quarantined",
        }
    }

    fn message(&self) -> Option<&str> {
        match self {
            Outcome::Applied | Outcome::Unchanged => None,
            Outcome::Rejected { error } | Outcome::Quarantined { error } => Some(error),
            Outcome::Pending { why } | Outcome::Unreached { why } | Outcome::RolledBack { why } => {
                Some(why)
            }
        }
    }
}

/// The changelog entries a change wrote the last time it ran: the dry run's (rolled back),
/// then the commit's.
#[derive(Clone, Default)]
pub(crate) struct Trace(Arc<Mutex<Vec<Entry>>>);

impl Trace {
    fn entries(&self) -> Vec<Entry> {
        self.0.lock().expect("trace lock").clone()
    }
}

/// `change`, catching the changelog entries it writes in its own transaction.
pub(crate) fn trace<T, E, F>(change: F) -> (impl Change<T, E>, Trace)
where
    F: Change<T, E>,
{
    let trace = Trace::default();
    let caught = trace.clone();
    let traced = move |c: &Connection, author: &Author<'_>| {
        let mark = changelog::last_id(c);
        let result = change(c, author)?;
        match mark.and_then(|m| changelog::since(c, m)) {
            Ok(entries) => *caught.0.lock().expect("trace lock") = entries,
            Err(e) => tracing::error!(error = %e, "cannot read the change's changelog entries"),
        }
        Ok(result)
    };
    (traced, trace)
}

/// One agent's outcome.
#[derive(Debug, Clone)]
pub(crate) struct AgentOutcome {
    pub(crate) agent_id: i64,
    pub(crate) agent: String,
    pub(crate) outcome: Outcome,
}

/// Every agent's outcome of one deploy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) agents: Vec<AgentOutcome>,
}

impl Report {
    /// What the pushes did: `None` where none was needed.
    /// What the pushes did to the agents, given by id and name: `None` where none was
    /// needed.
    pub(crate) fn of<'a>(
        agents: impl IntoIterator<Item = (i64, &'a str)>,
        pushes: &[Option<Push>],
    ) -> Self {
        let agents = agents
            .into_iter()
            .zip(pushes)
            .map(|((agent_id, name), push)| AgentOutcome {
                agent_id,
                agent: name.to_string(),
                outcome: match push {
                    None => Outcome::Unchanged,
                    Some(Push::Applied { .. }) => Outcome::Applied,
                    Some(Push::Rejected { error }) => Outcome::Rejected {
                        error: error.clone(),
                    },
                    Some(Push::Unreachable { error } | Push::Pending { why: error }) => {
                        Outcome::Pending { why: error.clone() }
                    }
                },
            })
            .collect();
        Self { agents }
    }

    /// The agents given their previous config back (`restores`), because of `why`.
    pub(crate) fn restored(mut self, restores: &[(i64, Push)], why: &str) -> Self {
        for (id, push) in restores {
            let why = match push {
                Push::Applied { .. } => why.to_string(),
                Push::Rejected { error }
                | Push::Unreachable { error }
                | Push::Pending { why: error } => {
                    format!("{why}; giving it back its previous config failed: {error}")
                }
            };
            self.set(*id, Outcome::RolledBack { why });
        }
        self
    }

    /// Agent `id`'s outcome is `outcome`.
    pub(crate) fn set(&mut self, id: i64, outcome: Outcome) {
        if let Some(a) = self.agents.iter_mut().find(|a| a.agent_id == id) {
            a.outcome = outcome;
        }
    }
}

/// How a deploy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The change is in the database.
    Committed,
    /// A Caddy refused it (or a probe undid it): nothing changed.
    Rejected,
    /// The database failed around it: nothing changed.
    Failed,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Committed => "committed",
            Ending::Rejected => "rejected",
            Ending::Failed => "failed",
        }
    }
}

/// Stores one deploy by `user`: the sites its change touched (from `trace`), each agent's
/// outcome, and what is now pending where. Errors are logged, never returned: the deploy
/// has happened either way.
pub(crate) async fn record(db: &Db, user: &User, trace: &Trace, report: Report, ending: Ending) {
    let (entries, user) = (trace.entries(), (user.id, user.email.clone()));
    let written = db
        .run(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            write(&tx, user, &entries, &report, ending)?;
            tx.commit()?;
            Ok(())
        })
        .await;
    if let Err(e) = written {
        tracing::error!(error = %e, "cannot record the deploy in the history");
    }
}

fn write(
    c: &Connection,
    (user_id, email): (i64, String),
    entries: &[Entry],
    report: &Report,
    ending: Ending,
) -> Result<(), DbError> {
    let committed = ending == Ending::Committed;
    let deploy = deploys::insert(c, Some(user_id), &email, ending.as_str())?;
    for e in entries {
        let owner = |s: Option<&Snapshot>| s.and_then(|s| s.owner_id);
        deploys::add_site(
            c,
            deploy,
            &SiteRow {
                // A change that was not committed has no entry: the dry run's were rolled back.
                changelog_id: committed.then_some(e.id),
                vhost_id: e.vhost_id.unwrap_or_default(),
                domain: &e.domain,
                action: &e.action,
                owner_id: owner(e.new.as_ref().or(e.old.as_ref())),
                prev_owner_id: owner(e.old.as_ref()),
            },
        )?;
    }
    for a in &report.agents {
        let outcome = match &a.outcome {
            Outcome::Pending { why } if !committed => Outcome::Unreached { why: why.clone() },
            other => other.clone(),
        };
        deploys::add_agent(
            c,
            deploy,
            a.agent_id,
            &a.agent,
            outcome.kind(),
            outcome.message(),
        )?;
        if !committed {
            continue;
        }
        match outcome {
            Outcome::Applied | Outcome::Unchanged => {
                deploys::clear_agent(c, a.agent_id)?;
            }
            Outcome::Pending { .. } => {
                for e in entries {
                    left_behind(c, a.agent_id, deploy, e)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Agent `agent` did not get the change of entry `e`: pending there, unless the site is
/// served on it just as the agent already has it.
fn left_behind(c: &Connection, agent: i64, deploy: i64, e: &Entry) -> Result<(), DbError> {
    let Some(vhost_id) = e.vhost_id else {
        return Ok(());
    };
    let base = match deploys::pending_base(c, agent, vhost_id)? {
        Some(base) => base,
        None => e.old.clone(),
    };
    let labels = crate::db::agents::find(c, agent)?
        .map(|a| a.labels)
        .unwrap_or_default();
    if served_on(base.as_ref(), agent, &labels) == served_on(e.new.as_ref(), agent, &labels) {
        return deploys::clear_pending(c, agent, vhost_id);
    }
    deploys::set_pending(
        c,
        &NewPending {
            agent_id: agent,
            vhost_id,
            domain: &e.domain,
            action: &e.action,
            owner_id: e.new.as_ref().or(e.old.as_ref()).and_then(|s| s.owner_id),
            base: base.as_ref(),
            deploy_id: deploy,
        },
    )
}

/// What site `s` puts in the Caddyfile of agent `agent` (carrying `labels`): its address and
/// body, or nothing.
fn served_on<'a>(
    s: Option<&'a Snapshot>,
    agent: i64,
    labels: &[String],
) -> Option<(&'a str, &'a str)> {
    let serves = |s: &Snapshot| {
        s.all_agents
            || if s.labels.is_empty() {
                s.agent_ids.contains(&agent)
            } else {
                s.labels.iter().any(|l| labels.contains(l))
            }
    };
    s.filter(|s| s.enabled && serves(s))
        .map(|s| (s.domain.as_str(), s.config.as_str()))
}

/// Agent `agent` now runs the database's config: nothing is pending on it any more.
pub(crate) async fn landed(db: &Db, agent: i64) -> Result<(), DbError> {
    let cleared = db.run(move |c| deploys::clear_agent(c, agent)).await?;
    if cleared > 0 {
        tracing::info!(
            agent,
            changes = cleared,
            "pending changes reached the agent"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(enabled: bool, agents: Option<&[i64]>) -> Snapshot {
        Snapshot {
            domain: "a.example.com".into(),
            template: "raw".into(),
            params: "{}".into(),
            config: "respond ok".into(),
            enabled,
            owner_id: None,
            all_agents: agents.is_none(),
            agent_ids: agents.map(<[i64]>::to_vec).unwrap_or_default(),
            labels: Vec::new(),
        }
    }

    #[test]
    fn a_site_is_served_on_an_agent_only_when_enabled_and_chosen_for_it() {
        let none: &[String] = &[];
        assert!(served_on(Some(&site(true, None)), 1, none).is_some());
        assert!(served_on(Some(&site(false, None)), 1, none).is_none());
        assert!(served_on(Some(&site(true, Some(&[2]))), 1, none).is_none());
        assert!(served_on(Some(&site(true, Some(&[1, 2]))), 1, none).is_some());
        assert!(served_on(None, 1, none).is_none());
        let eu = Snapshot {
            labels: vec!["eu".into()],
            ..site(true, Some(&[]))
        };
        assert!(served_on(Some(&eu), 1, &["eu".to_string()]).is_some());
        assert!(served_on(Some(&eu), 1, &["us".to_string()]).is_none());
    }

    #[test]
    fn a_push_is_read_as_an_outcome_and_a_restore_overrides_it() {
        let agents = [(1, "a"), (2, "b"), (3, "c")];
        let pushes = [
            Some(Push::Applied {
                hash: "h".into(),
                warnings: Vec::new(),
            }),
            None,
            Some(Push::Unreachable {
                error: "connection refused".into(),
            }),
        ];
        let report = Report::of(agents, &pushes);
        let kinds = |r: &Report| {
            r.agents
                .iter()
                .map(|a| a.outcome.kind())
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(&report), ["applied", "unchanged", "pending"]);
        let restored = report.restored(
            &[(
                1,
                Push::Applied {
                    hash: "h0".into(),
                    warnings: Vec::new(),
                },
            )],
            "Caddy on d refused the change",
        );
        assert_eq!(kinds(&restored), ["rolled_back", "unchanged", "pending"]);
    }
}
