//! Crash safety: the real hub binary is killed with SIGKILL in the middle of a stream of 200
//! changes made by a scripted client through the portal, with a real agent and a real Caddy
//! attached. The SQLite file must pass `PRAGMA integrity_check`, every change the client saw
//! acknowledged must be in the database and the changelog, and the agent must come to run
//! exactly what the database renders.

use crate::common::binary;
use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent_as, eventually};
use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, ChildGuard, Visitor, free_port};
use gatehouse::db::{Db, agents, changelog, vhosts};
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const CHANGES: usize = 200;
const SITES: usize = 10;
/// The hub is killed once this many changes have been acknowledged.
const KILL_AFTER: usize = 100;

/// The `gatehouse serve` process on a fixed port and data directory.
struct Hub {
    addr: SocketAddr,
    dir: PathBuf,
    setup_token: String,
    process: Option<ChildGuard>,
}

impl Hub {
    fn db_path(&self) -> PathBuf {
        self.dir.join("data").join("gatehouse.db")
    }

    async fn start(&mut self) {
        // A running process is stopped (by its guard) before the next one takes the address.
        self.process = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("hub.log"))
            .unwrap();
        let mut command = binary::serve(&self.dir, self.addr.port());
        command
            .env("GATEHOUSE_DATA_DIR", self.dir.join("data"))
            .env("GATEHOUSE_SETUP_TOKEN", &self.setup_token)
            .env("GATEHOUSE_FLEET_RECONCILE_INTERVAL_SECS", "1")
            .env("GATEHOUSE_SECURITY_LOGIN_ATTEMPTS_PER_MINUTE", "1000")
            .env("GATEHOUSE_SECURITY_REQUEST_TIMEOUT_SECS", "120")
            .stdout(Stdio::null())
            .stderr(log);
        let healthz = format!("http://{}/healthz", self.addr);
        self.process = Some(binary::start(&mut command, &healthz, || self.log()).await);
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("the hub runs").pid()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("hub.log")).unwrap_or_default()
    }
}

/// What a site should look like: on or off, and the marker its body answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    enabled: bool,
    marker: String,
}

/// One change of the script.
#[derive(Debug, Clone)]
enum Change {
    Create { site: usize, marker: String },
    Toggle { site: usize },
    Edit { site: usize, marker: String },
}

impl Change {
    fn site(&self) -> usize {
        match self {
            Change::Create { site, .. } | Change::Toggle { site } | Change::Edit { site, .. } => {
                *site
            }
        }
    }

    fn action(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::Toggle { .. } => "toggle",
            Change::Edit { .. } => "update",
        }
    }

    /// The site after this change.
    fn apply(&self, before: Option<&Expected>) -> Expected {
        match self {
            Change::Create { marker, .. } => Expected {
                enabled: true,
                marker: marker.clone(),
            },
            Change::Toggle { .. } => {
                let before = before.expect("toggled after creation");
                Expected {
                    enabled: !before.enabled,
                    marker: before.marker.clone(),
                }
            }
            Change::Edit { marker, .. } => Expected {
                enabled: before.expect("edited after creation").enabled,
                marker: marker.clone(),
            },
        }
    }
}

/// 10 creations, then rounds over the 10 sites that toggle them all, or edit them all.
fn script() -> Vec<Change> {
    (0..CHANGES)
        .map(|n| {
            let (site, round) = (n % SITES, n / SITES);
            let marker = format!("change-{n}");
            if round == 0 {
                Change::Create { site, marker }
            } else if round % 2 == 1 {
                Change::Toggle { site }
            } else {
                Change::Edit { site, marker }
            }
        })
        .collect()
}

fn domain(site: usize, port: u16) -> String {
    format!("http://s{site}.localhost:{port}")
}

fn body(marker: &str) -> String {
    format!("bind 127.0.0.1\nrespond \"{marker}\" 200")
}

/// The marker in a stored body (`respond "change-N" 200`).
fn marker_of(config: &str) -> String {
    config
        .split('"')
        .nth(1)
        .unwrap_or_else(|| panic!("no marker in {config:?}"))
        .to_string()
}

