//! Every change to a vhost, applied together with its changelog entry in one transaction,
//! so the history can never disagree with the data. The deploy pipeline opens the
//! transaction; these functions take the connection it runs on. Creating, renaming or re-owning a site is
//! judged by [`crate::claims`] in that same transaction (delegated names, ports, overlap).

use crate::claims::{self, Claim};
use crate::db::DbError;
use crate::db::changelog::{self, Action, Author};
use crate::db::vhosts::{self, Snapshot, Vhost, WriteError};
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
    /// The address is not the author's to take: outside their grants, a port they may not
    /// use, or over another owner's site.
    #[error("{}", .0.reason)]
    Claim(claims::Refusal),
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

/// Refuses a change to site `id` unless `only` (a `user`'s id; None for an admin, who may
/// change any site) owns it *now*. Called inside the change's transaction, because the
/// request's own ownership check ran before it: an admin may have reassigned the site in
/// between, and a user's change must then not take it back or delete someone else's site.
/// Someone else's site is not found, as everywhere else.
pub(crate) fn ensure_owned(
    conn: &Connection,
    id: i64,
    only: Option<i64>,
) -> Result<(), ChangeError> {
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
    claim: &Claim,
) -> Result<Vhost, ChangeError> {
    claims::check(conn, claim, author, None, None, new)?;
    let id = vhosts::insert(conn, new)?;
    changelog::record(conn, author, Action::Create, id, None, Some(new))?;
    reload(conn, id)
}

pub(crate) fn update(
    conn: &Connection,
    author: &Author<'_>,
    id: i64,
    new: &Snapshot,
    claim: &Claim,
) -> Result<Vhost, ChangeError> {
    let old = reload(conn, id)?.snapshot();
    claims::check(conn, claim, author, Some(id), Some(&old), new)?;
    if !vhosts::update(conn, id, new)? {
        return Err(ChangeError::NotFound);
    }
    changelog::record(conn, author, Action::Update, id, Some(&old), Some(new))?;
    reload(conn, id)
}

/// Flips enabled/disabled; returns the vhost as it now is.
pub(crate) fn toggle(
    conn: &Connection,
    author: &Author<'_>,
    id: i64,
) -> Result<Vhost, ChangeError> {
    let old = reload(conn, id)?.snapshot();
    vhosts::set_enabled(conn, id, !old.enabled)?;
    let new = Snapshot {
        enabled: !old.enabled,
        ..old.clone()
    };
    changelog::record(conn, author, Action::Toggle, id, Some(&old), Some(&new))?;
    reload(conn, id)
}

pub(crate) fn delete(
    conn: &Connection,
    author: &Author<'_>,
    id: i64,
) -> Result<Snapshot, ChangeError> {
    let old = reload(conn, id)?.snapshot();
    vhosts::delete(conn, id)?;
    changelog::record(conn, author, Action::Delete, id, Some(&old), None)?;
    Ok(old)
}

