//! The `agents` table: where each agent is, its token, and what it last reported.

use super::{DbError, now};
use crate::domain::Secret;
use crate::domain::tls::TlsSettings;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// An agent as the hub knows it. The token stays a [`Secret`].
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub id: i64,
    pub name: String,
    pub(crate) url: String,
    pub(crate) token: Secret,
    pub(crate) from_config: bool,
    pub online: bool,
    pub(crate) caddy_reachable: bool,
    pub(crate) caddy_version: Option<String>,
    pub caddy_admin: Option<String>,
    pub(crate) access_log: Option<String>,
    pub(crate) applied_hash: Option<String>,
    pub(crate) last_seen_at: Option<i64>,
    pub(crate) last_error: Option<String>,
    /// CA certificates (PEM) that alone may sign the agent's certificate over https.
    pub tls_ca: Option<String>,
    /// SHA-256 of the agent's certificate (lowercase hex); when set, the only one accepted.
    pub tls_pin: Option<String>,
    /// When the agent first reported that its Caddy runs a config loaded outside Gatehouse,
    /// in the episode still open; `None` once a push has put the database's config back.
    pub(crate) changed_outside_at: Option<i64>,
    /// The sites set aside on this agent because its Caddy refuses them: its Caddyfile is
    /// rendered without them (see [`crate::fleet::quarantine`]).
    pub(crate) quarantined: Vec<i64>,
    /// Its labels (`canary`, `eu`, …), sorted: sites can be served by label, and a rollout
    /// policy stages changes by them.
    pub labels: Vec<String>,
}

#[cfg(test)]
impl Agent {
    /// An agent as a unit test needs one: never contacted, no labels.
    pub(crate) fn test(id: i64) -> Self {
        Self {
            id,
            name: format!("edge-{id}"),
            url: format!("http://127.0.0.1:{}", 7000 + id),
            token: Secret::new("a-token-for-unit-tests"),
            from_config: false,
            online: false,
            caddy_reachable: false,
            caddy_version: None,
            caddy_admin: None,
            access_log: None,
            applied_hash: None,
            last_seen_at: None,
            last_error: None,
            tls_ca: None,
            tls_pin: None,
            changed_outside_at: None,
            labels: Vec::new(),
            quarantined: Vec::new(),
        }
    }
}

/// The token column is sealed (see [`crate::secrets`]): it is opened as it is read.
const COLUMNS: &str = "id, name, url, gh_open('agents.token', id, token), from_config, online,
    caddy_reachable, caddy_version, caddy_admin, access_log, applied_hash, last_seen_at,
    last_error, tls_ca, tls_pin, changed_outside_at, labels,
    (SELECT group_concat(vhost_id) FROM quarantine q WHERE q.agent_id = agents.id)";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
    Ok(Agent {
        id: r.get(0)?,
        name: r.get(1)?,
        url: r.get(2)?,
        token: Secret::new(r.get::<_, String>(3)?),
        from_config: r.get(4)?,
        online: r.get(5)?,
        caddy_reachable: r.get(6)?,
        caddy_version: r.get(7)?,
        caddy_admin: r.get(8)?,
        access_log: r.get(9)?,
        applied_hash: r.get(10)?,
        last_seen_at: r.get(11)?,
        last_error: r.get(12)?,
        tls_ca: r.get(13)?,
        tls_pin: r.get(14)?,
        changed_outside_at: r.get(15)?,
        quarantined: r
            .get::<_, Option<String>>(17)?
            .unwrap_or_default()
            .split(',')
            .filter_map(|id| id.parse().ok())
            .collect(),
        labels: crate::domain::labels::stored(&r.get::<_, String>(16)?),
    })
}

pub fn list(conn: &Connection) -> Result<Vec<Agent>, DbError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM agents ORDER BY name"))?;
    let rows = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn find(conn: &Connection, id: i64) -> Result<Option<Agent>, DbError> {
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM agents WHERE id = ?1"),
            [id],
            from_row,
        )
        .optional()?)
}

/// A write that hit the unique name.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("another agent already has this name")]
    NameTaken,
    #[error(transparent)]
    Db(#[from] DbError),
}

