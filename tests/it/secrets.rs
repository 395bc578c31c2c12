//! Secrets at rest, with the real binary: agent tokens and TOTP secrets never reach the
//! SQLite files in the clear, start-up refuses a key that does not fit (or a value that was
//! altered) and changes nothing, plaintext left by an older version is sealed, and
//! `gatehouse rotate-key` re-seals everything while sign-in and the agents keep working.

use crate::common;

use crate::common::binary;
use crate::common::caddy::Caddy;
use crate::common::fleet::{AGENT_TOKEN, AgentProc, add_agent_as, upstream};
use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, ChildGuard, Visitor, free_port, totp_code};
use gatehouse::secrets::SecretKey;
use reqwest::StatusCode;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const SETUP_TOKEN: &str = "secrets-test-setup-token";

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run gatehouse")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn data(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn db_path(dir: &Path) -> PathBuf {
    data(dir).join("gatehouse.db")
}

fn key_path(dir: &Path) -> PathBuf {
    data(dir).join("secret.key")
}

fn serve_cmd(dir: &Path, port: u16, envs: &[(&str, &str)]) -> Command {
    let mut cmd = binary::serve(dir, port);
    cmd.env("GATEHOUSE_SETUP_TOKEN", SETUP_TOKEN)
        .env("GATEHOUSE_SECURITY_LOGIN_ATTEMPTS_PER_MINUTE", "1000")
        .env("GATEHOUSE_FLEET_RECONCILE_INTERVAL_SECS", "1")
        .envs(envs.iter().copied());
    cmd
}

/// Starts `serve` and waits (bounded) until /healthz answers.
async fn serve(dir: &Path, port: u16, envs: &[(&str, &str)]) -> ChildGuard {
    let mut cmd = serve_cmd(dir, port, envs);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    binary::start(&mut cmd, &healthz, String::new).await
}

