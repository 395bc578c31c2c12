//! Quarantine: when a Caddy refuses a whole config and the cause is not the change a person
//! is making (the reconciler catching an agent up, a deploy whose refusal comes from a site
//! it did not touch), the sites that cause it are found and set aside *on that agent*, and
//! the agent is given everything else. A site one agent's Caddy refuses is still served by
//! the others. It comes back when it is saved again: the save is tried everywhere, and on
//! success its quarantine rows are cleared.
//!
//! Finding the sites, cheapest first:
//! 1. **Adapt.** The agent's `/caddy/validate` (Caddy's `/adapt`, nothing loaded) is asked
//!    about the whole config. A parse or adapt error names `Caddyfile:N`; that line falls in
//!    one site's block, which is the culprit. When the message names no line inside a site
//!    (`ambiguous site definition`, …), the culprit is found by bisecting: the shortest
//!    prefix of the sites, in the order they are rendered, that Caddy refuses ends with it.
//!    The culprit is set aside and the rest asked about again, until Caddy accepts it.
//! 2. **Load.** Some refusals only come when Caddy provisions the config (a certificate file
//!    it cannot read, a bad regexp), which `/adapt` does not see. Then the prefixes are
//!    bisected by loading them: while that runs (a few loads, log₂ of the site count), the
//!    agent's Caddy briefly serves only part of its sites, which is still better than a
//!    fleet where no change lands at all.
//!
//! Each culprit is then asked about on its own (the global options and its block alone).
//! When Caddy refuses it so, its message concerns its lines only, and `Caddyfile:N` is
//! rewritten as the line within the site's body: that is what its owner is shown. A site
//! refused only together with others keeps Caddy's message for admins.
//!
//! A person's own change is never set aside: the sites a change touches are spared, and if
//! one of them is a culprit the refusal stands, exactly as before quarantine existed.

use super::Fleet;
use super::client::{self, Push, Validation};
use super::site_config::{self, stored_body};
use crate::config::CaddyConfig;
use crate::db::agents::Agent;
use crate::db::quarantine::{self as table, Found, Refusal};
use crate::db::vhosts::Vhost;
use crate::db::{Db, DbError, audit};

/// What quarantine did on one agent: the sites newly set aside there, each with Caddy's
/// message. A deploy or a reconcile round that returns one records it as that agent's
/// outcome ("quarantined").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub agent_id: i64,
    pub agent: String,
    /// (domain, why) of each site set aside.
    pub sites: Vec<(String, Refusal)>,
}

/// Every site as a deploy's change leaves it, and the sites it touches.
#[derive(Debug)]
pub(crate) struct AfterChange {
    pub(crate) sites: Vec<Vhost>,
    pub(crate) touched: Vec<i64>,
}

impl AfterChange {
    pub(crate) fn new(before: &[Vhost], after: Vec<Vhost>) -> Self {
        Self {
            touched: touched(before, &after),
            sites: after,
        }
    }

    /// What `agent` runs after the change, from `parsed` (these sites, each body parsed once
    /// for every agent): the sites the change touches are tried there again.
    pub(crate) fn render(
        &self,
        parsed: &site_config::Parsed<'_>,
        caddy: &CaddyConfig,
        agent: &Agent,
    ) -> (String, String) {
        parsed.for_agent(caddy, &retrying(agent, &self.touched))
    }
}

/// After a deploy's pushes: each refusal is looked into on its agent ([`recover`], sparing
/// the sites the change touches), and replaced by how the push ends once the culprits are
/// set aside. Returns the outcomes, and what was set aside on which agent.
pub(crate) async fn in_deploy(
    db: &Db,
    fleet: &Fleet,
    caddy: &CaddyConfig,
    steps: &[(&Agent, &AfterChange)],
    outcomes: Vec<Option<Push>>,
) -> Result<(Vec<Option<Push>>, Vec<Quarantined>), DbError> {
    let looked_into = steps
        .iter()
        .zip(outcomes)
        .map(|((agent, change), outcome)| async move {
            match outcome {
                Some(refused @ Push::Rejected { .. }) => {
                    let agent = retrying(agent, &change.touched);
                    let (push, q) = recover(
                        db,
                        fleet,
                        caddy,
                        &agent,
                        &change.sites,
                        &change.touched,
                        refused,
                    )
                    .await?;
                    Ok::<_, DbError>((Some(push), q))
                }
                outcome => Ok((outcome, None)),
            }
        });
    let mut pushes = Vec::new();
    let mut quarantined = Vec::new();
    for result in futures::future::join_all(looked_into).await {
        let (push, q) = result?;
        pushes.push(push);
        quarantined.extend(q);
    }
    Ok((pushes, quarantined))
}