fn map_unique(e: rusqlite::Error) -> WriteError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            WriteError::NameTaken
        }
        e => WriteError::Db(e.into()),
    }
}

pub fn insert(
    conn: &Connection,
    name: &str,
    url: &str,
    token: &Secret,
    from_config: bool,
    tls: &TlsSettings,
) -> Result<i64, WriteError> {
    conn.execute(
        INSERT,
        params![
            name,
            url,
            token.expose(),
            from_config,
            tls.ca_pem(),
            tls.pin_hex()
        ],
    )
    .map_err(map_unique)?;
    Ok(conn.last_insert_rowid())
}

/// The token is sealed for the row it goes into, so the new id is chosen in the same
/// statement (as SQLite would: one past the largest).
const INSERT: &str = "WITH next(id) AS (SELECT coalesce(max(id), 0) + 1 FROM agents)
    INSERT INTO agents (id, name, url, token, from_config, tls_ca, tls_pin)
    SELECT next.id, ?1, ?2, gh_seal('agents.token', next.id, ?3), ?4, ?5, ?6 FROM next";

/// Changes name, URL and how the agent is trusted, and the token when one is given (an
/// empty one keeps the old).
/// A new URL is a new machine: what the old one reported (above all its Caddy's admin address,
/// which every push must carry) is forgotten until the new one has been asked.
pub(crate) fn update(
    conn: &Connection,
    id: i64,
    name: &str,
    url: &str,
    token: Option<&Secret>,
    tls: &TlsSettings,
) -> Result<bool, WriteError> {
    let n = conn
        .execute(
            "UPDATE agents SET name = ?2, url = ?3,
                    token = coalesce(gh_seal('agents.token', id, ?4), token), updated_at = ?5,
                    applied_hash = CASE WHEN url = ?3 THEN applied_hash END,
                    caddy_admin = CASE WHEN url = ?3 THEN caddy_admin END,
                    access_log = CASE WHEN url = ?3 THEN access_log END,
                    online = CASE WHEN url = ?3 THEN online ELSE 0 END,
                    changed_outside_at = CASE WHEN url = ?3 THEN changed_outside_at END,
                    tls_ca = ?6, tls_pin = ?7
             WHERE id = ?1",
            params![
                id,
                name,
                url,
                token.map(Secret::expose),
                now(),
                tls.ca_pem(),
                tls.pin_hex()
            ],
        )
        .map_err(map_unique)?;
    Ok(n == 1)
}

pub(crate) fn delete(conn: &Connection, id: i64) -> Result<bool, DbError> {
    Ok(conn.execute("DELETE FROM agents WHERE id = ?1", [id])? == 1)
}

/// Replaces an agent's labels (already checked by [`crate::domain::labels::parse`]); false
/// when it no longer exists. Labels are the portal's own, also on agents from the config file.
pub fn set_labels(conn: &Connection, id: i64, labels: &[String]) -> Result<bool, DbError> {
    let n = conn.execute(
        "UPDATE agents SET labels = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, crate::domain::labels::join(labels), now()],
    )?;
    Ok(n == 1)
}

/// What `/health` said, or that the agent could not be reached.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) online: bool,
    pub(crate) caddy_reachable: bool,
    pub(crate) caddy_version: Option<String>,
    pub(crate) caddy_admin: Option<String>,
    pub(crate) access_log: Option<String>,
    pub(crate) applied_hash: Option<String>,
    pub(crate) running: RunningState,
    pub(crate) error: Option<String>,
}

/// Whether the agent's Caddy runs what the agent loaded, as the agent compared it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum RunningState {
    /// The agent cannot tell (nothing loaded since it or Caddy started, Caddy unreadable).
    #[default]
    Unknown,
    Matches,
    /// Someone loaded a config into Caddy without Gatehouse; `why` says what was seen.
    ChangedOutside {
        why: String,
    },
}

