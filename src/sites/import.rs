//! The import use case: the sites a Caddyfile read by
//! [`crate::domain::caddyfile::import`] would create, update or leave alone (the plan), and
//! the plan applied in one transaction with one changelog entry per site.
//!
//! Mapping rules (the README repeats them for people):
//! - Each site block becomes one vhost per address: the data model has one domain per vhost
//!   and no aliases, so `a.example, b.example { … }` becomes two vhosts with the same body
//!   (Caddy serves both the same way; only their routes are split).
//! - The block body becomes the vhost's raw config (template `raw`), validated like an
//!   admin-written raw site (an import is admin-only, and admins may use every directive).
//! - A block that cannot become a vhost (an address Gatehouse does not accept, a body the
//!   validator refuses, a domain defined twice in the file, a new site over another owner's
//!   site) is skipped with its reason; an existing domain is updated, or left alone when its
//!   config is already identical.

/// The reader's side, for the front ends that read a file and then plan it.
pub use crate::domain::caddyfile::import::{Note, NoteKind, Parsed, parse};

use super::changes::{self, ChangeError};
use super::{AgentPlan, SiteError, Sites};
use crate::claims::{self, Claim};
use crate::config::CaddyConfig;
use crate::db::changelog::Author;
use crate::db::users::User;
use crate::db::vhosts::{self, Snapshot};
use crate::db::{Db, DbError};
use crate::domain::caddyfile::config_hash;
use crate::domain::vhost::SiteAddress;
use crate::fleet::Fleet;
use crate::fleet::quarantine::{self, Alone};
use rusqlite::Connection;
use serde::Serialize;
use std::collections::HashMap;

/// Shown when a plan changed between preview and confirmation.
const CHANGED: &str =
    "The sites changed since this preview was made; check the new preview and confirm again.";

/// Where the imported vhosts go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target {
    /// Owner of created vhosts (updates keep theirs).
    pub(crate) owner_id: Option<i64>,
    /// Served by this agent only; None: by every agent.
    pub(crate) agent_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Already stored exactly so.
    Unchanged,
    /// Cannot be imported; `reason` says why.
    Skip,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Skip => "skip",
        }
    }
}

/// What happens to one address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub(crate) line: usize,
    /// As written in the file.
    pub(crate) address: String,
    /// Canonical domain, when the address is acceptable.
    pub(crate) domain: Option<String>,
    pub action: Action,
    /// Why it is skipped or left unchanged, or what to know about the update.
    pub(crate) reason: Option<String>,
    /// The other addresses of the same block, which become vhosts of their own.
    pub(crate) same_block_as: Vec<String>,
    /// The stored vhost an update or no-change refers to.
    pub(crate) vhost_id: Option<i64>,
    /// What a Caddy said of the body on its own, when the import asked one ([`check`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) caddy: Option<Checked>,
    #[serde(skip)]
    pub(crate) snapshot: Option<Snapshot>,
}

/// Everything an import would do; `fingerprint` changes whenever what it would write does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub items: Vec<Item>,
    pub(crate) notes: Vec<Note>,
    pub(crate) fingerprint: String,
}

impl Plan {
    pub(crate) fn count(&self, action: Action) -> usize {
        self.items.iter().filter(|i| i.action == action).count()
    }

    /// Whether applying would write anything.
    pub(crate) fn writes(&self) -> bool {
        self.count(Action::Create) + self.count(Action::Update) > 0
    }
}

/// What a Caddy said of one imported body, asked about on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Checked {
    Accepted {
        agent: String,
    },
    /// Imported all the same: set aside on the agents whose Caddy refuses it once it is
    /// pushed (see [`crate::fleet::quarantine`]).
    Refused {
        agent: String,
        /// Caddy's message, its line said within the body.
        error: String,
        line: Option<usize>,
    },
    /// No Caddy could be asked; it is set aside later if one refuses it.
    Unchecked {
        why: String,
    },
}

