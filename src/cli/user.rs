//! `gatehouse user …`: manage accounts from the server itself, for bootstrap and for
//! lock-out recovery. The rules are the portal's (see `accounts`); every change is written
//! to the audit log as coming from the CLI.

use crate::accounts::{self, AccountError, Actor, NewAccount, Refusal};
use crate::auth::token;
use crate::config::Config;
use crate::db::{Db, users};
use crate::domain::{DisplayName, Email, Password, Role};
use anyhow::{Context, anyhow};
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
    /// Make an account an admin or a user. The last active admin cannot be demoted.
    Role {
        email: String,
        /// `admin` or `user`.
        role: Role,
    },
    /// Delete an account. The last active admin cannot be deleted.
    Delete { email: String },
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
            let (password, generated) = new_password(password_stdin)?;
            let role = if admin { Role::Admin } else { Role::User };
            let shown = email.to_string();
            let new = NewAccount {
                name,
                email,
                role,
                password,
                one_time: generated.is_some(),
            };
            let id = accounts::create(&db, &Actor::Cli, new)
                .await
                .map_err(|e| refused(e, &shown))?;
            println!("created {role} {shown} (id {id})");
            if let Some(generated) = generated {
                println!("one-time password: {generated}");
                println!("it is shown only now and signs in once; they then choose their own");
            }
        }
        UserCommand::Passwd {
            email,
            password_stdin,
        } => {
            let user = find(&db, &email).await?;
            let (password, generated) = new_password(password_stdin)?;
            accounts::set_password(&db, &Actor::Cli, user.id, password, generated.is_some())
                .await
                .map_err(|e| refused(e, &user.email))?;
            println!(
                "password changed for {}; their sessions and API tokens were revoked",
                user.email
            );
            if let Some(generated) = generated {
                println!("one-time password: {generated}");
                println!("it signs in once; they then choose their own");
            }
        }
        UserCommand::Reset2fa { email } => {
            let user = find(&db, &email).await?;
            accounts::reset_2fa(&db, &Actor::Cli, user.id)
                .await
                .map_err(|e| refused(e, &user.email))?;
            println!(
                "two-factor authentication removed for {}; their sessions and API tokens were revoked; they enrol again at next sign-in",
                user.email
            );
        }
        UserCommand::Ban { email, reason } => {
            let user = find(&db, &email).await?;
            accounts::ban(&db, &Actor::Cli, user.id, reason)
                .await
                .map_err(|e| refused(e, &user.email))?;
            println!(
                "banned {}; their sessions stop working on their next request and their API \
                 tokens were revoked",
                user.email
            );
        }
        UserCommand::Unban { email } => {
            let user = find(&db, &email).await?;
            accounts::unban(&db, &Actor::Cli, user.id)
                .await
                .map_err(|e| refused(e, &user.email))?;
            println!("unbanned {}", user.email);
        }
        UserCommand::Role { email, role } => {
            let user = find(&db, &email).await?;
            accounts::change_role(&db, &Actor::Cli, user.id, role)
                .await
                .map_err(|e| refused(e, &user.email))?;
            println!("{} is now {role}", user.email);
        }
        UserCommand::Delete { email } => {
            let user = find(&db, &email).await?;
            accounts::delete(&db, &Actor::Cli, user.id)
                .await
                .map_err(|e| refused(e, &user.email))?;
            println!("deleted {} {}", user.role, user.email);
        }
        UserCommand::List => {
            let all = db.run(|c| users::list(c)).await?;
            let rows = all.into_iter().map(|u| {
                [
                    u.id.to_string(),
                    u.email.clone(),
                    u.role.to_string(),
                    (if u.totp_enabled { "on" } else { "off" }).to_string(),
                    (if u.is_banned() { "banned" } else { "active" }).to_string(),
                    u.name,
                ]
            });
            print!(
                "{}",
                columns(["ID", "EMAIL", "ROLE", "2FA", "STATUS", "NAME"], rows)
            );
        }
    }
    Ok(())
}

async fn find(db: &Db, email: &str) -> anyhow::Result<users::User> {
    let email = Email::parse(email).map_err(|e| anyhow!("email: {e}"))?;
    accounts::find_by_email(db, &email)
        .await
        .map_err(|e| refused(e, email.as_str()))
}

/// How the command line words a refused account change to `email`.
fn refused(e: AccountError, email: &str) -> anyhow::Error {
    match e {
        AccountError::NotFound => anyhow!("no account with the email {email}"),
        AccountError::EmailTaken => anyhow!("an account with the email {email} already exists"),
        AccountError::Refused(Refusal::LastAdmin) => {
            anyhow!("{email} is the last active admin; make someone else admin first")
        }
        other => anyhow!(other),
    }
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

/// Rows under a header, each column as wide as its widest cell (counted in characters), two
/// spaces apart; the last column is not padded.
fn columns<const N: usize>(
    header: [&str; N],
    rows: impl IntoIterator<Item = [String; N]>,
) -> String {
    let mut table = vec![header.map(str::to_string)];
    table.extend(rows);
    let mut widths = [0; N];
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::columns;

    #[test]
    fn columns_line_up_whatever_the_widths_of_the_cells() {
        let rows = [
            ["1", "a-rather-long-address@example.com", "admin"],
            ["12", "bö@x.io", "user"],
        ];
        let table = columns(["ID", "EMAIL", "ROLE"], rows.map(|r| r.map(str::to_string)));
        let lines: Vec<Vec<char>> = table.lines().map(|l| l.chars().collect()).collect();
        assert_eq!(lines.len(), 3);
        // Where each header starts, in characters: every row's cell starts there too.
        let header: String = lines[0].iter().collect();
        let starts =
            ["ID", "EMAIL", "ROLE"].map(|h| header[..header.find(h).unwrap()].chars().count());
        for (line, row) in lines[1..].iter().zip(rows) {
            for (start, cell) in starts.iter().zip(row) {
                let found: String = line[*start..].iter().take(cell.chars().count()).collect();
                assert_eq!(found, cell, "{:?}", table);
            }
        }
        assert_eq!(
            starts[2],
            starts[1] + "a-rather-long-address@example.com".len() + 2
        );
    }
}
