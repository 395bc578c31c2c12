//! Accounts: what a change to an account takes with it, written once for the portal and the
//! command line.
//!
//! - A ban ends every session and revokes every API token, for good: an unban brings neither
//!   back.
//! - A new password or a reset second factor ends the sessions and revokes the API tokens too.
//! - The last active admin cannot be demoted, banned or deleted.
//!
//! Each change is written with its audit entry in one IMMEDIATE transaction that also runs
//! the checks guarding it, so no check races its change. Who asks is an [`Actor`]: an admin
//! in the portal (who must still be one when the change is written, and may not act on
//! themselves) or the command line on the server. Each front end words a [`Refusal`] its own
//! way; the rule behind it is this one.

pub mod signin;

use crate::auth::password;
use crate::db::audit::{self, Action, Event, Origin};
use crate::db::users::{self, NewUser, User};
use crate::db::{Db, DbError, api_tokens, sessions};
use crate::domain::words::count;
use crate::domain::{DisplayName, Email, Password, Role};
use rusqlite::{Connection, TransactionBehavior};

/// Who asks for a change to an account.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An admin signed in to the portal, from this client.
    Admin { id: i64, origin: Origin },
    /// `gatehouse user …` on the server itself.
    Cli,
}

impl Actor {
    fn origin(&self) -> Origin {
        match self {
            Actor::Admin { origin, .. } => origin.clone(),
            Actor::Cli => Origin::cli(),
        }
    }

    /// The audit detail, signed with the acting admin's id (the command line's wording
    /// already says where it came from).
    fn sign(&self, detail: &str) -> String {
        match self {
            Actor::Admin { id, .. } => format!("{detail} (by admin #{id})"),
            Actor::Cli => detail.to_string(),
        }
    }

    /// The acting admin may have been banned or demoted since their request was let in.
    fn check(&self, c: &Connection) -> Result<(), AccountError> {
        if let Actor::Admin { id, .. } = self {
            let still_admin = users::find(c, *id)?.is_some_and(|a| a.is_admin() && !a.is_banned());
            if !still_admin {
                return Err(AccountError::Refused(Refusal::NoLongerAdmin));
            }
        }
        Ok(())
    }
}

/// Why a change was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The acting admin is no longer an active admin.
    NoLongerAdmin,
    /// An admin may not do this to their own account; names the act ("ban", "delete", …).
    Yourself(&'static str),
    /// The account is the last active admin.
    LastAdmin,
}

/// Why an account operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no such account")]
    NotFound,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("refused: {0:?}")]
    Refused(Refusal),
    /// Too many password attempts; retry after this many seconds.
    #[error("too many attempts; retry in {0}s")]
    Throttled(u64),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rusqlite::Error> for AccountError {
    fn from(e: rusqlite::Error) -> Self {
        AccountError::Db(e.into())
    }
}

impl From<crate::blocking::BlockingError> for AccountError {
    fn from(e: crate::blocking::BlockingError) -> Self {
        AccountError::Db(e.into())
    }
}

/// Refuses an admin's act on their own account: another admin must do it.
fn not_yourself(by: &Actor, target: &User, what: &'static str) -> Result<(), AccountError> {
    match by {
        Actor::Admin { id, .. } if *id == target.id => {
            Err(AccountError::Refused(Refusal::Yourself(what)))
        }
        _ => Ok(()),
    }
}

/// Taking `target` out of the active admins must leave at least one.
fn keeps_an_admin(c: &Connection, target: &User) -> Result<(), AccountError> {
    if target.is_admin() && users::count_other_active_admins(c, target.id)? == 0 {
        return Err(AccountError::Refused(Refusal::LastAdmin));
    }
    Ok(())
}

