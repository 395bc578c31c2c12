//! Staged rollout: with the "canary first" policy, a change reaches the agents labelled
//! `canary` first, and the rest only if it made nothing worse there.
//!
//! The deploy pipeline pushes through [`staged`], which asks [`stages`] how to split the
//! agents and pushes stage by stage. Around each canary stage it probes ([`Baseline::take`] before the push, [`Baseline::judge`]
//! after it): each canary agent's health, and one request for each site the change touches
//! on that agent, sent by the agent through its own Caddy (`POST /caddy/probe`). The two
//! looks are compared, and the change is judged worse ([`Worse`]) when, on any canary agent:
//!
//! - the agent or its Caddy stopped answering, where before it answered;
//! - a site answers with a 5xx, or not at all, where before it answered with something else;
//! - a site answers slower than both `slow_factor` × its time before and `slow_floor_ms`.
//!
//! A site that was not served before (a new site, a new port) has nothing to compare with and
//! is not judged. When the change is worse, the pipeline gives every agent that took it its
//! previous config back and commits nothing; [`ProbeFailure`] is what the probe saw, for the
//! person and for the record. Without a policy there is one stage and no probe: deploys are
//! as they were.

use super::Fleet;
use super::client::{self, Push};
use super::site_config::Site;
use crate::db::agents::Agent;
use crate::db::vhosts::Vhost;
use crate::db::{Db, DbError};
use crate::domain::labels::CANARY;
use crate::wire::{ProbeOutcome, ProbeRequest};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The settings key the policy is stored under.
pub const SETTINGS_KEY: &str = "rollout";
/// At most this many changed sites are probed on each canary agent (a change touches one
/// site, an import may touch hundreds: the first ones by domain stand for them).
pub const MAX_PROBED_SITES: usize = 20;
/// How long one probe request may take on the agent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the hub waits for the agent's answer to a probe: the request, and a margin.
const PROBE_CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// How changes reach the fleet; the admin sets it on the settings page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    /// Canary first: the agents labelled `canary`, probed, then the rest.
    pub canary_first: bool,
    /// A site is slower when it takes more than this many times as long as before…
    pub slow_factor: f64,
    /// …and more than this many milliseconds.
    pub slow_floor_ms: u64,
}

impl Default for Policy {
    /// No staging: every agent at once, as without a policy.
    fn default() -> Self {
        Self {
            canary_first: false,
            slow_factor: 3.0,
            slow_floor_ms: 1000,
        }
    }
}

impl Policy {
    /// The policy saved on the settings page, or the default.
    pub fn load(conn: &rusqlite::Connection) -> Result<Self, DbError> {
        Ok(crate::db::settings::value(conn, SETTINGS_KEY)?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    pub fn save(&self, conn: &rusqlite::Connection) -> Result<(), DbError> {
        let text = serde_json::to_string(self).unwrap_or_default();
        crate::db::settings::put(conn, SETTINGS_KEY, &text)
    }
}

/// The policy in force.
pub async fn policy(db: &Db) -> Result<Policy, DbError> {
    db.run(|c| Policy::load(c)).await
}

/// Agents the pipeline pushes together, by their index in its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub members: Vec<usize>,
    /// Probed before the next stage is pushed.
    pub canary: bool,
}

/// How `agents` are split: the canary agents, then the rest, under a canary-first policy
/// when the fleet has both; otherwise one stage of all of them, not probed.
pub fn stages<'a>(policy: &Policy, agents: impl IntoIterator<Item = &'a Agent>) -> Vec<Stage> {
    let agents: Vec<&Agent> = agents.into_iter().collect();
    let is_canary = |i: &usize| agents[*i].labels.iter().any(|l| l == CANARY);
    let (canary, rest): (Vec<usize>, Vec<usize>) = (0..agents.len()).partition(is_canary);
    if !policy.canary_first || canary.is_empty() || rest.is_empty() {
        return vec![Stage {
            members: (0..agents.len()).collect(),
            canary: false,
        }];
    }
    vec![
        Stage {
            members: canary,
            canary: true,
        },
        Stage {
            members: rest,
            canary: false,
        },
    ]
}