/// The sites a change touches: added, removed or stored differently.
fn touched(before: &[Vhost], after: &[Vhost]) -> Vec<i64> {
    let mut ids: Vec<i64> = after
        .iter()
        .filter(|a| !before.contains(a))
        .map(|a| a.id)
        .chain(
            before
                .iter()
                .filter(|b| !after.iter().any(|a| a.id == b.id))
                .map(|b| b.id),
        )
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `agent` as a change renders it: the sites the change touches are tried again there.
fn retrying(agent: &Agent, touched: &[i64]) -> Agent {
    let mut agent = agent.clone();
    agent.quarantined.retain(|id| !touched.contains(id));
    agent
}

/// The sites `agent` renders, in the order they appear in its Caddyfile.
fn rendered<'a>(agent: &Agent, sites: &'a [Vhost]) -> Vec<&'a Vhost> {
    let mut mine: Vec<&Vhost> = sites
        .iter()
        .filter(|v| v.enabled && site_config::Site::from(*v).rendered_for(agent))
        .filter(|v| stored_body(&v.config).is_some())
        .collect();
    mine.sort_by(|a, b| (&a.domain, &a.config).cmp(&(&b.domain, &b.config)));
    mine
}

/// `agent`'s Caddyfile with only `these` of its sites.
fn render_only(caddy: &CaddyConfig, agent: &Agent, these: &[&Vhost]) -> String {
    let mut all = agent.clone();
    all.quarantined.clear();
    site_config::for_agent(caddy, &all, these.iter().copied()).0
}

/// The line a Caddy message names (`Caddyfile:N`), and where in the message it is said.
fn named_line(message: &str) -> Option<(std::ops::Range<usize>, usize)> {
    const MARK: &str = "Caddyfile:";
    let start = message.find(MARK)?;
    let digits = &message[start + MARK.len()..];
    let len = digits.chars().take_while(char::is_ascii_digit).count();
    let n = digits[..len].parse().ok()?;
    Some((start..start + MARK.len() + len, n))
}

/// Where one site's block sits in a rendered Caddyfile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placed {
    id: i64,
    /// The line of its address (1-based); its body starts on the next.
    address_line: usize,
    body_lines: usize,
}

/// Where each of `blocks` (id, exact block text) sits in `text`.
fn layout(text: &str, blocks: &[(i64, String)]) -> Vec<Placed> {
    blocks
        .iter()
        .filter_map(|(id, block)| {
            let at = if text.starts_with(block.as_str()) {
                0
            } else {
                text.find(&format!("\n{block}"))? + 1
            };
            Some(Placed {
                id: *id,
                address_line: text[..at].matches('\n').count() + 1,
                // Its address, Gatehouse's `log` switch and the closing brace are not body.
                body_lines: block.lines().count().saturating_sub(3),
            })
        })
        .collect()
}

/// The site whose block holds line `n` of the text `placed` describes, and the line of its
/// body that is (None when it is the site's address or Gatehouse's own lines).
fn site_at(placed: &[Placed], n: usize) -> Option<(i64, Option<usize>)> {
    placed.iter().find_map(|p| {
        let last = p.address_line + p.body_lines + 2;
        (p.address_line..=last).contains(&n).then(|| {
            let line = n - p.address_line;
            (p.id, (1..=p.body_lines).contains(&line).then_some(line))
        })
    })
}

/// Caddy's message with its `Caddyfile:N` said as `place` instead.
fn in_body_terms(message: &str, place: &str) -> String {
    match named_line(message) {
        Some((span, _)) => format!("{}{place}{}", &message[..span.start], &message[span.end..]),
        None => message.to_string(),
    }
}