/// Asks a Caddy about each body `plan` would write, on its own, through an agent's
/// `/caddy/validate`: the agent the import targets, or else the first one the hub last saw
/// reachable. Nothing is refused here: what Caddy says is reported with each item.
pub(crate) async fn check(
    plan: &mut Plan,
    db: &Db,
    fleet: &Fleet,
    caddy: &CaddyConfig,
    target: &Target,
) {
    let agent = db
        .run(|c| crate::db::agents::list(c))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "the import cannot read the agents");
            "the agents could not be read".to_string()
        })
        .and_then(|agents| {
            agents
                .into_iter()
                .filter(|a| target.agent_id.is_none_or(|id| a.id == id))
                .find(|a| a.online && a.caddy_reachable && a.caddy_admin.is_some())
                .ok_or_else(|| "no agent was reachable".to_string())
        });
    for item in &mut plan.items {
        let Some(snapshot) = &item.snapshot else {
            continue;
        };
        let agent = match &agent {
            Ok(agent) => agent,
            Err(why) => {
                item.caddy = Some(Checked::Unchecked { why: why.clone() });
                continue;
            }
        };
        let said = quarantine::check_alone(fleet, caddy, agent, &snapshot.domain, &snapshot.config);
        item.caddy = Some(match said.await {
            Alone::Accepted => Checked::Accepted {
                agent: agent.name.clone(),
            },
            Alone::Refused { error, body_line } => Checked::Refused {
                agent: agent.name.clone(),
                error,
                line: body_line,
            },
            Alone::Unchecked(why) => Checked::Unchecked {
                why: format!("{} could not judge it on its own: {why}", agent.name),
            },
        });
    }
}

/// What an applied import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Applied {
    pub(crate) created: usize,
    pub(crate) updated: usize,
}

fn raw_snapshot(body: &str, base: Snapshot) -> Snapshot {
    let params = serde_json::json!({ "config": body.trim_end() }).to_string();
    Snapshot {
        template: "raw".into(),
        params,
        config: body.to_string(),
        ..base
    }
}

/// Decides, against the database as it is, what importing `parsed` would do.
pub fn plan(conn: &Connection, parsed: &Parsed, target: &Target) -> Result<Plan, DbError> {
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for block in &parsed.blocks {
        for address in &block.addresses {
            let mut item = Item {
                line: block.line,
                address: address.clone(),
                domain: None,
                action: Action::Skip,
                reason: None,
                same_block_as: block
                    .addresses
                    .iter()
                    .filter(|a| *a != address)
                    .cloned()
                    .collect(),
                vhost_id: None,
                caddy: None,
                snapshot: None,
            };
            let site = if address.starts_with(':') {
                Err(format!(
                    "address: {address} has no host name; a site in Gatehouse needs a domain \
                     or an IP address (e.g. localhost{address})"
                ))
            } else if address.contains("{$") {
                Err(
                    "an environment placeholder in a site address cannot be stored; write the \
                     address itself"
                        .to_string(),
                )
            } else {
                SiteAddress::parse(address).map_err(|e| format!("address: {}", e.0))
            };
            match (site, &block.body) {
                (Err(why), _) => item.reason = Some(why),
                (Ok(_), Err(why)) => item.reason = Some(why.clone()),
                (Ok(site), Ok(body)) => {
                    let domain = site.as_str().to_string();
                    item.domain = Some(domain.clone());
                    if let Some(first) = seen.get(&domain) {
                        item.reason = Some(format!(
                            "{domain} is already defined at line {first}; Caddy itself refuses \
                             a file that defines a site twice"
                        ));
                    } else {
                        seen.insert(domain.clone(), block.line);
                        plan_site(conn, &mut item, domain, body, target)?;
                    }
                }
            }
            items.push(item);
        }
    }
    let mut summary = String::new();
    for i in &items {
        if let Some(s) = &i.snapshot {
            summary.push_str(&format!(
                "{}\t{}\t{:?}\t{}\t{:?}\t{:?}\t{}\n",
                i.action.as_str(),
                s.domain,
                i.vhost_id,
                s.all_agents,
                s.agent_ids,
                s.owner_id.unwrap_or(0),
                s.config
            ));
        }
    }
    Ok(Plan {
        items,
        notes: parsed.notes.clone(),
        fingerprint: config_hash(&summary),
    })
}