/// Stores what `/health` said. Returns true when this report opens an episode of a config
/// changed outside Gatehouse (the first such report since the last push or "matches"), so
/// the caller audits each episode once, however many reports repeat it.
pub(crate) fn record_report(conn: &Connection, id: i64, r: &Report) -> Result<bool, DbError> {
    if !r.online {
        conn.execute(
            "UPDATE agents SET online = 0, caddy_reachable = 0, last_error = ?2 WHERE id = ?1",
            params![id, r.error],
        )?;
        return Ok(false);
    }
    // `unknown` neither opens nor closes an episode: only a push or a "matches" ends one.
    let (outside, matches) = match r.running {
        RunningState::ChangedOutside { .. } => (true, false),
        RunningState::Matches => (false, true),
        RunningState::Unknown => (false, false),
    };
    // `Some(None)`: the agent exists and no episode is open.
    let before: Option<Option<i64>> = conn
        .query_row(
            "SELECT changed_outside_at FROM agents WHERE id = ?1",
            [id],
            |row| row.get(0),
        )
        .optional()?;
    conn.execute(
        "UPDATE agents SET online = 1, caddy_reachable = ?2, caddy_version = coalesce(?3, caddy_version),
                caddy_admin = coalesce(?4, caddy_admin), access_log = coalesce(?5, access_log),
                applied_hash = ?6, last_seen_at = ?7, last_error = ?8,
                changed_outside_at = CASE WHEN ?9 THEN coalesce(changed_outside_at, ?7)
                                          WHEN ?10 THEN NULL
                                          ELSE changed_outside_at END
         WHERE id = ?1",
        params![id, r.caddy_reachable, r.caddy_version, r.caddy_admin, r.access_log, r.applied_hash, now(), r.error, outside, matches],
    )?;
    Ok(outside && before == Some(None))
}

/// After a push: what the agent now runs, or why it does not.
pub(crate) fn record_push(
    conn: &Connection,
    id: i64,
    applied_hash: Option<&str>,
    error: Option<&str>,
) -> Result<(), DbError> {
    match applied_hash {
        Some(hash) => conn.execute(
            // Whatever had been loaded outside Gatehouse, Caddy now runs this push.
            "UPDATE agents SET online = 1, caddy_reachable = 1, applied_hash = ?2, last_seen_at = ?3,
                    last_error = NULL, changed_outside_at = NULL WHERE id = ?1",
            params![id, hash, now()],
        )?,
        None => conn.execute("UPDATE agents SET last_error = ?2 WHERE id = ?1", params![id, error])?,
    };
    Ok(())
}