fn block_of(v: &Vhost) -> Option<(i64, String)> {
    Some((
        v.id,
        site_config::site_block(&v.domain, &stored_body(&v.config)?),
    ))
}

/// The first of `sites` without which Caddy accepts the ones before it: the shortest
/// refused prefix ends with it. `refuses(n)` is Caddy's answer about the first `n` sites
/// (Some(message) for a refusal; Err when it cannot be asked). None when even the empty
/// prefix is refused (the fault is not in any site) or the whole is accepted.
async fn bisect<T: Copy, E, F, Fut>(sites: &[T], mut refuses: F) -> Result<Option<(T, String)>, E>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<Option<String>, E>>,
{
    if refuses(0).await?.is_some() {
        return Ok(None);
    }
    let Some(mut message) = refuses(sites.len()).await? else {
        return Ok(None);
    };
    // The prefix of `hi` sites is refused, that of `lo` accepted.
    let (mut lo, mut hi) = (0, sites.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match refuses(mid).await? {
            Some(m) => {
                hi = mid;
                message = m;
            }
            None => lo = mid,
        }
    }
    Ok(Some((sites[hi - 1], message)))
}

/// Asks `agent`'s Caddy (adapt only) about `text`: Some(message) when it refuses it.
async fn adapt_refuses(fleet: &Fleet, agent: &Agent, text: &str) -> Result<Option<String>, String> {
    match client::validate(fleet, agent, text, fleet.push_timeout).await {
        Validation::Valid { .. } => Ok(None),
        Validation::Invalid { error } => Ok(Some(error)),
        Validation::Unavailable { error } => Err(error),
    }
}

/// What Caddy says of one site asked about on its own: the global options and its block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Alone {
    Accepted,
    /// Caddy's message with its line said within the site's body, and that line.
    Refused {
        error: String,
        body_line: Option<usize>,
    },
    /// Caddy could not be asked; why.
    Unchecked(String),
}

/// Asks `agent`'s Caddy (adapt only) about site `domain` with stored body `config` alone.
pub(crate) async fn check_alone(
    fleet: &Fleet,
    caddy: &CaddyConfig,
    agent: &Agent,
    domain: &str,
    config: &str,
) -> Alone {
    let Some(body) = stored_body(config) else {
        return Alone::Unchecked("the stored body no longer parses".into());
    };
    let mut everything = agent.clone();
    everything.quarantined.clear();
    let site = site_config::Site::everywhere(domain, config);
    let (text, _) = site_config::for_agent(caddy, &everything, [site]);
    match adapt_refuses(fleet, agent, &text).await {
        Ok(None) => Alone::Accepted,
        Ok(Some(message)) => {
            let placed = layout(&text, &[(0, site_config::site_block(domain, &body))]);
            let Some((n, at)) = named_line(&message).map(|(_, n)| (n, site_at(&placed, n))) else {
                return Alone::Refused {
                    error: message,
                    body_line: None,
                };
            };
            match at {
                Some((_, Some(line))) => Alone::Refused {
                    error: in_body_terms(&message, &format!("line {line}")),
                    body_line: Some(line),
                },
                _ if placed.first().is_some_and(|p| p.address_line == n) => Alone::Refused {
                    error: in_body_terms(&message, "its address"),
                    body_line: None,
                },
                // A line of the global options or Gatehouse's own: not this site's doing.
                _ => Alone::Unchecked(message),
            }
        }
        Err(why) => Alone::Unchecked(why),
    }
}

/// Why `site` is refused, asked about on its own; `together` is what Caddy said when it
/// refused it among the others.
async fn explain(
    fleet: &Fleet,
    caddy: &CaddyConfig,
    agent: &Agent,
    site: &Vhost,
    together: String,
) -> Refusal {
    match check_alone(fleet, caddy, agent, &site.domain, &site.config).await {
        Alone::Refused { error, body_line } => Refusal {
            vhost_id: site.id,
            error,
            body_line: body_line.map(|l| l as i64),
            found: Found::Alone,
        },
        _ => Refusal {
            vhost_id: site.id,
            error: together,
            body_line: None,
            found: Found::Together,
        },
    }
}