/// Ends the account's sessions (all but `keep`, the browser asking) and revokes all its API
/// tokens; returns how many of each.
fn end_credentials(
    c: &Connection,
    user: &User,
    keep: Option<&str>,
    why: &str,
    origin: &Origin,
) -> Result<(usize, usize), DbError> {
    let sessions = sessions::delete_all_for_user(c, user.id, keep)?;
    let tokens = api_tokens::revoke_all_for_user(c, user, why, origin)?;
    Ok((sessions, tokens))
}

/// The argon2 hash of a new password, off the async workers.
async fn hash(new: Password) -> Result<String, AccountError> {
    Ok(crate::blocking::run(move || password::hash(new.expose())).await?)
}

/// Runs `change` on account `target` with its audit entry in one IMMEDIATE transaction,
/// after the actor is checked. `change` returns the audit detail. Returns the account as it
/// was before.
async fn apply<F>(
    db: &Db,
    by: &Actor,
    target: i64,
    action: Action,
    change: F,
) -> Result<User, AccountError>
where
    F: FnOnce(&Connection, &User, &Actor) -> Result<String, AccountError> + Send + 'static,
{
    let (user, _) = apply_if(db, by, target, action, |c, user, by| {
        change(c, user, by).map(Some)
    })
    .await?;
    Ok(user)
}

/// As [`apply`], for a change that may find nothing to do: `change` returns None then, and
/// nothing is recorded. Returns the account as it was and what `change` returned.
async fn apply_if<F>(
    db: &Db,
    by: &Actor,
    target: i64,
    action: Action,
    change: F,
) -> Result<(User, Option<String>), AccountError>
where
    F: FnOnce(&Connection, &User, &Actor) -> Result<Option<String>, AccountError> + Send + 'static,
{
    let by = by.clone();
    db.run(move |c| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done = (|| {
            by.check(&tx)?;
            let user = users::find(&tx, target)?.ok_or(AccountError::NotFound)?;
            let done = change(&tx, &user, &by)?;
            if let Some(detail) = &done {
                let detail = by.sign(detail);
                // A deleted account keeps its email in the log, not a dangling id.
                let still_there = users::find(&tx, user.id)?.map(|u| u.id);
                let event = Event {
                    action,
                    user_id: still_there,
                    email: Some(&user.email),
                    detail: &detail,
                };
                audit::record(&tx, &event, &by.origin())?;
            }
            Ok((user, done))
        })();
        if done.is_ok() {
            tx.commit()?;
        }
        Ok(done)
    })
    .await?
}

/// The account with this email, for the command line, which names accounts that way.
pub async fn find_by_email(db: &Db, email: &Email) -> Result<User, AccountError> {
    let email = email.as_str().to_string();
    db.run(move |c| users::find_by_email(c, &email))
        .await?
        .ok_or(AccountError::NotFound)
}

/// What a new account is made of.
pub struct NewAccount {
    pub name: DisplayName,
    pub email: Email,
    pub role: Role,
    pub password: Password,
    /// The password was generated to hand over: it signs in once, then its owner chooses one.
    pub one_time: bool,
}

/// Creates an account; returns its id.
pub async fn create(db: &Db, by: &Actor, new: NewAccount) -> Result<i64, AccountError> {
    let NewAccount {
        name,
        email,
        role,
        password,
        one_time,
    } = new;
    let hash = hash(password).await?;
    let by = by.clone();
    db.run(move |c| {
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let made = (|| {
            by.check(&tx)?;
            let new = NewUser {
                name: &name,
                email: &email,
                password_hash: &hash,
                role,
            };
            let id = users::insert(&tx, &new).map_err(|e| match e {
                users::InsertError::EmailTaken => AccountError::EmailTaken,
                users::InsertError::Db(e) => AccountError::Db(e),
            })?;
            if one_time {
                users::mark_one_time(&tx, id)?;
            }
            let detail = match &by {
                Actor::Admin { id, .. } => format!("role {role}, created by admin #{id}"),
                Actor::Cli => format!("role {role}, created from the command line"),
            };
            let event = Event {
                action: Action::UserCreated,
                user_id: Some(id),
                email: Some(email.as_str()),
                detail: &detail,
            };
            audit::record(&tx, &event, &by.origin())?;
            Ok(id)
        })();
        if made.is_ok() {
            tx.commit()?;
        }
        Ok(made)
    })
    .await?
}