/// Runs a change's pushes stage by stage under the policy in force: `push` pushes one
/// stage's agents (by index in `agents`) and is the only way anything is pushed. Each canary
/// stage is looked at before its push and judged after it, with the sites `changed` (sites
/// before, sites after) touches on each agent; a rejection or a worse stage stops it there,
/// so later stages are never pushed. Returns each agent's outcome (None: not pushed) and
/// what the probe found worse, if anything.
pub async fn staged<'a>(
    db: &Db,
    fleet: &Fleet,
    agents: &[&Agent],
    changed: (&[Vhost], &[Vhost]),
    push: impl Fn(Vec<usize>) -> BoxFuture<'a, Result<Vec<Option<Push>>, DbError>>,
) -> Result<(Vec<Option<Push>>, Option<ProbeFailure>), DbError> {
    let policy = policy(db).await?;
    let (before, after) = changed;
    let mut outcomes: Vec<Option<Push>> = vec![None; agents.len()];
    for stage in stages(&policy, agents.iter().copied()) {
        let probed = stage.members.iter().map(|&i| {
            let agent = agents[i].clone();
            let sites = changed_sites(&agent, before, after);
            (agent, sites)
        });
        let baseline = Baseline::take(fleet, &stage, probed.collect()).await;
        for (&i, outcome) in stage.members.iter().zip(push(stage.members.clone()).await?) {
            outcomes[i] = outcome;
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Some(Push::Rejected { .. })))
        {
            break;
        }
        if let Some(worse) = baseline.judge(fleet, &policy).await {
            return Ok((outcomes, Some(worse)));
        }
    }
    Ok((outcomes, None))
}

/// The sites a change touches on `agent`, as their addresses: those it serves after the
/// change (enabled) that are new or differ from before. At most [`MAX_PROBED_SITES`].
pub fn changed_sites(agent: &Agent, before: &[Vhost], after: &[Vhost]) -> Vec<String> {
    let served = |v: &Vhost| v.enabled && Site::from(v).served_by(agent);
    after
        .iter()
        .filter(|v| served(v))
        .filter(|v| {
            !before
                .iter()
                .any(|b| b.id == v.id && served(b) && b.domain == v.domain && b.config == v.config)
        })
        .take(MAX_PROBED_SITES)
        .map(|v| v.domain.clone())
        .collect()
}

/// What one probe saw of a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "seen", rename_all = "snake_case")]
pub enum Seen {
    /// An HTTP answer with this status, after this long.
    Answered { status: u16, millis: u64 },
    /// No answer: refused, reset or timed out.
    NoAnswer { error: String },
    /// This Caddy does not listen where the site is: it did not serve it.
    NotServed,
    /// The agent could not be asked.
    Unknown { error: String },
}

impl Seen {
    fn of(answer: Result<ProbeOutcome, String>) -> Self {
        match answer {
            Ok(ProbeOutcome::Answered { code, millis, .. }) => Seen::Answered {
                status: code,
                millis,
            },
            Ok(ProbeOutcome::NoAnswer { error, .. }) => Seen::NoAnswer { error },
            Ok(ProbeOutcome::NotServed { .. }) => Seen::NotServed,
            Ok(ProbeOutcome::Invalid { error } | ProbeOutcome::CaddyUnreachable { error })
            | Err(error) => Seen::Unknown { error },
        }
    }

    /// A 5xx or no answer at all: what a visitor would call broken.
    fn failing(&self) -> bool {
        match self {
            Seen::Answered { status, .. } => *status >= 500,
            Seen::NoAnswer { .. } => true,
            Seen::NotServed | Seen::Unknown { .. } => false,
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::Answered { status, millis } => write!(f, "{status} in {millis} ms"),
            Seen::NoAnswer { error } => write!(f, "no answer ({error})"),
            Seen::NotServed => f.write_str("not served"),
            Seen::Unknown { error } => write!(f, "unknown ({error})"),
        }
    }
}

/// Why the probe judged a change worse on one agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "worse", rename_all = "snake_case")]
pub enum Worse {
    /// The agent, or its Caddy, stopped answering.
    Unhealthy { error: String },
    /// The site answers with a 5xx or not at all, where before it did not.
    Failing {
        site: String,
        before: Seen,
        after: Seen,
    },
    /// The site answers much slower than before (see [`Policy`]).
    Slower {
        site: String,
        before: Seen,
        after: Seen,
    },
}

/// One agent the change made worse, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub agent_id: i64,
    pub agent: String,
    #[serde(flatten)]
    pub worse: Worse,
}

/// A short form of what was seen, for a sentence: the status alone, or "no answer".
fn short(seen: &Seen) -> String {
    match seen {
        Seen::Answered { status, .. } => status.to_string(),
        Seen::NoAnswer { .. } => "no answer".into(),
        other => other.to_string(),
    }
}

/// The URL a visitor would type for a site address, for people to read.
fn shown_url(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("https://{address}")
    }
}