/// How Caddy is asked about a config while looking for a culprit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// `/caddy/validate` (Caddy's `/adapt`): nothing is loaded.
    Adapt,
    /// A push: the agent's Caddy runs the config if it takes it.
    Load,
}

impl Ask {
    /// Some(message) when Caddy refuses `text`; Err when it cannot be asked.
    async fn refuses(
        self,
        db: &Db,
        fleet: &Fleet,
        agent: &Agent,
        text: &str,
    ) -> Result<Option<String>, String> {
        match self {
            Ask::Adapt => adapt_refuses(fleet, agent, text).await,
            Ask::Load => match super::push::push_waiting(db, fleet, agent, text).await {
                Push::Applied { .. } => Ok(None),
                Push::Rejected { error } => Ok(Some(error)),
                Push::Unreachable { error } | Push::Pending { why: error } => Err(error),
            },
        }
    }
}

/// Looks for the sites an agent's Caddy refuses among `sites`, never setting aside one in
/// `spare`.
struct Finder<'a> {
    db: &'a Db,
    fleet: &'a Fleet,
    caddy: &'a CaddyConfig,
    sites: &'a [Vhost],
    spare: &'a [i64],
}

impl<'a> Finder<'a> {
    /// One culprit among what `agent` renders (see the module doc); None when Caddy takes
    /// it all, or the refusal is no site's. Asked by adapting, a site whose line Caddy names
    /// is returned even if it is spared (the caller lets the refusal stand); bisecting keeps
    /// the spared sites in every config asked about, so one of them is never the answer.
    async fn culprit(
        &self,
        agent: &Agent,
        how: Ask,
    ) -> Result<Option<(&'a Vhost, String)>, String> {
        let mine = rendered(agent, self.sites);
        if how == Ask::Adapt {
            let text = render_only(self.caddy, agent, &mine);
            let Some(message) = how.refuses(self.db, self.fleet, agent, &text).await? else {
                return Ok(None);
            };
            let blocks: Vec<(i64, String)> = mine.iter().filter_map(|v| block_of(v)).collect();
            let named = named_line(&message).and_then(|(_, n)| site_at(&layout(&text, &blocks), n));
            if let Some((id, _)) = named {
                return Ok(mine.into_iter().find(|v| v.id == id).map(|v| (v, message)));
            }
        }
        let (fixed, open): (Vec<&Vhost>, Vec<&Vhost>) =
            mine.into_iter().partition(|v| self.spare.contains(&v.id));
        bisect(&open, |n| {
            let these: Vec<&Vhost> = fixed.iter().chain(&open[..n]).copied().collect();
            let text = render_only(self.caddy, agent, &these);
            async move { how.refuses(self.db, self.fleet, agent, &text).await }
        })
        .await
    }
}

/// After `agent`'s Caddy refused its whole config (`refused`, from a push of what it renders
/// of `sites`): finds the sites causing it, sets them aside on that agent (stored and
/// audited) and pushes the rest. Sites in `spare` (a person's own change) are never set
/// aside: if one of them is a culprit, nothing is, and the refusal stands. Returns how the
/// agent's push now ends, and what was set aside: the one call a deploy or the reconciler
/// makes, where its push happened and under the same lock.
pub(crate) async fn recover(
    db: &Db,
    fleet: &Fleet,
    caddy: &CaddyConfig,
    agent: &Agent,
    sites: &[Vhost],
    spare: &[i64],
    refused: Push,
) -> Result<(Push, Option<Quarantined>), DbError> {
    let finder = Finder {
        db,
        fleet,
        caddy,
        sites,
        spare,
    };
    let mut trial = agent.clone();
    let mut found: Vec<(String, Refusal)> = Vec::new();
    let mut loading = false;
    // Each round sets one site aside, or loads the rest: bounded by the number of sites.
    for _ in 0..=2 * sites.len() {
        let how = if loading { Ask::Load } else { Ask::Adapt };
        let culprit = finder.culprit(&trial, how).await;
        match culprit {
            Ok(Some((site, _))) if spare.contains(&site.id) => return Ok((refused, None)),
            Ok(Some((site, message))) => {
                let refusal = explain(fleet, caddy, &trial, site, message).await;
                trial.quarantined.push(site.id);
                found.push((site.domain.clone(), refusal));
                if !loading {
                    continue;
                }
            }
            // Caddy adapts it all, and the same config was just refused: only loading tells.
            Ok(None) if !loading && found.is_empty() => {
                loading = true;
                continue;
            }
            Ok(None) if !loading => {}
            // Nothing found, or Caddy could not be asked: the refusal stands.
            Ok(None) | Err(_) => break,
        }
        let text = render_only(caddy, &trial, &rendered(&trial, sites));
        match super::push::push_waiting(db, fleet, &trial, &text).await {
            Push::Rejected { .. } => loading = true,
            pushed => return finish(db, &trial, found, pushed, refused).await,
        }
    }
    Ok((refused, None))
}