/// Creates the first admin through `/setup`: false when an account exists already (two
/// racing setups create one admin, as the check and the insert share one transaction).
pub async fn create_first_admin(
    db: &Db,
    name: DisplayName,
    email: Email,
    password: Password,
) -> Result<bool, AccountError> {
    let hash = hash(password).await?;
    Ok(db
        .run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if users::count(&tx)? > 0 {
                return Ok(false);
            }
            let new = NewUser {
                name: &name,
                email: &email,
                password_hash: &hash,
                role: Role::Admin,
            };
            let id = users::insert(&tx, &new).map_err(|e| match e {
                users::InsertError::Db(e) => e,
                users::InsertError::EmailTaken => unreachable!("the table is empty"),
            })?;
            let event = Event {
                action: Action::UserCreated,
                user_id: Some(id),
                email: Some(email.as_str()),
                detail: "first admin, created through /setup",
            };
            audit::record(&tx, &event, &Origin::default())?;
            tx.commit()?;
            Ok(true)
        })
        .await?)
}

/// Bans an account: it cannot sign in, and its sessions and API tokens end now.
pub async fn ban(db: &Db, by: &Actor, target: i64, reason: String) -> Result<User, AccountError> {
    apply(db, by, target, Action::Ban, move |c, user, by| {
        not_yourself(by, user, "ban")?;
        keeps_an_admin(c, user)?;
        users::set_banned(c, user.id, Some(&reason))?;
        // Every live session ends now, not at expiry, and every API token goes for good: an
        // unban must not bring back credentials made before (or by whoever caused) the ban.
        let (n, t) = end_credentials(c, user, None, "account banned", &by.origin())?;
        Ok(match by {
            Actor::Admin { .. } => {
                format!(
                    "reason: {reason}; {} ended; {} revoked",
                    count(n, "session", "sessions"),
                    count(t, "API token", "API tokens")
                )
            }
            Actor::Cli => format!("reason: {reason}"),
        })
    })
    .await
}

/// Lifts a ban. Nothing the ban ended comes back.
pub async fn unban(db: &Db, by: &Actor, target: i64) -> Result<User, AccountError> {
    apply(db, by, target, Action::Unban, |c, user, by| {
        users::set_banned(c, user.id, None)?;
        Ok(match by {
            Actor::Admin { .. } => String::new(),
            Actor::Cli => "from the command line".into(),
        })
    })
    .await
}

/// Ends every session and API token of `user` after a credential was reset, and returns the
/// audit detail in the actor's wording. `what` names the reset ("password set", …), `cli` is
/// the command line's detail.
fn after_reset(
    c: &Connection,
    user: &User,
    by: &Actor,
    what: &str,
    cli: &str,
) -> Result<String, DbError> {
    let why = match by {
        Actor::Admin { .. } => format!("{what} by an admin"),
        Actor::Cli => format!("{what} from the command line"),
    };
    let (n, t) = end_credentials(c, user, None, &why, &by.origin())?;
    Ok(match by {
        Actor::Admin { .. } => format!(
            "{} ended, {} revoked",
            count(n, "session", "sessions"),
            count(t, "API token", "API tokens")
        ),
        Actor::Cli => cli.to_string(),
    })
}

/// Removes the second factor and its backup codes; the account signs in again with its
/// password and enrols afresh. No session or token made by whoever had the second factor
/// outlives the reset.
pub async fn reset_2fa(db: &Db, by: &Actor, target: i64) -> Result<User, AccountError> {
    apply(db, by, target, Action::TotpReset, |c, user, by| {
        users::reset_totp(c, user.id)?;
        let what = "two-factor authentication reset";
        Ok(after_reset(
            c,
            user,
            by,
            what,
            "reset from the command line",
        )?)
    })
    .await
}