impl fmt::Display for Finding {
    /// `canary edge-1: http://app.test answered 502, before: 200`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "canary {}: ", self.agent)?;
        match &self.worse {
            Worse::Unhealthy { error } => {
                write!(f, "the agent is unhealthy after the change ({error})")
            }
            Worse::Failing {
                site,
                before,
                after,
            } => match after {
                Seen::Answered { status, .. } => write!(
                    f,
                    "{} answered {status}, before: {}",
                    shown_url(site),
                    short(before)
                ),
                _ => write!(
                    f,
                    "{} gave {after}, before: {}",
                    shown_url(site),
                    short(before)
                ),
            },
            Worse::Slower {
                site,
                before,
                after,
            } => {
                let ms = |s: &Seen| match s {
                    Seen::Answered { millis, .. } => *millis,
                    _ => 0,
                };
                write!(
                    f,
                    "{} answered in {} ms, before: {} ms",
                    shown_url(site),
                    ms(after),
                    ms(before)
                )
            }
        }
    }
}

/// Why a staged rollout stopped after its canary stage: everything the probe found worse.
/// The pipeline has given every agent its previous config back; nothing was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeFailure {
    pub findings: Vec<Finding>,
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, finding) in self.findings.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{finding}")?;
        }
        Ok(())
    }
}

/// One canary agent as it stood before the push: healthy or not, and each changed site.
struct Look {
    agent: Agent,
    healthy: bool,
    sites: Vec<(String, Seen)>,
}

/// A stage's look before its push, to judge the same look after it by.
pub struct Baseline {
    looks: Vec<Look>,
}

async fn healthy(fleet: &Fleet, agent: &Agent) -> Result<(), String> {
    let report = client::health(fleet, agent, super::HEALTH_TIMEOUT).await;
    match (report.online, report.caddy_reachable) {
        (true, true) => Ok(()),
        (true, false) => Err("its Caddy does not answer".into()),
        (false, _) => Err(report.error.unwrap_or_else(|| "offline".into())),
    }
}