/// Makes the config-declared agents match `declared` (name, url, token, trust): adds,
/// updates, and removes those no longer declared. Agents added on the page are left alone.
pub(crate) fn sync_declared(
    conn: &Connection,
    declared: &[(String, String, Secret, TlsSettings)],
) -> Result<(), DbError> {
    let existing = list(conn)?;
    for (name, url, token, tls) in declared {
        match existing.iter().find(|a| &a.name == name) {
            Some(a) => {
                conn.execute(
                    "UPDATE agents SET url = ?2, token = gh_seal('agents.token', id, ?3),
                            from_config = 1, updated_at = ?4,
                            tls_ca = ?5, tls_pin = ?6 WHERE id = ?1",
                    params![
                        a.id,
                        url,
                        token.expose(),
                        now(),
                        tls.ca_pem(),
                        tls.pin_hex()
                    ],
                )?;
            }
            None => {
                conn.execute(
                    INSERT,
                    params![name, url, token.expose(), true, tls.ca_pem(), tls.pin_hex()],
                )?;
            }
        }
    }
    for a in existing.iter().filter(|a| a.from_config) {
        if !declared.iter().any(|(name, ..)| name == &a.name) {
            conn.execute("DELETE FROM agents WHERE id = ?1", [a.id])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Db;
    use crate::secrets::{Sealer, SecretKey};
    use std::sync::Arc;

    fn keyed_db(dir: &std::path::Path) -> Db {
        let sealer = Arc::new(Sealer::new(&SecretKey::generate()));
        let db = Db::open_with(&dir.join("gh.db"), Some(sealer)).unwrap();
        db.migrate().unwrap();
        db
    }

    #[tokio::test]
    async fn an_agent_knows_the_sites_set_aside_on_it_until_they_are_released() {
        use crate::db::quarantine::{self, Found, Refusal};
        let dir = tempfile::tempdir().unwrap();
        let db = keyed_db(dir.path());
        db.run(|c| {
            let tls = TlsSettings::default();
            let t = Secret::new("token-of-an-agent-00001");
            let one = insert(c, "one", "http://127.0.0.1:1", &t, false, &tls).unwrap();
            let two = insert(c, "two", "http://127.0.0.1:2", &t, false, &tls).unwrap();
            let site = |domain: &str| -> Result<i64, DbError> {
                c.execute(
                    "INSERT INTO vhosts (domain, template, config) VALUES (?1, 'raw', 'respond ok')",
                    [domain],
                )?;
                Ok(c.last_insert_rowid())
            };
            let (a, b) = (site("a.example")?, site("b.example")?);
            let refusal = |vhost_id| Refusal {
                vhost_id,
                error: "line 1: unrecognized directive: gzip".into(),
                body_line: Some(1),
                found: Found::Alone,
            };
            assert!(quarantine::set(c, one, &refusal(a))?, "new");
            assert!(quarantine::set(c, one, &refusal(b))?);
            assert!(!quarantine::set(c, one, &refusal(a))?, "already there");
            assert!(quarantine::set(c, two, &refusal(b))?);
            let of = |id| find(c, id).map(|a| a.unwrap().quarantined);
            assert_eq!(of(one)?, [a, b]);
            assert_eq!(of(two)?, [b]);
            assert_eq!(quarantine::for_site(c, b)?.len(), 2);
            assert_eq!(quarantine::release(c, b)?, 2);
            assert_eq!(of(one)?, [a]);
            assert!(of(two)?.is_empty());
            Ok(())
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn tokens_are_stored_sealed_for_their_row_and_read_back_in_the_clear() {
        let dir = tempfile::tempdir().unwrap();
        let db = keyed_db(dir.path());
        let (agents, raw) = db
            .run(|c| {
                let tls = TlsSettings::default();
                let a = Secret::new("token-of-agent-one-0001");
                let b = Secret::new("token-of-agent-two-0002");
                let one = insert(c, "one", "http://127.0.0.1:1", &a, false, &tls).unwrap();
                let two = insert(c, "two", "http://127.0.0.1:2", &b, false, &tls).unwrap();
                let three = Secret::new("token-of-agent-two-0003");
                update(c, two, "two", "http://127.0.0.1:2", Some(&three), &tls).unwrap();
                update(c, one, "uno", "http://127.0.0.1:1", None, &tls).unwrap();
                let raw: Vec<String> = c
                    .prepare("SELECT token FROM agents ORDER BY id")?
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                Ok((list(c)?, raw))
            })
            .await
            .unwrap();
        let tokens: Vec<_> = agents.iter().map(|a| a.token.expose()).collect();
        assert_eq!(
            tokens,
            ["token-of-agent-two-0003", "token-of-agent-one-0001"]
        );
        for value in &raw {
            assert!(
                value.starts_with("v1:") && !value.contains("token-of"),
                "{value}"
            );
        }
        // Agent two's sealed token copied onto agent one does not open there.
        let moved = db
            .run(move |c| {
                c.execute("UPDATE agents SET token = ?1 WHERE name = 'uno'", [&raw[1]])?;
                list(c)
            })
            .await;
        let err = moved.unwrap_err().to_string();
        assert!(
            err.contains("agents.token") && err.contains("fails authentication"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_a_key_tokens_cannot_be_written_or_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_and_migrate(&dir.path().join("gh.db")).unwrap();
        let err = db
            .run(|c| {
                let token = Secret::new("0123456789abcdef0123");
                Ok(insert(
                    c,
                    "x",
                    "http://127.0.0.1:1",
                    &token,
                    false,
                    &TlsSettings::default(),
                ))
            })
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("no secret key"), "{err}");
    }

    #[tokio::test]
    async fn a_new_url_forgets_what_the_old_machine_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = keyed_db(dir.path());
        let (kept, moved) = db
            .run(|c| {
                let tls = TlsSettings::default();
                let token = Secret::new("0123456789abcdef0123");
                let id = insert(c, "edge", "http://10.0.0.1:7070", &token, false, &tls).unwrap();
                let report = Report {
                    online: true,
                    caddy_reachable: true,
                    caddy_admin: Some("127.0.0.1:2999".into()),
                    access_log: Some("/var/log/a.log".into()),
                    applied_hash: Some("abc".into()),
                    ..Report::default()
                };
                record_report(c, id, &report)?;
                update(c, id, "edge-renamed", "http://10.0.0.1:7070", None, &tls).unwrap();
                let kept = find(c, id)?.unwrap();
                update(c, id, "edge-renamed", "http://10.0.0.2:7070", None, &tls).unwrap();
                Ok((kept, find(c, id)?.unwrap()))
            })
            .await
            .unwrap();
        assert_eq!(
            kept.caddy_admin.as_deref(),
            Some("127.0.0.1:2999"),
            "a rename keeps it"
        );
        assert!(kept.online && kept.applied_hash.is_some());
        assert_eq!(moved.caddy_admin, None);
        assert_eq!(moved.access_log, None);
        assert_eq!(moved.applied_hash, None);
        assert!(!moved.online);
    }

    #[tokio::test]
    async fn an_episode_of_change_from_outside_opens_once_and_ends_with_a_push_or_a_match() {
        let dir = tempfile::tempdir().unwrap();
        let db = keyed_db(dir.path());
        let opened = db
            .run(|c| {
                let token = Secret::new("0123456789abcdef0123");
                let tls = TlsSettings::default();
                let id = insert(c, "edge", "http://10.0.0.1:7070", &token, false, &tls).unwrap();
                let report = |running: RunningState| Report {
                    online: true,
                    caddy_reachable: true,
                    applied_hash: Some("abc".into()),
                    running,
                    ..Report::default()
                };
                let changed = || {
                    report(RunningState::ChangedOutside {
                        why: "someone else".into(),
                    })
                };
                let offline = Report {
                    online: false,
                    ..Report::default()
                };
                let mut opened = vec![
                    record_report(c, id, &report(RunningState::Matches))?,
                    record_report(c, id, &changed())?,
                    record_report(c, id, &changed())?,
                    record_report(c, id, &report(RunningState::Unknown))?,
                    record_report(c, id, &offline)?,
                ];
                let open = find(c, id)?.unwrap().changed_outside_at.is_some();
                opened.push(open);
                record_push(c, id, Some("abc"), None)?;
                opened.push(find(c, id)?.unwrap().changed_outside_at.is_some());
                opened.push(record_report(c, id, &changed())?);
                record_report(c, id, &report(RunningState::Matches))?;
                opened.push(find(c, id)?.unwrap().changed_outside_at.is_some());
                Ok(opened)
            })
            .await
            .unwrap();
        assert_eq!(
            opened,
            [
                false, // matches
                true,  // the first "changed" opens the episode
                false, // the same episode
                false, // unknown neither opens nor ends it
                false, // offline
                true,  // still open
                false, // a push ended it
                true,  // a new episode
                false, // "matches" ended it too
            ]
        );
    }

    #[tokio::test]
    async fn labels_are_the_portals_own_and_outlive_a_sync_of_declared_agents() {
        let dir = tempfile::tempdir().unwrap();
        let db = keyed_db(dir.path());
        let labels = db
            .run(|c| {
                let tls = TlsSettings::default();
                let declared = vec![(
                    "edge".to_string(),
                    "http://127.0.0.1:7070".to_string(),
                    Secret::new("0123456789abcdef0123"),
                    tls,
                )];
                sync_declared(c, &declared)?;
                let id = list(c)?[0].id;
                set_labels(c, id, &["canary".to_string(), "eu".to_string()])?;
                sync_declared(c, &declared)?;
                Ok(find(c, id)?.unwrap().labels)
            })
            .await
            .unwrap();
        assert_eq!(labels, ["canary", "eu"]);
    }
}