/// Sets someone's password (recovery): whoever holds a session with the old one is signed
/// out, and no token made with it outlives the change. A `one_time` password (generated to
/// hand over) signs in once, then its owner chooses one.
pub async fn set_password(
    db: &Db,
    by: &Actor,
    target: i64,
    new: Password,
    one_time: bool,
) -> Result<User, AccountError> {
    let hash = hash(new).await?;
    apply(
        db,
        by,
        target,
        Action::PasswordChanged,
        move |c, user, by| {
            users::set_password_hash(c, user.id, &hash)?;
            if one_time {
                users::mark_one_time(c, user.id)?;
            }
            Ok(after_reset(
                c,
                user,
                by,
                "password set",
                "set from the command line",
            )?)
        },
    )
    .await
}

/// What changing one's own password ended elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// Other sessions signed out (the browser asking stays signed in).
    pub sessions: usize,
    pub tokens: usize,
}

/// Changes the signed-in user's own password (the current one already checked): every other
/// session is signed out and every API token revoked, since one made from a stolen session
/// must not outlive the change.
pub async fn change_own_password(
    db: &Db,
    user: &User,
    keep_session: &str,
    new: Password,
    origin: &Origin,
) -> Result<Ended, AccountError> {
    let hash = hash(new).await?;
    let (user, keep, origin) = (user.clone(), keep_session.to_string(), origin.clone());
    Ok(db
        .run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            users::set_password_hash(&tx, user.id, &hash)?;
            let (sessions, tokens) =
                end_credentials(&tx, &user, Some(&keep), "password changed", &origin)?;
            let detail = format!("{sessions} other sessions signed out");
            let event = Event::about(&user, Action::PasswordChanged, &detail);
            audit::record(&tx, &event, &origin)?;
            tx.commit()?;
            Ok(Ended { sessions, tokens })
        })
        .await?)
}

/// Changes an account's role. Demoting the last active admin is refused.
pub async fn change_role(
    db: &Db,
    by: &Actor,
    target: i64,
    role: Role,
) -> Result<User, AccountError> {
    apply(db, by, target, Action::RoleChanged, move |c, user, by| {
        not_yourself(by, user, "change the role of")?;
        if role == Role::User {
            keeps_an_admin(c, user)?;
        }
        users::set_role(c, user.id, role)?;
        Ok(format!("{} -> {role}", user.role))
    })
    .await
}

/// Deletes an account; the audit log keeps its email. Deleting the last active admin is
/// refused.
pub async fn delete(db: &Db, by: &Actor, target: i64) -> Result<User, AccountError> {
    apply(db, by, target, Action::UserDeleted, |c, user, by| {
        not_yourself(by, user, "delete")?;
        keeps_an_admin(c, user)?;
        users::delete(c, user.id)?;
        Ok(format!("{} {}", user.role, user.email))
    })
    .await
}

/// Delegates a name pattern (already checked) to account `target`; false when it was
/// granted already.
pub async fn grant(
    db: &Db,
    by: &Actor,
    target: i64,
    pattern: String,
) -> Result<bool, AccountError> {
    let (_, added) = apply_if(db, by, target, Action::GrantAdded, |c, user, by| {
        let actor = match by {
            Actor::Admin { id, .. } => Some(*id),
            Actor::Cli => None,
        };
        Ok(crate::db::grants::insert(c, user.id, &pattern, actor)?.then_some(pattern))
    })
    .await?;
    Ok(added.is_some())
}