/// Stores what was set aside (when `pushed` landed) and says how the agent's push ended.
async fn finish(
    db: &Db,
    agent: &Agent,
    found: Vec<(String, Refusal)>,
    pushed: Push,
    refused: Push,
) -> Result<(Push, Option<Quarantined>), DbError> {
    if found.is_empty() || !matches!(pushed, Push::Applied { .. }) {
        return Ok((if found.is_empty() { pushed } else { refused }, None));
    }
    let quarantined = Quarantined {
        agent_id: agent.id,
        agent: agent.name.clone(),
        sites: found,
    };
    set_aside(db, &quarantined).await?;
    Ok((pushed, Some(quarantined)))
}

/// Stores `q`'s rows and audits each site newly set aside, in one transaction.
async fn set_aside(db: &Db, q: &Quarantined) -> Result<(), DbError> {
    let q = q.clone();
    db.run(move |c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for (domain, refusal) in &q.sites {
            if table::set(&tx, q.agent_id, refusal)? {
                let detail = format!(
                    "site {domain} set aside on agent {}: Caddy refuses it: {}",
                    q.agent, refusal.error
                );
                audit::record(
                    &tx,
                    &hub_event(audit::Action::SiteQuarantined, &detail),
                    &hub(),
                )?;
                tracing::warn!(agent = %q.agent, site = %domain, error = %refusal.error,
                    "Caddy refuses a site; it is set aside on that agent");
            }
        }
        tx.commit()?;
        Ok(())
    })
    .await
}

fn hub_event<'a>(action: audit::Action, detail: &'a str) -> audit::Event<'a> {
    audit::Event {
        action,
        user_id: None,
        email: None,
        detail,
    }
}

/// Noticed by the hub itself, not caused by whoever is signed in.
fn hub() -> audit::Origin {
    audit::Origin {
        ip: None,
        user_agent: Some("gatehouse-hub".into()),
    }
}

