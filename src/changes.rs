//! Every change to a vhost, applied together with its changelog entry in one transaction,
//! so the history can never disagree with the data. Callers open the transaction; these
//! functions take the connection it runs on.

use crate::db::changelog::{self, Action, Author};
use crate::db::users::User;
use crate::db::vhosts::{self, Snapshot, Vhost, WriteError};
use crate::db::{Db, DbError};
use rusqlite::Connection;

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("another site already uses this domain")]
    DomainTaken,
    #[error("no such site")]
    NotFound,
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<WriteError> for ChangeError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::DomainTaken => ChangeError::DomainTaken,
            WriteError::Db(e) => ChangeError::Db(e),
        }
    }
}

impl From<rusqlite::Error> for ChangeError {
    fn from(e: rusqlite::Error) -> Self {
        ChangeError::Db(e.into())
    }
}

/// Runs one change for `user` in an IMMEDIATE transaction (so concurrent changes queue
/// rather than interleave) and commits it only when the change succeeds. The outer error is
/// the database failing; the inner one is the change being refused.
pub async fn apply<T, F>(db: &Db, user: &User, change: F) -> Result<Result<T, ChangeError>, DbError>
where
    F: FnOnce(&Connection, &Author<'_>) -> Result<T, ChangeError> + Send + 'static,
    T: Send + 'static,
{
    let (user_id, email) = (user.id, user.email.clone());
    db.run(move |c| {
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let result = change(
            &tx,
            &Author {
                user_id,
                email: &email,
            },
        );
        if result.is_ok() {
            tx.commit()?;
        }
        Ok(result)
    })
    .await
}

/// Refuses a change to site `id` unless `only` (a `user`'s id; None for an admin, who may
/// change any site) owns it *now*. Called inside the change's transaction, because the
/// request's own ownership check ran before it: an admin may have reassigned the site in
/// between, and a user's change must then not take it back or delete someone else's site.
/// Someone else's site is not found, as everywhere else.
pub fn ensure_owned(conn: &Connection, id: i64, only: Option<i64>) -> Result<(), ChangeError> {
    let site = reload(conn, id)?;
    match only {
        Some(user) if site.owner_id != Some(user) => Err(ChangeError::NotFound),
        _ => Ok(()),
    }
}

fn reload(conn: &Connection, id: i64) -> Result<Vhost, ChangeError> {
    vhosts::find(conn, id)?.ok_or(ChangeError::NotFound)
}

pub fn create(
    conn: &Connection,
    author: &Author<'_>,
    new: &Snapshot,
) -> Result<Vhost, ChangeError> {
    let id = vhosts::insert(conn, new)?;
    changelog::record(conn, author, Action::Create, id, None, Some(new))?;
    reload(conn, id)
}

pub fn update(
    conn: &Connection,
    author: &Author<'_>,
    id: i64,
    new: &Snapshot,
) -> Result<Vhost, ChangeError> {
    let old = reload(conn, id)?.snapshot();
    if !vhosts::update(conn, id, new)? {
        return Err(ChangeError::NotFound);
    }
    changelog::record(conn, author, Action::Update, id, Some(&old), Some(new))?;
    reload(conn, id)
}

/// Flips enabled/disabled; returns the vhost as it now is.
pub fn toggle(conn: &Connection, author: &Author<'_>, id: i64) -> Result<Vhost, ChangeError> {
    let old = reload(conn, id)?.snapshot();
    vhosts::set_enabled(conn, id, !old.enabled)?;
    let new = Snapshot {
        enabled: !old.enabled,
        ..old.clone()
    };
    changelog::record(conn, author, Action::Toggle, id, Some(&old), Some(&new))?;
    reload(conn, id)
}

pub fn delete(conn: &Connection, author: &Author<'_>, id: i64) -> Result<Snapshot, ChangeError> {
    let old = reload(conn, id)?.snapshot();
    vhosts::delete(conn, id)?;
    changelog::record(conn, author, Action::Delete, id, Some(&old), None)?;
    Ok(old)
}

/// Puts a vhost back the way it was before changelog entry `entry_id`, as a new change.
/// Returns the vhost as it now is (None when reverting a create removed it).
pub fn revert(
    conn: &Connection,
    author: &Author<'_>,
    entry_id: i64,
) -> Result<Option<Vhost>, ChangeError> {
    let entry = changelog::find(conn, entry_id)?.ok_or(ChangeError::NotFound)?;
    let current = match entry.vhost_id {
        Some(id) => vhosts::find(conn, id)?,
        None => None,
    }
    .or(vhosts::find_by_domain(conn, &entry.domain)?);
    match (entry.old, current) {
        // Undo a create: the site goes away.
        (None, Some(now)) => {
            vhosts::delete(conn, now.id)?;
            changelog::record(
                conn,
                author,
                Action::Revert,
                now.id,
                Some(&now.snapshot()),
                None,
            )?;
            Ok(None)
        }
        (None, None) => Err(ChangeError::Refused("That site is already gone.".into())),
        // Undo an update or toggle: the earlier state comes back.
        (Some(before), Some(now)) => {
            vhosts::update(conn, now.id, &before)?;
            changelog::record(
                conn,
                author,
                Action::Revert,
                now.id,
                Some(&now.snapshot()),
                Some(&before),
            )?;
            Ok(Some(reload(conn, now.id)?))
        }
        // Undo a delete: the site is created again.
        (Some(before), None) => {
            let id = vhosts::insert(conn, &before)?;
            changelog::record(conn, author, Action::Revert, id, None, Some(&before))?;
            Ok(Some(reload(conn, id)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;

    fn snapshot(domain: &str, enabled: bool) -> Snapshot {
        Snapshot {
            domain: domain.into(),
            template: "raw".into(),
            params: "{}".into(),
            config: "respond ok".into(),
            enabled,
            owner_id: None,
            all_agents: true,
            agent_ids: Vec::new(),
        }
    }

    fn with_db<T>(f: impl FnOnce(&mut Connection) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_and_migrate(&dir.path().join("gh.db")).unwrap();
        let pool_conn = rusqlite::Connection::open(dir.path().join("gh.db")).unwrap();
        drop(db);
        let mut conn = pool_conn;
        conn.execute("INSERT INTO users (id, name, email, password_hash, role) VALUES (1, 'A', 'a@x.io', 'h', 'admin')", []).unwrap();
        f(&mut conn)
    }

    const ME: Author<'static> = Author {
        user_id: 1,
        email: "a@x.io",
    };

    #[test]
    fn a_change_is_refused_when_the_site_was_reassigned_since_the_request_checked() {
        with_db(|c| {
            for (id, email) in [(2, "b@x.io"), (3, "c@x.io")] {
                c.execute(
                    "INSERT INTO users (id, name, email, password_hash, role) VALUES (?1, 'U', ?2, 'h', 'user')",
                    rusqlite::params![id, email],
                )
                .unwrap();
            }
            let bobs = Snapshot {
                owner_id: Some(2),
                ..snapshot("a.example", true)
            };
            let v = create(c, &ME, &bobs).unwrap();
            assert!(ensure_owned(c, v.id, Some(2)).is_ok(), "bob's own site");
            // The request checked bob owns it; then an admin gave it to carol.
            let carols = Snapshot {
                owner_id: Some(3),
                ..bobs.clone()
            };
            update(c, &ME, v.id, &carols).unwrap();
            let bob = Author {
                user_id: 2,
                email: "b@x.io",
            };
            // What bob's toggle, update and delete run inside their transactions.
            let toggled = ensure_owned(c, v.id, Some(2)).and_then(|()| toggle(c, &bob, v.id));
            assert!(matches!(toggled, Err(ChangeError::NotFound)));
            let taken = ensure_owned(c, v.id, Some(2)).and_then(|()| update(c, &bob, v.id, &bobs));
            assert!(matches!(taken, Err(ChangeError::NotFound)));
            let deleted = ensure_owned(c, v.id, Some(2)).and_then(|()| delete(c, &bob, v.id));
            assert!(matches!(deleted, Err(ChangeError::NotFound)));
            let now = vhosts::find(c, v.id).unwrap().unwrap();
            assert_eq!((now.owner_id, now.enabled), (Some(3), true), "untouched");
            assert!(ensure_owned(c, v.id, Some(3)).is_ok());
            assert!(
                ensure_owned(c, v.id, None).is_ok(),
                "an admin may change any"
            );
            assert!(matches!(
                ensure_owned(c, 999, None),
                Err(ChangeError::NotFound)
            ));
        });
    }

    #[test]
    fn every_change_is_in_the_changelog_with_old_and_new() {
        with_db(|c| {
            let v = create(c, &ME, &snapshot("a.example", true)).unwrap();
            let v = toggle(c, &ME, v.id).unwrap();
            assert!(!v.enabled);
            update(c, &ME, v.id, &snapshot("b.example", false)).unwrap();
            delete(c, &ME, v.id).unwrap();
            let log = changelog::list(
                c,
                &changelog::Filter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
            let actions: Vec<_> = log.iter().map(|e| e.action.as_str()).collect();
            assert_eq!(actions, ["delete", "update", "toggle", "create"]);
            assert_eq!(log[0].new, None);
            assert_eq!(log[0].old.as_ref().unwrap().domain, "b.example");
            assert!(log[2].old.as_ref().unwrap().enabled);
            assert!(!log[2].new.as_ref().unwrap().enabled);
            assert_eq!(log[3].old, None);
        });
    }

    #[test]
    fn reverting_restores_the_earlier_state_as_a_new_change() {
        with_db(|c| {
            let v = create(c, &ME, &snapshot("a.example", true)).unwrap();
            update(c, &ME, v.id, &snapshot("a.example", false)).unwrap();
            let update_entry = changelog::list(
                c,
                &changelog::Filter {
                    limit: 1,
                    ..Default::default()
                },
            )
            .unwrap()[0]
                .id;
            let back = revert(c, &ME, update_entry).unwrap().unwrap();
            assert!(back.enabled);
            let deleted = delete(c, &ME, v.id).unwrap();
            let delete_entry = changelog::list(
                c,
                &changelog::Filter {
                    limit: 1,
                    ..Default::default()
                },
            )
            .unwrap()[0]
                .id;
            let again = revert(c, &ME, delete_entry).unwrap().unwrap();
            assert_eq!(again.domain, deleted.domain);
            let create_entry = changelog::list(
                c,
                &changelog::Filter {
                    limit: 1,
                    ..Default::default()
                },
            )
            .unwrap()[0]
                .id;
            assert!(
                revert(c, &ME, create_entry).unwrap().is_none(),
                "undoing a (re)create removes it"
            );
            assert_eq!(changelog::count(c).unwrap(), 6);
        });
    }

    #[test]
    fn a_taken_domain_is_refused_and_nothing_is_recorded() {
        with_db(|c| {
            create(c, &ME, &snapshot("a.example", true)).unwrap();
            let tx = c.transaction().unwrap();
            assert!(matches!(
                create(&tx, &ME, &snapshot("a.example", true)),
                Err(ChangeError::DomainTaken)
            ));
            drop(tx);
            assert_eq!(changelog::count(c).unwrap(), 1);
        });
    }
}