/// Takes back grant `grant` of account `target`; returns its pattern, or None when the
/// account has no such grant.
pub async fn take_back(
    db: &Db,
    by: &Actor,
    target: i64,
    grant: i64,
) -> Result<Option<String>, AccountError> {
    let (_, removed) = apply_if(db, by, target, Action::GrantRemoved, move |c, user, _| {
        Ok(crate::db::grants::delete(c, user.id, grant)?)
    })
    .await?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::api_tokens::Scope;

    struct Fixture {
        _dir: tempfile::TempDir,
        db: Db,
    }

    fn fixture() -> Fixture {
        use crate::secrets::{Sealer, SecretKey};
        let dir = tempfile::tempdir().unwrap();
        let sealer = std::sync::Arc::new(Sealer::new(&SecretKey::generate()));
        let db = Db::open_with(&dir.path().join("gh.db"), Some(sealer)).unwrap();
        db.migrate().unwrap();
        Fixture { _dir: dir, db }
    }

    impl Fixture {
        /// An account with two signed-in sessions ("a", "b") and one API token.
        async fn account(&self, email: &str, role: Role) -> i64 {
            let email = Email::parse(email).unwrap();
            self.db
                .run(move |c| {
                    let new = NewUser {
                        name: &DisplayName::parse("Someone").unwrap(),
                        email: &email,
                        password_hash: "hash",
                        role,
                    };
                    let id = users::insert(c, &new).unwrap();
                    for sid in ["a", "b"] {
                        sessions::create(c, &format!("{sid}-{id}"), id, None, None)?;
                    }
                    api_tokens::create(c, id, "ci", Scope::Write, None)?;
                    Ok(id)
                })
                .await
                .unwrap()
        }

        /// An admin (`ada`), and for each kind of actor, a user account for it to act on.
        async fn targets(&self) -> (i64, [(Actor, i64); 2]) {
            let ada = self.account("ada@example.com", Role::Admin).await;
            let web = self.account("bob-web@example.com", Role::User).await;
            let cli = self.account("bob-cli@example.com", Role::User).await;
            (ada, [(admin(ada), web), (Actor::Cli, cli)])
        }

        async fn user(&self, id: i64) -> Option<User> {
            self.db.run(move |c| users::find(c, id)).await.unwrap()
        }

        /// Sessions and API tokens the account still has.
        async fn credentials(&self, id: i64) -> (usize, usize) {
            self.db
                .run(move |c| {
                    Ok((
                        sessions::list_for_user(c, id)?.len(),
                        api_tokens::list_for_user(c, id)?.len(),
                    ))
                })
                .await
                .unwrap()
        }

        /// (action, user id, email, detail) of every audit entry, oldest first.
        async fn audit(&self) -> Vec<(String, Option<i64>, Option<String>, String)> {
            let mut all = self
                .db
                .run(|c| audit::list(c, None, None, 100))
                .await
                .unwrap();
            all.reverse();
            all.into_iter()
                .map(|e| (e.action, e.user_id, e.email, e.detail))
                .collect()
        }
    }

    fn admin(id: i64) -> Actor {
        Actor::Admin {
            id,
            origin: Origin::default(),
        }
    }

    fn refusal(result: Result<User, AccountError>) -> Refusal {
        match result {
            Err(AccountError::Refused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn password() -> Password {
        Password::parse("a new long password").unwrap()
    }

    #[tokio::test]
    async fn a_ban_ends_every_session_and_revokes_every_token_whoever_bans() {
        let f = fixture();
        let (ada, targets) = f.targets().await;
        for (by, bob) in targets {
            ban(&f.db, &by, bob, "spam".into()).await.unwrap();
            assert!(f.user(bob).await.unwrap().is_banned());
            assert_eq!(f.credentials(bob).await, (0, 0), "{by:?}");
            unban(&f.db, &by, bob).await.unwrap();
            assert!(!f.user(bob).await.unwrap().is_banned());
            assert_eq!(
                f.credentials(bob).await,
                (0, 0),
                "an unban brings nothing back"
            );
        }
        let details: Vec<String> = f
            .audit()
            .await
            .into_iter()
            .filter(|(a, ..)| a == "ban")
            .map(|(.., d)| d)
            .collect();
        assert_eq!(
            details,
            [
                format!("reason: spam; 2 sessions ended; 1 API token revoked (by admin #{ada})"),
                "reason: spam".to_string(),
            ]
        );
    }

    #[tokio::test]
    async fn a_new_password_ends_sessions_and_revokes_tokens() {
        let f = fixture();
        let bob = f.account("bob@example.com", Role::User).await;
        let user = f.user(bob).await.unwrap();
        let ended = change_own_password(
            &f.db,
            &user,
            &format!("a-{bob}"),
            password(),
            &Origin::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            ended,
            Ended {
                sessions: 1,
                tokens: 1
            }
        );
        assert_eq!(f.credentials(bob).await, (1, 0), "the asking browser stays");

        let carol = f.account("carol@example.com", Role::User).await;
        set_password(&f.db, &Actor::Cli, carol, password(), false)
            .await
            .unwrap();
        assert_eq!(f.credentials(carol).await, (0, 0));
        let actions: Vec<String> = f.audit().await.into_iter().map(|(a, ..)| a).collect();
        assert_eq!(
            actions,
            [
                "api_token_revoked",
                "password_changed",
                "api_token_revoked",
                "password_changed"
            ]
        );
    }

    #[tokio::test]
    async fn a_second_factor_reset_ends_sessions_and_revokes_tokens() {
        let f = fixture();
        for (by, bob) in f.targets().await.1 {
            f.db.run(move |c| users::enable_totp(c, bob, "JBSWY3DPEHPK3PXP", 1))
                .await
                .unwrap();
            assert!(f.user(bob).await.unwrap().totp_enabled);
            reset_2fa(&f.db, &by, bob).await.unwrap();
            assert!(!f.user(bob).await.unwrap().totp_enabled);
            assert_eq!(f.credentials(bob).await, (0, 0), "{by:?}");
        }
    }

    #[tokio::test]
    async fn the_last_active_admin_cannot_be_demoted_banned_or_deleted() {
        let f = fixture();
        let ada = f.account("ada@example.com", Role::Admin).await;
        let by = Actor::Cli;
        assert_eq!(
            refusal(change_role(&f.db, &by, ada, Role::User).await),
            Refusal::LastAdmin
        );
        assert_eq!(
            refusal(ban(&f.db, &by, ada, "oops".into()).await),
            Refusal::LastAdmin
        );
        assert_eq!(refusal(delete(&f.db, &by, ada).await), Refusal::LastAdmin);
        let still = f.user(ada).await.unwrap();
        assert!(still.is_admin() && !still.is_banned());
        assert_eq!(
            f.credentials(ada).await,
            (2, 1),
            "a refusal changes nothing"
        );
        assert!(f.audit().await.is_empty(), "and records nothing");

        // A banned second admin does not count.
        let ben = f.account("ben@example.com", Role::Admin).await;
        ban(&f.db, &by, ben, "gone".into()).await.unwrap();
        assert_eq!(refusal(delete(&f.db, &by, ada).await), Refusal::LastAdmin);
        // An active one does: either may now go, but not both.
        let cy = f.account("cy@example.com", Role::Admin).await;
        change_role(&f.db, &by, ada, Role::User).await.unwrap();
        assert_eq!(
            refusal(change_role(&f.db, &by, cy, Role::User).await),
            Refusal::LastAdmin
        );
        // Promoting needs no other admin.
        change_role(&f.db, &by, ada, Role::Admin).await.unwrap();
    }

    #[tokio::test]
    async fn an_admin_cannot_ban_demote_or_delete_themselves() {
        let f = fixture();
        let ada = f.account("ada@example.com", Role::Admin).await;
        f.account("ben@example.com", Role::Admin).await;
        let by = admin(ada);
        assert_eq!(
            refusal(ban(&f.db, &by, ada, "oops".into()).await),
            Refusal::Yourself("ban")
        );
        assert_eq!(
            refusal(change_role(&f.db, &by, ada, Role::User).await),
            Refusal::Yourself("change the role of")
        );
        assert_eq!(
            refusal(delete(&f.db, &by, ada).await),
            Refusal::Yourself("delete")
        );
    }

    #[tokio::test]
    async fn an_admin_who_was_demoted_or_banned_meanwhile_changes_nothing() {
        let f = fixture();
        let ada = f.account("ada@example.com", Role::Admin).await;
        let ben = f.account("ben@example.com", Role::Admin).await;
        f.account("cy@example.com", Role::Admin).await;
        let bob = f.account("bob@example.com", Role::User).await;
        change_role(&f.db, &Actor::Cli, ada, Role::User)
            .await
            .unwrap();
        assert_eq!(
            refusal(ban(&f.db, &admin(ada), bob, "x".into()).await),
            Refusal::NoLongerAdmin
        );
        ban(&f.db, &Actor::Cli, ben, "x".into()).await.unwrap();
        assert_eq!(
            refusal(delete(&f.db, &admin(ben), bob).await),
            Refusal::NoLongerAdmin
        );
        assert!(f.user(bob).await.is_some_and(|u| !u.is_banned()));
        let made = NewAccount {
            name: DisplayName::parse("Eve").unwrap(),
            email: Email::parse("eve@example.com").unwrap(),
            role: Role::Admin,
            password: password(),
            one_time: false,
        };
        assert!(matches!(
            create(&f.db, &admin(ben), made).await,
            Err(AccountError::Refused(Refusal::NoLongerAdmin))
        ));
    }

    #[tokio::test]
    async fn a_deleted_account_keeps_its_email_in_the_audit_log() {
        let f = fixture();
        let ada = f.account("ada@example.com", Role::Admin).await;
        let bob = f.account("bob@example.com", Role::User).await;
        assert!(matches!(
            delete(&f.db, &admin(ada), 999).await,
            Err(AccountError::NotFound)
        ));
        delete(&f.db, &admin(ada), bob).await.unwrap();
        assert_eq!(f.user(bob).await, None);
        assert_eq!(f.credentials(bob).await, (0, 0));
        assert_eq!(
            f.audit().await,
            [(
                "user_deleted".to_string(),
                None,
                Some("bob@example.com".to_string()),
                format!("user bob@example.com (by admin #{ada})")
            )]
        );
    }

    #[tokio::test]
    async fn a_role_change_is_recorded_from_and_to() {
        let f = fixture();
        let bob = f.account("bob@example.com", Role::User).await;
        let before = change_role(&f.db, &Actor::Cli, bob, Role::Admin)
            .await
            .unwrap();
        assert_eq!(before.role, Role::User);
        assert!(f.user(bob).await.unwrap().is_admin());
        assert_eq!(f.audit().await[0].3, "user -> admin");
    }

    #[tokio::test]
    async fn emails_are_taken_once_and_setup_makes_one_first_admin() {
        let f = fixture();
        let new = |email: &str| NewAccount {
            name: DisplayName::parse("Ada").unwrap(),
            email: Email::parse(email).unwrap(),
            role: Role::User,
            password: password(),
            one_time: false,
        };
        let first = || {
            create_first_admin(
                &f.db,
                DisplayName::parse("Ada").unwrap(),
                Email::parse("ada@example.com").unwrap(),
                password(),
            )
        };
        assert!(first().await.unwrap());
        assert!(!first().await.unwrap(), "an account exists now");
        create(&f.db, &Actor::Cli, new("bob@example.com"))
            .await
            .unwrap();
        assert!(matches!(
            create(&f.db, &Actor::Cli, new("BOB@example.com")).await,
            Err(AccountError::EmailTaken)
        ));
        let details: Vec<String> = f.audit().await.into_iter().map(|(.., d)| d).collect();
        assert_eq!(
            details,
            [
                "first admin, created through /setup",
                "role user, created from the command line"
            ]
        );
    }
}