/// Sends one change; `Ok(())` only when the hub acknowledged it (its redirect arrived),
/// `Err` when the request failed on the way (the hub died under it).
async fn send(
    visitor: &Visitor,
    csrf: &str,
    change: &Change,
    after: &Expected,
    ids: &BTreeMap<usize, i64>,
    port: u16,
) -> Result<(), String> {
    let (path, mut form): (String, Vec<(String, String)>) = match change {
        Change::Create { site, marker } | Change::Edit { site, marker } => {
            let path = match change {
                Change::Create { .. } => "/vhosts".to_string(),
                _ => format!("/vhosts/{}", ids[site]),
            };
            let mut form = vec![
                ("domain".to_string(), domain(*site, port)),
                ("template".into(), "raw".into()),
                ("config".into(), body(marker)),
            ];
            // The form sends the on/off box only when it is ticked; an edit keeps it as is.
            if after.enabled {
                form.push(("enabled".into(), "on".into()));
            }
            (path, form)
        }
        Change::Toggle { site } => (format!("/vhosts/{}/toggle", ids[site]), Vec::new()),
    };
    form.push(("csrf_token".into(), csrf.to_string()));
    let response = visitor
        .http
        .post(visitor.url(&path))
        .form(&form)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    assert_eq!(status, StatusCode::SEE_OTHER, "{change:?}: {body}");
    Ok(())
}

async fn db_state(db: &Db) -> (Vec<vhosts::Vhost>, Vec<changelog::Entry>) {
    db.run(|c| {
        let sites = vhosts::list(c, &Default::default())?;
        let mut log = changelog::list(
            c,
            &changelog::Filter {
                limit: 10_000,
                ..Default::default()
            },
        )?;
        log.reverse();
        Ok((sites, log))
    })
    .await
    .unwrap()
}

fn integrity_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open the database file");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("integrity_check")
}