/// Puts a vhost back the way it was before changelog entry `entry_id`, as a new change.
/// Returns the vhost as it now is (None when reverting a create removed it).
pub(crate) fn revert(
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
        // Undo an update or toggle: the earlier state comes back, unless its name now
        // overlaps another owner's site.
        (Some(before), Some(now)) => {
            let old = now.snapshot();
            claims::check(
                conn,
                &Claim::ADMIN,
                author,
                Some(now.id),
                Some(&old),
                &before,
            )?;
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
            claims::check(conn, &Claim::ADMIN, author, None, None, &before)?;
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
            labels: Vec::new(),
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
            let v = create(c, &ME, &bobs, &Claim::ADMIN).unwrap();
            assert!(ensure_owned(c, v.id, Some(2)).is_ok(), "bob's own site");
            // The request checked bob owns it; then an admin gave it to carol.
            let carols = Snapshot {
                owner_id: Some(3),
                ..bobs.clone()
            };
            update(c, &ME, v.id, &carols, &Claim::ADMIN).unwrap();
            let bob = Author {
                user_id: 2,
                email: "b@x.io",
            };
            // What bob's toggle, update and delete run inside their transactions.
            let toggled = ensure_owned(c, v.id, Some(2)).and_then(|()| toggle(c, &bob, v.id));
            assert!(matches!(toggled, Err(ChangeError::NotFound)));
            let taken = ensure_owned(c, v.id, Some(2))
                .and_then(|()| update(c, &bob, v.id, &bobs, &Claim::ADMIN));
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
            let v = create(c, &ME, &snapshot("a.example", true), &Claim::ADMIN).unwrap();
            let v = toggle(c, &ME, v.id).unwrap();
            assert!(!v.enabled);
            update(c, &ME, v.id, &snapshot("b.example", false), &Claim::ADMIN).unwrap();
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
            let v = create(c, &ME, &snapshot("a.example", true), &Claim::ADMIN).unwrap();
            update(c, &ME, v.id, &snapshot("a.example", false), &Claim::ADMIN).unwrap();
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
            create(c, &ME, &snapshot("a.example", true), &Claim::ADMIN).unwrap();
            let tx = c.transaction().unwrap();
            assert!(matches!(
                create(&tx, &ME, &snapshot("a.example", true), &Claim::ADMIN),
                Err(ChangeError::DomainTaken)
            ));
            drop(tx);
            assert_eq!(changelog::count(c).unwrap(), 1);
        });
    }

    fn add_user(c: &Connection, id: i64, email: &str) {
        c.execute(
            "INSERT INTO users (id, name, email, password_hash, role) VALUES (?1, 'U', ?2, 'h', 'user')",
            rusqlite::params![id, email],
        )
        .unwrap();
    }

    fn owned(domain: &str, owner: Option<i64>) -> Snapshot {
        Snapshot {
            owner_id: owner,
            ..snapshot(domain, true)
        }
    }

    fn user_claim(id: i64) -> Claim {
        Claim::User {
            user_id: id,
            ports: vec![80, 443],
        }
    }

    fn refusal(result: Result<Vhost, ChangeError>) -> claims::Refusal {
        match result {
            Err(ChangeError::Claim(r)) => r,
            other => panic!("expected a claim refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_site_over_another_owners_site_is_refused_for_both_roles_and_nothing_is_recorded() {
        with_db(|c| {
            add_user(c, 2, "bob@x.io");
            add_user(c, 3, "alice@x.io");
            crate::db::grants::insert(c, 3, "*.example.com", Some(1)).unwrap();
            create(c, &ME, &owned("bob.example.com", Some(2)), &Claim::ADMIN).unwrap();
            let alice = Author {
                user_id: 3,
                email: "alice@x.io",
            };
            for domain in [
                "http://bob.example.com",
                "bob.example.com:443",
                "bob.example.com:80",
                "*.example.com",
            ] {
                let r = refusal(create(c, &alice, &owned(domain, Some(3)), &user_claim(3)));
                assert!(r.reason.contains("someone else"), "{domain}: {r:?}");
                assert_eq!(r.warning, None, "a user is never offered the override");
                // The admin is refused too, with the site and owner named and a warning.
                let r = refusal(create(c, &ME, &owned(domain, Some(1)), &Claim::ADMIN));
                assert!(
                    r.reason.contains("bob.example.com (owner: bob@x.io)"),
                    "{r:?}"
                );
                assert!(r.warning.is_some());
            }
            // The same owner may overlap their own site.
            create(
                c,
                &ME,
                &owned("http://bob.example.com", Some(2)),
                &Claim::ADMIN,
            )
            .unwrap();
            assert_eq!(changelog::count(c).unwrap(), 2);
            // Knowingly, an admin may; the override is audited.
            let over = Claim::Admin {
                allow_overlap: true,
            };
            create(c, &ME, &owned("*.example.com", Some(1)), &over).unwrap();
            let audited: i64 = c
                .query_row(
                    "SELECT count(*) FROM audit_log WHERE action = 'overlap_allowed' AND detail LIKE '*.example.com overlaps bob.example.com%'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(audited, 1);
        });
    }

    #[test]
    fn a_name_under_another_owners_wildcard_is_refused_but_a_deeper_one_is_not() {
        with_db(|c| {
            add_user(c, 2, "bob@x.io");
            add_user(c, 3, "alice@x.io");
            crate::db::grants::insert(c, 3, "*.example.com", Some(1)).unwrap();
            create(c, &ME, &owned("*.example.com", Some(2)), &Claim::ADMIN).unwrap();
            let alice = Author {
                user_id: 3,
                email: "alice@x.io",
            };
            refusal(create(
                c,
                &alice,
                &owned("a.example.com", Some(3)),
                &user_claim(3),
            ));
            // Caddy's *.example.com matches one label only.
            create(
                c,
                &alice,
                &owned("a.b.example.com", Some(3)),
                &user_claim(3),
            )
            .unwrap();
        });
    }

    #[test]
    fn a_user_claims_only_names_inside_their_grants_and_keeps_what_they_were_given() {
        with_db(|c| {
            add_user(c, 3, "alice@x.io");
            let alice = Author {
                user_id: 3,
                email: "alice@x.io",
            };
            let r = refusal(create(
                c,
                &alice,
                &owned("a.example.com", Some(3)),
                &user_claim(3),
            ));
            assert!(r.reason.contains("No names have been delegated"), "{r:?}");
            crate::db::grants::insert(c, 3, "*.team.example.com", Some(1)).unwrap();
            crate::db::grants::insert(c, 3, "app.example.com", Some(1)).unwrap();
            for ok in [
                "app.example.com",
                "a.team.example.com",
                "x.y.team.example.com",
                "*.team.example.com",
            ] {
                create(c, &alice, &owned(ok, Some(3)), &user_claim(3)).unwrap();
            }
            for outside in [
                "team.example.com",
                "www.app.example.com",
                "evilteam.example.com",
            ] {
                let r = refusal(create(c, &alice, &owned(outside, Some(3)), &user_claim(3)));
                assert!(
                    r.reason.contains("*.team.example.com, app.example.com"),
                    "{r:?}"
                );
            }
            let r = refusal(create(
                c,
                &alice,
                &owned("http://b.team.example.com:2019", Some(3)),
                &user_claim(3),
            ));
            assert!(r.reason.contains("ports 80, 443"), "{r:?}");
            // An admin gave her a name outside her grants: she edits it, but cannot rename
            // it outside.
            let given =
                create(c, &ME, &owned("legacy.example.org", Some(3)), &Claim::ADMIN).unwrap();
            let edited = Snapshot {
                config: "respond edited".into(),
                ..owned("legacy.example.org", Some(3))
            };
            update(c, &alice, given.id, &edited, &user_claim(3)).unwrap();
            refusal(update(
                c,
                &alice,
                given.id,
                &owned("other.example.org", Some(3)),
                &user_claim(3),
            ));
            update(
                c,
                &alice,
                given.id,
                &owned("c.team.example.com", Some(3)),
                &user_claim(3),
            )
            .unwrap();
        });
    }

    #[test]
    fn a_site_nobody_owns_is_apart_from_every_user_but_not_from_another_ownerless_site() {
        with_db(|c| {
            add_user(c, 3, "alice@x.io");
            crate::db::grants::insert(c, 3, "*.example.com", Some(1)).unwrap();
            create(c, &ME, &owned("*.example.com", None), &Claim::ADMIN).unwrap();
            let alice = Author {
                user_id: 3,
                email: "alice@x.io",
            };
            let r = refusal(create(
                c,
                &alice,
                &owned("a.example.com", Some(3)),
                &user_claim(3),
            ));
            assert!(r.reason.contains("someone else"));
            let r = refusal(create(
                c,
                &ME,
                &owned("b.example.com", Some(1)),
                &Claim::ADMIN,
            ));
            assert!(r.reason.contains("(owner: nobody)"), "{r:?}");
            // Only admins see either's logs: two ownerless sites may overlap.
            let v = create(c, &ME, &owned("c.example.com", None), &Claim::ADMIN).unwrap();
            // Giving one to someone is a new claim, judged again.
            let r = refusal(update(
                c,
                &ME,
                v.id,
                &owned("c.example.com", Some(3)),
                &Claim::ADMIN,
            ));
            assert!(r.warning.is_some());
        });
    }

    #[test]
    fn reverting_into_another_owners_name_is_refused() {
        with_db(|c| {
            add_user(c, 2, "bob@x.io");
            let v = create(c, &ME, &owned("a.example.com", Some(1)), &Claim::ADMIN).unwrap();
            // Keeps SQLite from giving the deleted site's id to the next one.
            create(c, &ME, &owned("z.example.org", Some(1)), &Claim::ADMIN).unwrap();
            delete(c, &ME, v.id).unwrap();
            create(c, &ME, &owned("*.example.com", Some(2)), &Claim::ADMIN).unwrap();
            let entries = changelog::list(
                c,
                &changelog::Filter {
                    limit: 10,
                    ..Default::default()
                },
            )
            .unwrap();
            let deletion = entries.iter().find(|e| e.action == "delete").unwrap().id;
            assert!(matches!(
                revert(c, &ME, deletion),
                Err(ChangeError::Claim(_))
            ));
        });
    }

    /// Two owners race for overlapping names on two connections, each in an IMMEDIATE
    /// transaction as the deploy pipeline opens them: the check runs inside the transaction, so the
    /// second sees the first's site and exactly one of them wins.
    #[test]
    fn racing_claims_on_overlapping_names_let_exactly_one_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gh.db");
        drop(Db::open_and_migrate(&path).unwrap());
        {
            let c = Connection::open(&path).unwrap();
            c.execute("INSERT INTO users (id, name, email, password_hash, role) VALUES (1, 'A', 'a@x.io', 'h', 'admin')", []).unwrap();
            add_user(&c, 2, "bob@x.io");
            add_user(&c, 3, "alice@x.io");
            crate::db::grants::insert(&c, 2, "*.example.com", Some(1)).unwrap();
            crate::db::grants::insert(&c, 3, "*.example.com", Some(1)).unwrap();
        }
        for round in 0..8 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let racers = [
                (2, "bob@x.io", format!("*.r{round}.example.com")),
                (3, "alice@x.io", format!("a.r{round}.example.com")),
            ];
            let handles: Vec<_> = racers
                .into_iter()
                .map(|(id, email, domain)| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut c = Connection::open(&path).unwrap();
                        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
                        barrier.wait();
                        let tx = c
                            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                            .unwrap();
                        let author = Author { user_id: id, email };
                        let result =
                            create(&tx, &author, &owned(&domain, Some(id)), &user_claim(id));
                        if result.is_ok() {
                            tx.commit().unwrap();
                        }
                        result.is_ok()
                    })
                })
                .collect();
            let won: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(
                won.iter().filter(|w| **w).count(),
                1,
                "round {round}: {won:?}"
            );
        }
        let c = Connection::open(&path).unwrap();
        assert_eq!(changelog::count(&c).unwrap(), 8);
    }
}