/// Probes each of `sites` through `agent`, all at once.
async fn probe_sites(fleet: &Fleet, agent: &Agent, sites: &[String]) -> Vec<(String, Seen)> {
    let probes = sites.iter().map(|site| async move {
        let request = ProbeRequest {
            address: site.clone(),
            path: "/".into(),
            timeout_ms: u64::try_from(PROBE_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = client::probe(fleet, agent, &request, PROBE_CALL_TIMEOUT).await;
        (site.clone(), Seen::of(answer))
    });
    futures::future::join_all(probes).await
}

impl Baseline {
    /// Looks at each agent of a canary stage before its push: `sites` are the changed
    /// sites of each (see [`changed_sites`]). A stage that is not probed needs no look.
    pub async fn take(fleet: &Fleet, stage: &Stage, agents: Vec<(Agent, Vec<String>)>) -> Self {
        if !stage.canary {
            return Self { looks: Vec::new() };
        }
        let looks = agents.into_iter().map(|(agent, sites)| async move {
            let healthy = healthy(fleet, &agent).await.is_ok();
            let sites = probe_sites(fleet, &agent, &sites).await;
            Look {
                agent,
                healthy,
                sites,
            }
        });
        Self {
            looks: futures::future::join_all(looks).await,
        }
    }

    /// Looks again after the push and compares: None when nothing got worse.
    pub async fn judge(self, fleet: &Fleet, policy: &Policy) -> Option<ProbeFailure> {
        let judged = self.looks.into_iter().map(|look| async move {
            let Look {
                agent,
                healthy: was_healthy,
                sites,
            } = look;
            let finding = |worse| Finding {
                agent_id: agent.id,
                agent: agent.name.clone(),
                worse,
            };
            if was_healthy && let Err(error) = healthy(fleet, &agent).await {
                return vec![finding(Worse::Unhealthy { error })];
            }
            let names: Vec<String> = sites.iter().map(|(s, _)| s.clone()).collect();
            let now = probe_sites(fleet, &agent, &names).await;
            sites
                .into_iter()
                .zip(now)
                .filter_map(|((site, before), (_, after))| {
                    judge_site(policy, site, before, after).map(finding)
                })
                .collect()
        });
        let findings: Vec<Finding> = futures::future::join_all(judged)
            .await
            .into_iter()
            .flatten()
            .collect();
        (!findings.is_empty()).then_some(ProbeFailure { findings })
    }
}

/// The rule of the module doc for one site.
fn judge_site(policy: &Policy, site: String, before: Seen, after: Seen) -> Option<Worse> {
    if matches!(before, Seen::NotServed | Seen::Unknown { .. }) {
        return None;
    }
    if after.failing() && !before.failing() {
        return Some(Worse::Failing {
            site,
            before,
            after,
        });
    }
    if let (Seen::Answered { millis: was, .. }, Seen::Answered { millis: now, .. }) =
        (&before, &after)
    {
        let bound = (*was as f64 * policy.slow_factor).max(policy.slow_floor_ms as f64);
        if *now as f64 > bound {
            return Some(Worse::Slower {
                site,
                before,
                after,
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: i64, labels: &[&str]) -> Agent {
        let mut a = Agent::test(id);
        a.labels = labels.iter().map(|l| l.to_string()).collect();
        a
    }

    fn answered(status: u16, millis: u64) -> Seen {
        Seen::Answered { status, millis }
    }

    #[test]
    fn canary_first_stages_the_canaries_then_the_rest_and_otherwise_one_stage() {
        let agents = [
            agent(1, &[]),
            agent(2, &["canary", "eu"]),
            agent(3, &["eu"]),
        ];
        let canary = Policy {
            canary_first: true,
            ..Policy::default()
        };
        assert_eq!(
            stages(&canary, &agents),
            [
                Stage {
                    members: vec![1],
                    canary: true
                },
                Stage {
                    members: vec![0, 2],
                    canary: false
                }
            ]
        );
        let one = vec![Stage {
            members: vec![0, 1, 2],
            canary: false,
        }];
        assert_eq!(stages(&Policy::default(), &agents), one, "no policy");
        let no_canary = [agent(1, &[]), agent(2, &["eu"]), agent(3, &[])];
        assert_eq!(stages(&canary, &no_canary), one, "nobody to go first");
    }

    #[test]
    fn worse_is_a_new_failure_or_a_slowdown_past_factor_and_floor() {
        let p = Policy::default();
        let judge = |before, after| judge_site(&p, "s".into(), before, after);
        assert!(matches!(
            judge(answered(200, 5), answered(502, 5)),
            Some(Worse::Failing { .. })
        ));
        let none = Seen::NoAnswer {
            error: "refused".into(),
        };
        assert!(judge(answered(404, 5), none.clone()).is_some());
        assert_eq!(
            judge(answered(502, 5), answered(503, 5)),
            None,
            "already failing"
        );
        assert_eq!(
            judge(Seen::NotServed, answered(502, 5)),
            None,
            "nothing to compare"
        );
        assert_eq!(
            judge(answered(200, 5), answered(404, 5)),
            None,
            "a 4xx is an answer"
        );
        assert_eq!(
            judge(answered(200, 5), answered(200, 900)),
            None,
            "under the floor"
        );
        assert!(matches!(
            judge(answered(200, 5), answered(200, 1500)),
            Some(Worse::Slower { .. })
        ));
        assert_eq!(
            judge(answered(200, 800), answered(200, 2000)),
            None,
            "under 3x"
        );
    }

    #[test]
    fn a_finding_reads_as_what_the_probe_saw() {
        let finding = Finding {
            agent_id: 1,
            agent: "edge-1".into(),
            worse: Worse::Failing {
                site: "http://app.test".into(),
                before: answered(200, 3),
                after: answered(502, 4),
            },
        };
        assert_eq!(
            finding.to_string(),
            "canary edge-1: http://app.test answered 502, before: 200"
        );
    }

    #[test]
    fn only_sites_the_change_touches_on_the_agent_are_probed() {
        let site = |id, domain: &str, config: &str, labels: &[&str]| Vhost {
            id,
            domain: domain.into(),
            template: "raw".into(),
            params: "{}".into(),
            config: config.into(),
            enabled: true,
            owner_id: None,
            all_agents: labels.is_empty(),
            agent_ids: Vec::new(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            created_at: 0,
            updated_at: 0,
        };
        let before = [
            site(1, "a.test", "respond 1", &[]),
            site(2, "b.test", "respond 2", &[]),
        ];
        let after = [
            site(1, "a.test", "respond 1", &[]),
            site(2, "b.test", "respond 3", &[]),
            site(3, "c.test", "respond 4", &["eu"]),
        ];
        assert_eq!(
            changed_sites(&agent(1, &["eu"]), &before, &after),
            ["b.test", "c.test"]
        );
        assert_eq!(changed_sites(&agent(2, &[]), &before, &after), ["b.test"]);
    }
}