#[tokio::test]
async fn a_hub_killed_mid_stream_loses_no_acknowledged_change_and_the_agent_converges() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Hub {
        addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        dir: dir.path().to_path_buf(),
        setup_token: gatehouse::auth::token::random_hex(16),
        process: None,
    };
    hub.start().await;
    let admin = Visitor::at(hub.addr, &hub.setup_token);
    admin.create_admin().await;
    admin.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_agent_as(&admin, "edge-1", &agent.url()).await;
    // With the key the hub made on its first start: agent tokens are sealed with it.
    let db = gatehouse::app::open_database(&gatehouse::config::Config {
        data_dir: hub.dir.join("data"),
        ..Default::default()
    })
    .unwrap();
    eventually(10, "the hub has heard from the agent", || async {
        db.run(|c| agents::list(c))
            .await
            .unwrap()
            .iter()
            .all(|a| a.caddy_admin.is_some())
    })
    .await;

    let port = caddy.http_port;
    let script = script();
    let mut expected: BTreeMap<usize, Expected> = BTreeMap::new();
    let mut ids: BTreeMap<usize, i64> = BTreeMap::new();
    // (change, site after it) for every acknowledged change, in order.
    let mut acknowledged: Vec<(Change, Expected)> = Vec::new();
    let mut lost: Option<(Change, Expected)> = None;
    let mut lost_committed = false;
    let acks = Arc::new(AtomicUsize::new(0));
    let mut killer = Some({
        let (acks, pid) = (Arc::clone(&acks), hub.pid());
        tokio::spawn(async move {
            while acks.load(Ordering::SeqCst) < KILL_AFTER {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // The client is already sending the next change: kill -9 under it, at a point
            // of its deploy that differs from run to run (before the push, between push and
            // commit, after the commit but before the answer).
            let delay = 1 + rand::random::<u64>() % 40;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let status = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        })
    });

    let mut csrf = admin.csrf().await;
    for change in &script {
        let after = change.apply(expected.get(&change.site()));
        match send(&admin, &csrf, change, &after, &ids, port).await {
            Ok(()) => {
                if let Change::Create { site, .. } = change {
                    let wanted = domain(*site, port);
                    let id = db
                        .run(move |c| {
                            Ok(vhosts::list(c, &Default::default())?
                                .into_iter()
                                .find(|v| v.domain == wanted)
                                .map(|v| v.id))
                        })
                        .await
                        .unwrap()
                        .expect("an acknowledged creation is in the database");
                    ids.insert(*site, id);
                }
                expected.insert(change.site(), after.clone());
                acknowledged.push((change.clone(), after));
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Err(error) => {
                assert!(lost.is_none(), "a second failure: {error}");
                assert!(
                    acknowledged.len() >= KILL_AFTER,
                    "failed before the kill: {error}\n{}",
                    hub.log()
                );
                lost = Some((change.clone(), after));
                killer.take().expect("one kill").await.unwrap();
                let process = hub.process.as_mut().unwrap();
                let status = process.0.wait().unwrap();
                assert!(!status.success(), "the hub was killed: {status}");

                // What the kill left on disk, before the hub opens it again.
                assert_eq!(integrity_check(&hub.db_path()), "ok");

                hub.start().await;
                // The session and its CSRF token live in the database too.
                csrf = admin.csrf().await;
                // The change in flight may or may not have been committed: take what the
                // database says, after checking it is one of the two.
                let (sites, _) = db_state(&db).await;
                let (change, with) = lost.as_ref().unwrap();
                let site = change.site();
                let stored = sites
                    .iter()
                    .find(|v| v.domain == domain(site, port))
                    .map(|v| Expected {
                        enabled: v.enabled,
                        marker: marker_of(&v.config),
                    });
                let without = expected.get(&site).cloned();
                assert!(
                    stored == without || stored.as_ref() == Some(with),
                    "the change in flight is all there or not at all: {stored:?}"
                );
                if stored.as_ref() == Some(with) {
                    expected.insert(site, with.clone());
                    lost_committed = true;
                }
            }
        }
    }
    assert!(lost.is_some(), "the hub was killed mid-stream");
    println!(
        "crash: {} changes acknowledged; the one in flight at the kill was {}",
        acknowledged.len(),
        if lost_committed {
            "committed"
        } else {
            "not committed"
        }
    );
    assert_eq!(acknowledged.len(), CHANGES - 1, "all but the one in flight");

    // Every acknowledged change is in the database and, in order, in the changelog.
    let (sites, log) = db_state(&db).await;
    for (site, want) in &expected {
        let stored = sites
            .iter()
            .find(|v| v.domain == domain(*site, port))
            .unwrap_or_else(|| panic!("site {site} is missing"));
        assert_eq!(stored.enabled, want.enabled, "site {site}");
        assert_eq!(marker_of(&stored.config), want.marker, "site {site}");
    }
    assert_eq!(
        log.len(),
        acknowledged.len() + usize::from(lost_committed),
        "one changelog entry per committed change"
    );
    let mut entries = log.iter();
    for (change, after) in &acknowledged {
        // The lost change, if committed, sits somewhere in between: skip over it.
        let entry = entries
            .by_ref()
            .find(|e| e.action == change.action() && e.domain == domain(change.site(), port))
            .unwrap_or_else(|| panic!("no changelog entry for {change:?}"));
        let new = entry.new.as_ref().expect("the state after");
        assert_eq!(
            (new.enabled, marker_of(&new.config)),
            (after.enabled, after.marker.clone()),
            "{change:?}"
        );
    }

    // The agent converges to the database's render, and Caddy serves exactly that.
    let caddy_settings = gatehouse::config::Config::default().caddy;
    let render = || async {
        let caddy_settings = caddy_settings.clone();
        db.run(move |c| {
            let agent = agents::list(c)?.remove(0);
            let all = vhosts::list(c, &Default::default())?;
            Ok(gatehouse::fleet::site_config::for_agent(&caddy_settings, &agent, &all).1)
        })
        .await
        .unwrap()
    };
    eventually(30, "the agent runs the database's render", || async {
        agent.health().await["applied_hash"].as_str() == Some(render().await.as_str())
    })
    .await;
    let agents_page = admin.get("/agents").await;
    assert_eq!(
        agents_page
            .attr("article.agent-row[data-agent=edge-1]", "data-state")
            .as_deref(),
        Some("in sync")
    );
    for (site, want) in &expected {
        let (status, text) = caddy.get(&format!("s{site}.localhost:{port}"), "/").await;
        if want.enabled {
            assert_eq!(
                (status, text.as_str()),
                (200, want.marker.as_str()),
                "site {site}"
            );
        } else {
            // Caddy answers an empty 200 for a host it has no site for on a port it serves.
            assert_ne!(text, want.marker, "site {site} is off");
        }
    }
    drop(hub);
}