/// Brings the `saved` sites back everywhere once a change to them has landed: their rows
/// are cleared, and each release audited.
pub(crate) async fn release(db: &Db, saved: Vec<i64>) -> Result<(), DbError> {
    if saved.is_empty() {
        return Ok(());
    }
    db.run(move |c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for id in saved {
            let held = table::for_site(&tx, id)?;
            if table::release(&tx, id)? > 0 {
                let agents: Vec<&str> = held.iter().map(|e| e.agent.as_str()).collect();
                let detail = format!(
                    "site {} saved: no longer set aside on {}",
                    held[0].domain,
                    agents.join(", ")
                );
                audit::record(
                    &tx,
                    &hub_event(audit::Action::SiteReleased, &detail),
                    &hub(),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "{\n\tadmin 127.0.0.1:2999\n}\n\na.example {\n\trespond a\n\tlog\n}\n\n\
                        b.example {\n\tbind 127.0.0.1\n\tgzip\n\tlog\n}\n";

    fn blocks() -> Vec<(i64, String)> {
        vec![
            (1, "a.example {\n\trespond a\n\tlog\n}\n".into()),
            (
                2,
                "b.example {\n\tbind 127.0.0.1\n\tgzip\n\tlog\n}\n".into(),
            ),
        ]
    }

    #[test]
    fn a_line_of_the_whole_file_maps_to_its_site_and_the_line_of_that_sites_body() {
        let placed = layout(TEXT, &blocks());
        assert_eq!(
            placed,
            [
                Placed {
                    id: 1,
                    address_line: 5,
                    body_lines: 1
                },
                Placed {
                    id: 2,
                    address_line: 10,
                    body_lines: 2
                }
            ]
        );
        assert_eq!(site_at(&placed, 12), Some((2, Some(2))), "gzip");
        assert_eq!(site_at(&placed, 6), Some((1, Some(1))));
        assert_eq!(site_at(&placed, 10), Some((2, None)), "its address");
        assert_eq!(
            site_at(&placed, 13),
            Some((2, None)),
            "Gatehouse's log line"
        );
        assert_eq!(site_at(&placed, 2), None, "global options are no site's");
        assert_eq!(site_at(&placed, 99), None);
    }

    #[test]
    fn caddys_message_names_the_line_of_the_body_instead_of_the_file() {
        let m = "Caddyfile:12: unrecognized directive: gzip";
        assert_eq!(named_line(m), Some((0..12, 12)));
        assert_eq!(
            in_body_terms(m, "line 2"),
            "line 2: unrecognized directive: gzip"
        );
        let parse = "parsing caddyfile tokens for 'root': Caddyfile:7 - Error during parsing: \
                     Wrong argument count";
        assert_eq!(
            in_body_terms(parse, "line 1"),
            "parsing caddyfile tokens for 'root': line 1 - Error during parsing: Wrong \
             argument count"
        );
        assert_eq!(
            in_body_terms("ambiguous site definition: a.example", "line 1"),
            "ambiguous site definition: a.example"
        );
        assert_eq!(named_line("Caddyfile: nothing"), None);
    }

    /// Caddy, faked as a rule over which sites a config holds: bisecting is about the order
    /// of questions, which needs no Caddy.
    async fn culprit(sites: &[i64], bad: &[i64], asked: &mut usize) -> Option<(i64, String)> {
        bisect(sites, |n| {
            *asked += 1;
            let refused = sites[..n]
                .iter()
                .find(|s| bad.contains(s))
                .map(|s| format!("site {s} refused"));
            async move { Ok::<_, ()>(refused) }
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn bisecting_finds_the_first_refused_site_in_few_questions() {
        let sites: Vec<i64> = (1..=100).collect();
        let mut asked = 0;
        assert_eq!(
            culprit(&sites, &[37, 80], &mut asked).await,
            Some((37, "site 37 refused".into()))
        );
        assert!(asked <= 2 + 7, "log2(100) questions and two more: {asked}");
        assert_eq!(culprit(&sites, &[], &mut 0).await, None, "all accepted");
        assert_eq!(culprit(&sites, &[1], &mut 0).await.unwrap().0, 1);
        assert_eq!(culprit(&sites, &[100], &mut 0).await.unwrap().0, 100);
    }

    #[tokio::test]
    async fn a_refusal_that_no_site_causes_is_not_pinned_on_one() {
        let refused = bisect(&[1, 2, 3], |_| async {
            Ok::<_, ()>(Some("bad global options".to_string()))
        })
        .await
        .unwrap();
        assert_eq!(refused, None);
    }

    #[test]
    fn a_change_touches_the_sites_it_adds_removes_or_alters() {
        let site = |id: i64, config: &str| Vhost {
            id,
            domain: format!("s{id}.example"),
            template: "raw".into(),
            params: "{}".into(),
            config: config.into(),
            enabled: true,
            owner_id: None,
            all_agents: true,
            agent_ids: vec![],
            labels: vec![],
            created_at: 0,
            updated_at: 0,
        };
        let before = [
            site(1, "respond 1"),
            site(2, "respond 2"),
            site(3, "respond 3"),
        ];
        let after = [
            site(1, "respond 1"),
            site(2, "respond two"),
            site(4, "respond 4"),
        ];
        assert_eq!(touched(&before, &after), [2, 3, 4]);
    }
}