/// Runs `serve`, expecting it to exit with an error within 30 s; returns its stderr.
fn refused(dir: &Path, envs: &[(&str, &str)]) -> String {
    let child = serve_cmd(dir, free_port(), envs)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut guard = ChildGuard(child);
    for _ in 0..300 {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            let mut err = String::new();
            std::io::Read::read_to_string(guard.0.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(!status.success(), "serve exited 0: {err}");
            return err;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    guard.terminate();
    panic!("serve started where it had to refuse");
}

fn visitor(port: u16) -> Visitor {
    Visitor::at(format!("127.0.0.1:{port}").parse().unwrap(), SETUP_TOKEN)
}

/// The bytes of the database and of its WAL (if any).
fn file_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let db = db_path(dir);
    let wal = db.with_extension("db-wal");
    [db, wal]
        .into_iter()
        .filter(|p| p.exists())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts that no byte sequence in `needles` is in the database or WAL file, before and
/// after a checkpoint (run from here, beside the running hub).
fn assert_absent_from_files(dir: &Path, needles: &[(&str, &str)]) {
    for round in ["before a checkpoint", "after a checkpoint"] {
        if round == "after a checkpoint" {
            let conn = Connection::open(db_path(dir)).unwrap();
            conn.busy_timeout(Duration::from_secs(5)).unwrap();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .unwrap();
        }
        let files = file_bytes(dir);
        assert!(!files.is_empty());
        for (path, bytes) in &files {
            for (what, needle) in needles {
                assert!(
                    !contains(bytes, needle),
                    "{what} is in {} {round}",
                    path.display()
                );
            }
        }
    }
}

fn raw(dir: &Path, sql: &str) -> Vec<String> {
    let conn = Connection::open(db_path(dir)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn stored_token(dir: &Path) -> String {
    raw(dir, "SELECT token FROM agents")
        .pop()
        .expect("an agent")
}

fn stored_totp(dir: &Path) -> String {
    raw(
        dir,
        "SELECT totp_secret FROM users WHERE totp_secret IS NOT NULL",
    )
    .pop()
    .expect("a TOTP secret")
}

/// Signs in with the password and a TOTP code for `secret`; the signed-in visitor, or None
/// when the code is refused.
async fn sign_in_with_totp(port: u16, secret: &str, steps: i64) -> Option<Visitor> {
    let v = visitor(port);
    let login = v.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(
        login.header("location"),
        Some("/login/2fa"),
        "{}",
        login.body
    );
    let done = v.second_factor(&totp_code(secret, steps)).await;
    (done.status == StatusCode::SEE_OTHER && v.get("/vhosts").await.status == StatusCode::OK)
        .then_some(v)
}

/// Waits (bounded) until Caddy answers `host` with 200 and `body`.
async fn served(caddy: &Caddy, host: &str, body: &str) {
    common::fleet::eventually(20, &format!("Caddy serves {host}"), || async {
        caddy.get(host, "/").await == (200, body.to_string())
    })
    .await;
}

/// A site on `caddy` proxying to `to`, made through the portal (deployed before the answer).
async fn make_site(v: &Visitor, name: &str, caddy: &Caddy, to: std::net::SocketAddr) {
    let domain = format!("http://{name}.localhost:{}", caddy.http_port);
    let config = format!("bind 127.0.0.1\nreverse_proxy {to}");
    let page = v
        .post_form(
            "/vhosts",
            &[
                ("domain", &domain),
                ("template", "raw"),
                ("config", &config),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

/// A hub run once: first admin made and enrolled; returns the TOTP secret. Stopped after.
async fn enrolled_hub(dir: &Path) -> String {
    let port = free_port();
    let mut hub = serve(dir, port, &[]).await;
    let admin = visitor(port);
    admin.create_admin().await;
    let secret = admin.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    hub.terminate();
    secret
}

#[tokio::test]
async fn secrets_never_reach_the_files_and_survive_a_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let backend = upstream("sealed and served").await;
    let port = free_port();
    let mut hub = serve(dir.path(), port, &[]).await;

    // First run: a key file only its owner can read, outside the database.
    let key = std::fs::read_to_string(key_path(dir.path())).expect("a key file on first run");
    let old_id = SecretKey::parse(&key).unwrap().id().to_string();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);
    }

    let admin = visitor(port);
    admin.create_admin().await;
    let secret = admin.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    add_agent_as(&admin, "edge-1", &agent.url()).await;
    make_site(&admin, "before", &caddy, backend).await;
    let before = format!("before.localhost:{}", caddy.http_port);
    assert_eq!(
        caddy.get(&before, "/").await.0,
        200,
        "the hub talks to the agent"
    );

    // Sealed in the table, under the key file's key; absent from the files byte for byte.
    let sealed_token = stored_token(dir.path());
    let sealed_totp = stored_totp(dir.path());
    for value in [&sealed_token, &sealed_totp] {
        assert!(value.starts_with(&format!("v1:{old_id}:")), "{value}");
    }
    assert_absent_from_files(
        dir.path(),
        &[
            ("the agent token", AGENT_TOKEN),
            ("the TOTP secret", &secret),
            ("the key", key.trim()),
        ],
    );

    // Not while the portal serves: it holds the old key.
    let busy = run(binary::gatehouse_in(dir.path())
        .arg("rotate-key")
        .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}")));
    assert!(!busy.status.success() && text(&busy.stderr).contains("stop it"));
    assert_eq!(stored_token(dir.path()), sealed_token, "nothing changed");
    hub.terminate();

    let rotated = run(binary::gatehouse_in(dir.path()).arg("rotate-key"));
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    let out = text(&rotated.stdout);
    assert!(
        out.contains("1 agent token(s) and 1 TOTP secret(s)"),
        "{out}"
    );
    let new_key = std::fs::read_to_string(key_path(dir.path())).unwrap();
    let new_id = SecretKey::parse(&new_key).unwrap().id().to_string();
    assert_ne!(new_id, old_id);
    let kept = data(dir.path()).join(format!("secret.key.old-{old_id}"));
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        key,
        "the old key is kept aside"
    );
    assert!(!data(dir.path()).join("secret.key.new").exists());
    for value in [stored_token(dir.path()), stored_totp(dir.path())] {
        assert!(value.starts_with(&format!("v1:{new_id}:")), "{value}");
    }
    assert_absent_from_files(
        dir.path(),
        &[
            ("the old sealed token", &sealed_token),
            ("the old sealed TOTP secret", &sealed_totp),
            ("the agent token", AGENT_TOKEN),
            ("the TOTP secret", &secret),
        ],
    );

    // The hub starts on the new key: the TOTP code from the same secret signs in, and the
    // agent still takes pushes with its token.
    let mut hub = serve(dir.path(), port, &[]).await;
    let admin = sign_in_with_totp(port, &secret, 1)
        .await
        .expect("TOTP sign-in after rotation");
    make_site(&admin, "after", &caddy, backend).await;
    served(
        &caddy,
        &format!("after.localhost:{}", caddy.http_port),
        "sealed and served",
    )
    .await;
    hub.terminate();
}

#[tokio::test]
async fn a_key_that_does_not_fit_refuses_to_start_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    enrolled_hub(dir.path()).await;
    let sealed = stored_totp(dir.path());
    let right = std::fs::read_to_string(key_path(dir.path())).unwrap();
    let right_id = SecretKey::parse(&right).unwrap().id().to_string();

    // Another key file in its place; the right one kept under another name.
    std::fs::rename(
        key_path(dir.path()),
        data(dir.path()).join("secret.key.bak"),
    )
    .unwrap();
    let other = SecretKey::generate();
    gatehouse::secrets::write_key_file(&key_path(dir.path()), &other).unwrap();
    let err = refused(dir.path(), &[]);
    assert!(
        err.contains(&format!("sealed under key {right_id}"))
            && err.contains(&format!("is key {}", other.id()))
            && err.contains("Refusing to start")
            && err.contains("secret.key.bak holds key"),
        "{err}"
    );

    // The wrong key from the environment: named as such.
    let env_key = SecretKey::generate().encode();
    let err = refused(dir.path(), &[("GATEHOUSE_SECRET_KEY", &env_key)]);
    assert!(
        err.contains("GATEHOUSE_SECRET_KEY") && err.contains("Refusing"),
        "{err}"
    );
    let err = refused(dir.path(), &[("GATEHOUSE_SECRET_KEY", "too-short")]);
    assert!(
        err.contains("secret_key"),
        "a bad key names the setting: {err}"
    );

    // No key at all: refused, and no new key file is made for a database that needs the old.
    std::fs::remove_file(key_path(dir.path())).unwrap();
    let err = refused(dir.path(), &[]);
    assert!(
        err.contains("no secret key") && err.contains(&format!("key {right_id}")),
        "{err}"
    );
    assert!(!key_path(dir.path()).exists());
    assert_eq!(
        stored_totp(dir.path()),
        sealed,
        "never wiped, never re-sealed"
    );

    // The right key, as hex in the environment, opens it (and makes no key file).
    let hex: String = base64_to_hex(&right);
    let port = free_port();
    let mut hub = serve(dir.path(), port, &[("GATEHOUSE_SECRET_KEY", &hex)]).await;
    assert!(!key_path(dir.path()).exists());
    hub.terminate();
}

#[tokio::test]
async fn a_key_that_does_not_fit_refuses_before_an_older_schema_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    // A database as the release before API tokens (schema 6) left it: its agent token and
    // TOTP secret sealed under that server's key.
    let right = SecretKey::generate();
    let sealer = gatehouse::secrets::Sealer::new(&right);
    std::fs::create_dir_all(data(dir.path())).unwrap();
    let conn = Connection::open(db_path(dir.path())).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for m in gatehouse::db::MIGRATIONS.iter().filter(|m| m.version <= 6) {
        conn.execute_batch(m.sql).unwrap();
        conn.pragma_update(None, "user_version", m.version).unwrap();
    }
    let totp = gatehouse::auth::totp::new_secret();
    conn.execute(
        "INSERT INTO users (id, name, email, password_hash, role, totp_secret, totp_enabled)
         VALUES (1, 'Ada', ?1, ?2, 'admin', ?3, 1)",
        (
            ADMIN_EMAIL,
            gatehouse::auth::password::hash(ADMIN_PASSWORD),
            sealer.seal(gatehouse::secrets::Field::TotpSecret, 1, &totp),
        ),
    )
    .unwrap();
    conn.execute(
        "INSERT INTO agents (id, name, url, token) VALUES (1, 'edge-1', 'http://127.0.0.1:9', ?1)",
        [sealer.seal(gatehouse::secrets::Field::AgentToken, 1, AGENT_TOKEN)],
    )
    .unwrap();
    drop(conn);
    assert!(
        gatehouse::db::MIGRATIONS.last().unwrap().version > 6,
        "this binary has migrations to run on it"
    );

    // Another server's key: refused, and the file is exactly as it was (not migrated).
    let other = SecretKey::generate();
    gatehouse::secrets::write_key_file(&key_path(dir.path()), &other).unwrap();
    let before = file_bytes(dir.path());
    let err = refused(dir.path(), &[]);
    assert!(
        err.contains(&format!("sealed under key {}", right.id())) && err.contains("Refusing"),
        "{err}"
    );
    assert!(file_bytes(dir.path()) == before, "nothing changed");
    assert_eq!(
        raw(
            dir.path(),
            "SELECT CAST(user_version AS TEXT) FROM pragma_user_version"
        ),
        ["6"]
    );

    // With its own key the same database is migrated and served.
    std::fs::remove_file(key_path(dir.path())).unwrap();
    gatehouse::secrets::write_key_file(&key_path(dir.path()), &right).unwrap();
    let port = free_port();
    let mut hub = serve(dir.path(), port, &[]).await;
    hub.terminate();
    let version = gatehouse::db::MIGRATIONS
        .last()
        .unwrap()
        .version
        .to_string();
    assert_eq!(
        raw(
            dir.path(),
            "SELECT CAST(user_version AS TEXT) FROM pragma_user_version"
        ),
        [version]
    );
}

fn base64_to_hex(b64: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn an_altered_secret_is_detected_at_start_up_and_can_be_cleared() {
    let dir = tempfile::tempdir().unwrap();
    enrolled_hub(dir.path()).await;
    let sealed = stored_totp(dir.path());
    // Flip one character of the ciphertext, keeping it valid base64 of the same length.
    let at = sealed.len() - 10;
    let flipped = if &sealed[at..=at] == "A" { "B" } else { "A" };
    let altered = format!("{}{flipped}{}", &sealed[..at], &sealed[at + 1..]);
    let conn = Connection::open(db_path(dir.path())).unwrap();
    conn.execute("UPDATE users SET totp_secret = ?1", [&altered])
        .unwrap();
    drop(conn);

    let err = refused(dir.path(), &[]);
    assert!(
        err.contains(&format!("user {ADMIN_EMAIL}"))
            && err.contains("fails authentication")
            && err.contains(&format!("gatehouse user reset-2fa {ADMIN_EMAIL}")),
        "{err}"
    );
    assert_eq!(stored_totp(dir.path()), altered, "left as it was");

    // The remedy it names works, and the admin enrols again.
    let reset = run(binary::gatehouse_in(dir.path()).args(["user", "reset-2fa", ADMIN_EMAIL]));
    assert!(reset.status.success(), "{}", text(&reset.stderr));
    let port = free_port();
    let mut hub = serve(dir.path(), port, &[]).await;
    let admin = visitor(port);
    let secret = admin.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert!(!secret.is_empty());
    hub.terminate();
}

#[tokio::test]
async fn plaintext_from_an_older_version_is_sealed_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let backend = upstream("legacy agent still served").await;

    // A database as version 5 left it: the token and the TOTP secret in the clear.
    let totp_secret = gatehouse::auth::totp::new_secret();
    std::fs::create_dir_all(data(dir.path())).unwrap();
    let conn = Connection::open(db_path(dir.path())).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    for m in gatehouse::db::MIGRATIONS.iter().filter(|m| m.version <= 5) {
        conn.execute_batch(m.sql).unwrap();
        conn.pragma_update(None, "user_version", m.version).unwrap();
    }
    conn.execute(
        "INSERT INTO users (name, email, password_hash, role, totp_secret, totp_enabled)
         VALUES ('Ada', ?1, ?2, 'admin', ?3, 1)",
        (
            ADMIN_EMAIL,
            gatehouse::auth::password::hash(ADMIN_PASSWORD),
            &totp_secret,
        ),
    )
    .unwrap();
    conn.execute(
        "INSERT INTO agents (name, url, token) VALUES ('edge-1', ?1, ?2)",
        (agent.url(), AGENT_TOKEN),
    )
    .unwrap();
    drop(conn);
    assert!(
        contains(&std::fs::read(db_path(dir.path())).unwrap(), AGENT_TOKEN) || {
            // Still in the WAL: the plaintext is on disk either way.
            contains(
                &std::fs::read(db_path(dir.path()).with_extension("db-wal")).unwrap_or_default(),
                AGENT_TOKEN,
            )
        }
    );

    let port = free_port();
    let mut hub = serve(dir.path(), port, &[]).await;
    let key = std::fs::read_to_string(key_path(dir.path())).unwrap();
    let id = SecretKey::parse(&key).unwrap().id().to_string();
    for value in [stored_token(dir.path()), stored_totp(dir.path())] {
        assert!(value.starts_with(&format!("v1:{id}:")), "{value}");
    }
    assert!(raw(dir.path(), "SELECT field FROM secrets_pending").is_empty());
    assert_absent_from_files(
        dir.path(),
        &[
            ("the legacy agent token", AGENT_TOKEN),
            ("the legacy TOTP secret", &totp_secret),
        ],
    );

    let admin = sign_in_with_totp(port, &totp_secret, 0)
        .await
        .expect("TOTP sign-in with the sealed legacy secret");
    make_site(&admin, "legacy", &caddy, backend).await;
    let host = format!("legacy.localhost:{}", caddy.http_port);
    served(&caddy, &host, "legacy agent still served").await;

    // A second start finds nothing left to seal and changes nothing.
    let token_now = stored_token(dir.path());
    hub.terminate();
    let mut hub = serve(dir.path(), port, &[]).await;
    assert_eq!(stored_token(dir.path()), token_now);
    hub.terminate();
}
