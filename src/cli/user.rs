//! `gatehouse user …`: manage accounts from the server itself, for bootstrap and for
//! lock-out recovery. Every change is written to the audit log as coming from the CLI.

use crate::auth::{password, token};
use crate::config::Config;
use crate::db::{Db, api_tokens, audit, sessions, users};
use crate::domain::{DisplayName, Email, Password, Role};
use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use std::io::Read;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. Prints a generated password unless --password-stdin is given.
    Add {
        /// Email address, used to sign in.
        email: String,
        /// Display name (defaults to the part of the email before @).
        #[arg(long)]
        name: Option<String>,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password. Prints a generated one unless --password-stdin is given.
    Passwd {
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account's two-factor authentication; they enrol again at next sign-in.
    #[command(name = "reset-2fa")]
    Reset2fa { email: String },
    /// Ban an account: it cannot sign in and its live sessions stop working at once.
    Ban {
        email: String,
        /// Why, for the audit log and the users page.
        #[arg(long, default_value = "banned from the command line")]
        reason: String,
    },
    /// Lift a ban.
    Unban { email: String },
    /// List every account.
    List,
}

pub async fn run(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let path = config.db_path();
    let db = crate::blocking::run(move || Db::open_and_migrate(&path))
        .await?
        .with_context(|| format!("opening {}", config.db_path().display()))?;
    match command {
        UserCommand::Add {
            email,
            name,
            admin,
            password_stdin,
        } => {
            let email = Email::parse(&email).map_err(|e| anyhow!("email: {e}"))?;
            let name = name.unwrap_or_else(|| {
                email
                    .as_str()
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            });
            let name = DisplayName::parse(&name).map_err(|e| anyhow!("name: {e}"))?;
            let (secret, generated) = new_password(password_stdin)?;
            let hash = crate::blocking::run(move || password::hash(secret.expose())).await?;
            let role = if admin { Role::Admin } else { Role::User };
            let shown = email.clone();
            let id = db
                .run(move |c| {
                    let tx = c.transaction()?;
                    let new = users::NewUser {
                        name: &name,
                        email: &email,
                        password_hash: &hash,
                        role,
                    };
                    let id = match users::insert(&tx, &new) {
                        Ok(id) => id,
                        Err(users::InsertError::EmailTaken) => return Ok(None),
                        Err(users::InsertError::Db(e)) => return Err(e),
                    };
                    let detail = format!("role {role}, created from the command line");
                    let event = audit::Event {
                        action: audit::Action::UserCreated,
                        user_id: Some(id),
                        email: Some(email.as_str()),
                        detail: &detail,
                    };
                    audit::record(&tx, &event, &audit::Origin::cli())?;
                    tx.commit()?;
                    Ok(Some(id))
                })
                .await?;
            let Some(id) = id else {
                bail!("an account with the email {shown} already exists")
            };
            println!("created {role} {shown} (id {id})");
            if let Some(generated) = generated {
                println!("one-time password: {generated}");
                println!("it is shown only now; ask them to change it after signing in");
            }
        }
        UserCommand::Passwd {
            email,
            password_stdin,
        } => {
            let user = find(&db, &email).await?;
            let (secret, generated) = new_password(password_stdin)?;
            let hash = crate::blocking::run(move || password::hash(secret.expose())).await?;
            let whose = user.clone();
            change(
                &db,
                &user,
                audit::Action::PasswordChanged,
                "set from the command line",
                move |c| {
                    users::set_password_hash(c, user.id, &hash)?;
                    // Whoever holds a live session with the old password is signed out,
                    // and no token made with it outlives the recovery.
                    sessions::delete_all_for_user(c, user.id, None)?;
                    let why = "password set from the command line";
                    api_tokens::revoke_all_for_user(c, &whose, why, &audit::Origin::cli())?;
                    Ok(true)
                },
            )
            .await?;
            println!(
                "password changed for {}; their sessions and API tokens were revoked",
                user.email
            );
            if let Some(generated) = generated {
                println!("one-time password: {generated}");
            }
        }
        UserCommand::Reset2fa { email } => {
            let user = find(&db, &email).await?;
            let whose = user.clone();
            change(
                &db,
                &user,
                audit::Action::TotpReset,
                "reset from the command line",
                move |c| {
                    users::reset_totp(c, user.id)?;
                    sessions::delete_all_for_user(c, user.id, None)?;
                    let why = "two-factor authentication reset from the command line";
                    api_tokens::revoke_all_for_user(c, &whose, why, &audit::Origin::cli())?;
                    Ok(true)
                },
            )
            .await?;
            println!(
                "two-factor authentication removed for {}; their sessions and API tokens were revoked; they enrol again at next sign-in",
                user.email
            );
        }
        UserCommand::Ban { email, reason } => {
            let user = find(&db, &email).await?;
            let other_admins = db
                .run(move |c| {
                    Ok(c.query_row(
                        "SELECT count(*) FROM users WHERE role = 'admin' AND banned_at IS NULL AND id != ?1",
                        [user.id],
                        |r| r.get::<_, i64>(0),
                    )?)
                })
                .await?;
            if user.is_admin() && other_admins == 0 {
                bail!(
                    "{} is the last active admin; make someone else admin first",
                    user.email
                );
            }
            let detail = format!("reason: {reason}");
            let whose = user.clone();
            change(&db, &user, audit::Action::Ban, &detail, move |c| {
                users::set_banned(c, user.id, Some(&reason))?;
                sessions::delete_all_for_user(c, user.id, None)?;
                // For good: an unban does not bring them back (see the portal's ban).
                api_tokens::revoke_all_for_user(
                    c,
                    &whose,
                    "account banned",
                    &audit::Origin::cli(),
                )?;
                Ok(true)
            })
            .await?;
            println!(
                "banned {}; their sessions stop working on their next request and their API \
                 tokens were revoked",
                user.email
            );
        }
        UserCommand::Unban { email } => {
            let user = find(&db, &email).await?;
            change(
                &db,
                &user,
                audit::Action::Unban,
                "from the command line",
                move |c| users::set_banned(c, user.id, None),
            )
            .await?;
            println!("unbanned {}", user.email);
        }
        UserCommand::List => {
            let all = db.run(|c| users::list(c)).await?;
            println!(
                "{:<6} {:<32} {:<6} {:<5} {:<8} NAME",
                "ID", "EMAIL", "ROLE", "2FA", "STATUS"
            );
            for u in all {
                println!(
                    "{:<6} {:<32} {:<6} {:<5} {:<8} {}",
                    u.id,
                    u.email,
                    u.role,
                    if u.totp_enabled { "on" } else { "off" },
                    if u.is_banned() { "banned" } else { "active" },
                    u.name
                );
            }
        }
    }
    Ok(())
}

async fn find(db: &Db, email: &str) -> anyhow::Result<users::User> {
    let email = Email::parse(email).map_err(|e| anyhow!("email: {e}"))?;
    let shown = email.to_string();
    db.run(move |c| users::find_by_email(c, email.as_str()))
        .await?
        .ok_or_else(|| anyhow!("no account with the email {shown}"))
}

/// Applies one change to `user` and audits it, in one transaction.
async fn change<F>(
    db: &Db,
    user: &users::User,
    action: audit::Action,
    detail: &str,
    f: F,
) -> anyhow::Result<()>
where
    F: FnOnce(&rusqlite::Connection) -> Result<bool, crate::db::DbError> + Send + 'static,
{
    let (id, email, detail) = (user.id, user.email.clone(), detail.to_string());
    db.run(move |c| {
        let tx = c.transaction()?;
        f(&tx)?;
        let event = audit::Event {
            action,
            user_id: Some(id),
            email: Some(&email),
            detail: &detail,
        };
        audit::record(&tx, &event, &audit::Origin::cli())?;
        tx.commit()?;
        Ok(())
    })
    .await?;
    Ok(())
}

/// A password from stdin (checked against the policy) or a generated one to print.
fn new_password(from_stdin: bool) -> anyhow::Result<(Password, Option<String>)> {
    if from_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from stdin")?;
        let input = input.trim_end_matches(['\r', '\n']);
        let password = Password::parse(input).map_err(|e| anyhow!("password: {e}"))?;
        Ok((password, None))
    } else {
        let generated = token::random_hex(12);
        let password = Password::parse(&generated).expect("24 hex characters meet the policy");
        Ok((password, Some(generated)))
    }
}