fn plan_site(
    conn: &Connection,
    item: &mut Item,
    domain: String,
    body: &str,
    target: &Target,
) -> Result<(), DbError> {
    match vhosts::find_by_domain(conn, &domain)? {
        None => {
            // A new site over another owner's is skipped, never created by surprise.
            if let Ok(site) = SiteAddress::parse(&domain) {
                let conflicts = claims::overlapping(conn, &site, target.owner_id, None)?;
                if !conflicts.is_empty() {
                    item.reason = Some(format!(
                        "it overlaps {}; create it on the site form to override",
                        claims::describe(conn, &conflicts)?
                    ));
                    return Ok(());
                }
            }
            item.action = Action::Create;
            item.snapshot = Some(raw_snapshot(
                body,
                Snapshot {
                    domain,
                    template: String::new(),
                    params: String::new(),
                    config: String::new(),
                    enabled: true,
                    owner_id: target.owner_id,
                    all_agents: target.agent_id.is_none(),
                    agent_ids: target.agent_id.into_iter().collect(),
                    labels: Vec::new(),
                },
            ));
        }
        Some(v) => {
            item.vhost_id = Some(v.id);
            if v.config == body {
                item.action = Action::Unchanged;
                item.reason = Some("identical to the stored site".into());
                return Ok(());
            }
            item.action = Action::Update;
            if let Some(agent) = target.agent_id
                && (v.all_agents || v.agent_ids != [agent])
            {
                item.reason =
                    Some("the agents that serve this existing site are kept as they are".into());
            }
            item.snapshot = Some(raw_snapshot(body, v.snapshot()));
        }
    }
    Ok(())
}

/// Writes a plan: one changelog entry per created or updated vhost. Run it inside a
/// transaction; any failure (a domain taken meanwhile, …) must roll all of it back.
pub fn apply(conn: &Connection, author: &Author<'_>, plan: &Plan) -> Result<Applied, ChangeError> {
    let mut done = Applied {
        created: 0,
        updated: 0,
    };
    for item in &plan.items {
        let Some(snapshot) = &item.snapshot else {
            continue;
        };
        match (item.action, item.vhost_id) {
            (Action::Create, _) => {
                changes::create(conn, author, snapshot, &Claim::ADMIN)?;
                done.created += 1;
            }
            (Action::Update, Some(id)) => {
                changes::update(conn, author, id, snapshot, &Claim::ADMIN)?;
                done.updated += 1;
            }
            _ => {}
        }
    }
    Ok(done)
}

impl Sites {
    /// What importing `parsed` would do, written nowhere.
    pub(crate) async fn import_plan(
        &self,
        parsed: &Parsed,
        target: Target,
    ) -> Result<Plan, SiteError> {
        let parsed = parsed.clone();
        Ok(self.db.run(move |c| plan(c, &parsed, &target)).await?)
    }

    /// What importing `parsed` would change on each agent's Caddyfile, written and pushed
    /// nowhere: the import applied in a transaction that is rolled back.
    pub(crate) async fn import_agent_plans(
        &self,
        user: &User,
        parsed: &Parsed,
        target: Target,
    ) -> Result<Vec<AgentPlan>, SiteError> {
        let planned = parsed.clone();
        let change = move |tx: &Connection, author: &Author<'_>| {
            let plan = plan(tx, &planned, &target)?;
            apply(tx, author, &plan)
        };
        self.plan(user, change, |e| match e {
            ChangeError::Db(e) => SiteError::Internal(e),
            e => SiteError::Conflict(format!("Nothing would be imported: {e}.")),
        })
        .await
    }

    /// Imports `parsed` as planned in the preview whose fingerprint is `expected`, through
    /// the deploy pipeline: all or nothing. The plan is made again inside the change's
    /// transaction; if it differs from the one previewed (someone changed a site meanwhile),
    /// nothing is written.
    pub(crate) async fn import(
        &self,
        user: &User,
        parsed: &Parsed,
        target: Target,
        expected: &str,
    ) -> Result<(Applied, Plan), SiteError> {
        let (planned, expected) = (parsed.clone(), expected.to_string());
        self.deploy(user, move |tx, author| {
            let plan = plan(tx, &planned, &target)?;
            if plan.fingerprint != expected {
                return Err(ChangeError::Refused(CHANGED.into()));
            }
            let applied = apply(tx, author, &plan)?;
            Ok((applied, plan))
        })
        .await
        .map_err(|e| {
            SiteError::of_deploy(e, |e| match e {
                ChangeError::Db(e) => SiteError::Internal(e),
                ChangeError::Refused(why) => SiteError::Conflict(why),
                e => SiteError::Conflict(format!("Nothing was imported: {e}.")),
            })
        })
    }
}
