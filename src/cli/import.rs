//! `gatehouse import FILE`: a Caddyfile into the hub's database, as vhosts.
//!
//! It writes the database directly, in one transaction with one changelog entry per vhost,
//! and does not talk to any Caddy: a running hub's reconciler notices the new configuration
//! and pushes it to the agents on its next round (`[fleet] reconcile_interval_secs`). Each
//! body it writes is first asked about on its own by a Caddy, through an agent the hub last
//! saw reachable: a refusal is reported, not fatal, and the site is set aside on the agents
//! that refuse it (see `fleet::quarantine`); with no agent to ask it is reported unchecked.
//! The
//! admin page `/import` instead goes through the deploy pipeline, so a Caddy that refuses
//! the result leaves everything unchanged there.

use crate::config::Config;
use crate::db::changelog::Author;
use crate::db::{DbError, agents, users};
use crate::sites::import::{self, Action, Applied, Checked, NoteKind, Plan, Target};
use anyhow::{Context, anyhow, bail};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Caddyfile to import (`-` reads standard input).
    file: PathBuf,
    /// Serve the imported sites on this agent only (by default: on every agent).
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// Show what would be created, updated or skipped, and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// The admin account that owns the new sites and signs the changelog, marked
    /// "(gatehouse import)" there (default: the first admin account).
    #[arg(long = "as", value_name = "EMAIL")]
    as_admin: Option<String>,
    /// Print the plan (and what was applied) as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Config, args: Args) -> anyhow::Result<()> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let parsed = import::parse(&text).map_err(|e| anyhow!("{}: {e}", args.file.display()))?;
    // With the secret key: agents (their tokens sealed) are read too. A dry run only reads:
    // no migration, no sealing, no new key.
    let for_db = config.clone();
    let dry = args.dry_run;
    let db = crate::blocking::run(move || {
        if dry {
            crate::app::open_database_read_only(&for_db)
        } else {
            crate::app::open_database(&for_db)
        }
    })
    .await??;
    let (agent_name, as_admin, dry_run) = (args.agent.clone(), args.as_admin.clone(), args.dry_run);
    let outcome = db
        .run(move |c| {
            // IMMEDIATE: the plan is made and applied with no other writer in between. A dry
            // run only reads, so it does not take the write lock from a running hub.
            let behavior = if dry_run {
                rusqlite::TransactionBehavior::Deferred
            } else {
                rusqlite::TransactionBehavior::Immediate
            };
            let tx = c.transaction_with_behavior(behavior)?;
            let admins: Vec<users::User> = users::list(&tx)?
                .into_iter()
                .filter(|u| u.is_admin())
                .collect();
            let admin = match &as_admin {
                Some(email) => admins
                    .iter()
                    .find(|u| u.email.eq_ignore_ascii_case(email))
                    .cloned()
                    .ok_or_else(|| format!("there is no admin account {email}"))
                    .map(Some),
                None => Ok(admins.into_iter().min_by_key(|u| u.id)),
            };
            let admin = match admin {
                Ok(a) => a,
                Err(why) => return Ok(Err(why)),
            };
            let agent_id = match &agent_name {
                Some(name) => match agents::list(&tx)?.into_iter().find(|a| &a.name == name) {
                    Some(a) => Some(a.id),
                    None => return Ok(Err(format!("there is no agent named {name}"))),
                },
                None => None,
            };
            let target = Target {
                owner_id: admin.as_ref().map(|a| a.id),
                agent_id,
            };
            let plan = import::plan(&tx, &parsed, &target)?;
            if dry_run || !plan.writes() {
                return Ok(Ok((plan, None, target)));
            }
            let Some(admin) = admin else {
                return Ok(Err(
                    "there is no admin account yet to record the import as; \
                     create one first (gatehouse user add --admin)"
                        .into(),
                ));
            };
            // The admin's email, marked, so the changelog says the command line did it.
            let signed = format!("{} (gatehouse import)", admin.email);
            let author = Author {
                user_id: admin.id,
                email: &signed,
            };
            match import::apply(&tx, &author, &plan) {
                Ok(applied) => {
                    tx.commit()?;
                    Ok(Ok((plan, Some(applied), target)))
                }
                Err(crate::sites::changes::ChangeError::Db(e)) => Err(e),
                Err(e) => Ok(Err(format!("nothing was imported: {e}"))),
            }
        })
        .await
        .map_err(|e: DbError| anyhow!(e))?;
    let (mut plan, applied, target) = match outcome {
        Ok(done) => done,
        Err(why) => bail!(why),
    };
    let fleet = crate::fleet::Fleet::new(Duration::from_secs(config.fleet.push_timeout_secs));
    import::check(&mut plan, &db, &fleet, &config.caddy, &target).await;
    if args.json {
        let out = serde_json::json!({ "plan": plan, "applied": applied, "dry_run": args.dry_run });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_plan(&plan, applied, args.dry_run);
    }
    Ok(())
}

fn print_plan(plan: &Plan, applied: Option<Applied>, dry_run: bool) {
    for item in &plan.items {
        let shown = item.domain.as_deref().unwrap_or(&item.address);
        let mut line = format!("{:<9} {shown}  (line {})", item.action.as_str(), item.line);
        if let Some(reason) = &item.reason {
            line.push_str(&format!(": {reason}"));
        }
        match &item.caddy {
            Some(Checked::Refused { agent, error, .. }) => line.push_str(&format!(
                "\n          Caddy ({agent}) refuses it: {error}; it {} imported all the same, \
                 and set aside on every agent whose Caddy refuses it until it is fixed and saved",
                if dry_run { "would be" } else { "is" }
            )),
            Some(Checked::Unchecked { why }) => line.push_str(&format!(
                "\n          unchecked: {why}; it is set aside on any agent whose Caddy refuses it"
            )),
            Some(Checked::Accepted { .. }) | None => {}
        }
        println!("{line}");
    }
    for note in &plan.notes {
        let lines = if note.last_line > note.line {
            format!("lines {}-{}", note.line, note.last_line)
        } else {
            format!("line {}", note.line)
        };
        let kind = match note.kind {
            NoteKind::Config => "set in config",
            NoteKind::Unmapped => "not imported",
            NoteKind::Kept => "note",
        };
        println!("{lines}: {kind}: {}  [{}]", note.message, note.source);
    }
    println!(
        "{} to create, {} to update, {} unchanged, {} skipped",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Unchanged),
        plan.count(Action::Skip)
    );
    match applied {
        _ if dry_run => println!("dry run: nothing was written"),
        Some(a) => println!(
            "imported: {} created, {} updated, in one transaction; a running hub pushes them \
             to the agents on its next reconcile round",
            a.created, a.updated
        ),
        None => println!("nothing to write"),
    }
}
