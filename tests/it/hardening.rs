//! Hardening (issue 13, item 6, and before): slow requests and slow clients time out on the
//! hub and the agent and the connection cap holds; the data directory and database are
//! private; a ban revokes API tokens; guessing cannot lock an admin out; the audit log keeps
//! no password typed as an email; agent URLs carry no credentials and agent redirects are
//! never followed; error pages are never cached; and markup typed into any field a person
//! controls is shown as text on every page that displays it, never run.

use crate::common;

use crate::common::api::{Api, make_token};
use crate::common::caddy::Caddy;
use crate::common::fleet::AgentProc;
use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, USER_PASSWORD, Visitor};
use axum::response::IntoResponse;
use gatehouse::db::api_tokens;
use gatehouse::domain::Role;
use reqwest::StatusCode;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_request_whose_body_never_finishes_gets_408() {
    let app = TestApp::spawn_with(|c| c.security.request_timeout_secs = 1).await;
    // A real session and token, so the request gets past CSRF to where the body is read.
    let page = app.get("/login").await;
    let cookie = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let token = page.attr("meta[name=csrf-token]", "content").unwrap();
    let mut socket = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nX-CSRF-Token: {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=a"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("the hub answers instead of waiting for ever")
        .unwrap();
    let head = String::from_utf8_lossy(&answer[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

/// The only scripts on a page are the two vendored files and our own `app.js`.
fn only_our_scripts(page: &common::Page) {
    let doc = page.html();
    let scripts: Vec<_> = doc
        .select(&common::selector("script"))
        .map(|s| s.value().attr("src").unwrap_or("inline").to_string())
        .collect();
    assert_eq!(scripts.len(), 3, "{scripts:?}");
    assert!(
        scripts
            .iter()
            .all(|s| s.starts_with("/static/vendor/") || s.starts_with("/static/app.js?v=")),
        "{scripts:?}"
    );
    assert_eq!(
        doc.select(&common::selector("img[onerror], [onload], iframe"))
            .count(),
        0
    );
}

#[tokio::test]
async fn markup_in_every_field_a_person_controls_is_rendered_inert() {
    let (app, _) = common::app_with_admin().await;
    let evil = r#"<script>alert(1)</script><img src=x onerror=alert(2)>"#;

    // A display name, through the users page.
    let created = app
        .post_form(
            "/users",
            &[
                ("name", evil),
                ("email", "evil@example.com"),
                ("role", "user"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    only_our_scripts(&created);
    assert!(
        created
            .texts("#user-table td")
            .iter()
            .any(|t| t.contains("<script>alert(1)</script>"))
    );

    // A site body, through the editor, the preview, the list and the changelog.
    let body = format!("respond \"{}\" 200", evil.replace('"', "'"));
    let made = app
        .post_form(
            "/vhosts",
            &[
                ("domain", "evil.example.com"),
                ("template", "raw"),
                ("config", &body),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    for path in ["/vhosts", "/changelog", "/caddyfile", "/"] {
        only_our_scripts(&app.get(path).await);
    }
    let preview = app
        .post_form(
            "/vhosts/preview",
            &[
                ("domain", "evil.example.com"),
                ("template", "raw"),
                ("config", &body),
            ],
        )
        .await;
    only_our_scripts(&preview);
    assert!(
        preview
            .text("#preview-block")
            .contains("<script>alert(1)</script>")
    );

    // A refused domain comes back as typed, but as text.
    let refused = app
        .post_form(
            "/vhosts",
            &[
                ("domain", evil),
                ("template", "raw"),
                ("config", "respond ok"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    only_our_scripts(&refused);
    assert_eq!(refused.attr("#domain", "value").as_deref(), Some(evil));

    // A sign-in attempt whose browser name is markup lands in the audit log as text. (Markup
    // typed as the email is not an email address, so the log does not keep it at all.)
    let csrf_page = app.visitor();
    let token = csrf_page.csrf().await;
    let refused = csrf_page
        .http
        .post(csrf_page.url("/login"))
        .header("user-agent", evil)
        .form(&[
            ("email", "nobody@example.com"),
            ("password", "whatever password"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let audit = app.get("/audit").await;
    only_our_scripts(&audit);
    assert!(
        audit
            .texts("#audit-table td")
            .iter()
            .any(|t| t.contains("<img src=x onerror=alert(2)>"))
    );
}

// ---- Slow clients -------------------------------------------------------------------------

/// How the dribbling connections ended.
struct Dribbled {
    /// Closed by the server (end of stream or reset) before the test gave up on it.
    closed: bool,
    /// Bytes sent before that: more than one shows it was held open a while, not refused.
    sent: usize,
}

/// A request head that never ends.
const HTTP_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
/// The start of a TLS handshake record announcing 512 bytes that never all come.
const TLS_HEAD: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00];

/// Opens `n` connections to `addr` that send `head`, then filler, one byte every 300 ms and
/// never finish (a slowloris). Each gives up after 7.5 s (bounded), and says whether the
/// server closed it first. All are connected before this returns.
async fn dribble(
    addr: SocketAddr,
    n: usize,
    head: &'static [u8],
) -> Vec<tokio::task::JoinHandle<Dribbled>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut buf = [0u8; 512];
            for _ in 0..25 {
                tokio::select! {
                    read = socket.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return Dribbled { closed: true, sent },
                        Ok(_) => continue,
                    },
                    () = tokio::time::sleep(Duration::from_millis(300)) => {
                        let byte = head.get(sent).copied().unwrap_or(b'a');
                        if socket.write_all(&[byte]).await.is_err() {
                            return Dribbled { closed: true, sent };
                        }
                        sent += 1;
                    }
                }
            }
            Dribbled {
                closed: false,
                sent,
            }
        }));
    }
    tasks
}

/// One whole request on a fresh connection; the status line of the answer, or None when none
/// came within `wait`.
async fn status_line(addr: SocketAddr, path: &str, wait: Duration) -> Option<String> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        socket.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer);
        text.lines().next().map(str::to_string)
    };
    tokio::time::timeout(wait, exchange).await.ok().flatten()
}

/// While 40 slowloris connections dribble, `health` keeps answering; then every one of them
/// has been closed by the server.
async fn slow_clients_are_closed_while_health_answers<F, Fut>(
    addr: SocketAddr,
    head: &'static [u8],
    health: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let slow = dribble(addr, 40, head).await;
    for _ in 0..5 {
        assert!(health().await, "the health check stopped answering");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    for task in slow {
        let ended = task.await.unwrap();
        assert!(ended.closed, "a slow connection was left open");
        assert!(ended.sent > 1, "closed at once rather than timed out");
    }
    assert!(health().await, "the health check answers afterwards");
}

/// With `cap` slow connections open, the next client waits: no answer while they hold every
/// slot (they are closed 3 s after they were accepted); once they are closed, it is served.
async fn the_connection_cap_holds_the_next_client_until_a_slot_frees(
    addr: SocketAddr,
    cap: usize,
    health_path: &str,
) {
    let slow = dribble(addr, cap, HTTP_HEAD).await;
    let waiting = tokio::spawn({
        let path = health_path.to_string();
        async move { status_line(addr, &path, Duration::from_secs(20)).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "answered while every connection slot was taken"
    );
    let answer = waiting.await.unwrap();
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200 OK"));
    for task in slow {
        assert!(task.await.unwrap().closed);
    }
    assert_eq!(
        status_line(addr, health_path, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("HTTP/1.1 200 OK")
    );
}

#[tokio::test]
async fn the_hub_closes_slow_header_connections_and_keeps_answering_healthz() {
    let app = TestApp::spawn_with(|c| c.security.header_read_timeout_secs = 2).await;
    let addr = app.addr;
    slow_clients_are_closed_while_health_answers(addr, HTTP_HEAD, || async move {
        status_line(addr, "/healthz", Duration::from_secs(5))
            .await
            .as_deref()
            == Some("HTTP/1.1 200 OK")
    })
    .await;
}

#[tokio::test]
async fn the_hub_serves_at_most_max_connections_at_once() {
    let app = TestApp::spawn_with(|c| {
        c.security.header_read_timeout_secs = 3;
        c.security.max_connections = 4;
    })
    .await;
    the_connection_cap_holds_the_next_client_until_a_slot_frees(app.addr, 4, "/healthz").await;
}

#[tokio::test]
async fn the_agent_closes_slow_header_connections_and_keeps_answering_health() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start_with_env(
        &caddy,
        None,
        &[("GATEHOUSE_AGENT_HEADER_READ_TIMEOUT_SECS", "2")],
    )
    .await;
    let addr = agent.addr;
    slow_clients_are_closed_while_health_answers(addr, HTTP_HEAD, || async move {
        status_line(addr, "/health", Duration::from_secs(5))
            .await
            .as_deref()
            == Some("HTTP/1.1 200 OK")
    })
    .await;
}

#[tokio::test]
async fn the_agent_serves_at_most_max_connections_at_once() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start_with_env(
        &caddy,
        None,
        &[
            ("GATEHOUSE_AGENT_HEADER_READ_TIMEOUT_SECS", "3"),
            ("GATEHOUSE_AGENT_MAX_CONNECTIONS", "4"),
        ],
    )
    .await;
    the_connection_cap_holds_the_next_client_until_a_slot_frees(agent.addr, 4, "/health").await;
}

#[tokio::test]
async fn the_agent_over_https_closes_slow_handshakes_and_keeps_answering_health() {
    let caddy = Caddy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("agent.pem"), dir.path().join("agent.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let agent = AgentProc::start_with_env(
        &caddy,
        Some((&cert_path, &key_path)),
        &[("GATEHOUSE_AGENT_HEADER_READ_TIMEOUT_SECS", "2")],
    )
    .await;
    let (agent, url) = (&agent, format!("{}/health", agent.url()));
    // The handshake never completes, so it meets the handshake deadline, the TLS listener's
    // form of the header-read timeout.
    slow_clients_are_closed_while_health_answers(agent.addr, TLS_HEAD, || {
        let url = url.clone();
        async move {
            agent
                .probe()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
}

// ---- Bans and API tokens ------------------------------------------------------------------

/// Bob, a `user` with an API token made on his account page; returns his id and the token.
async fn bob_with_a_token(app: &TestApp) -> (i64, String) {
    let bob = app.add_user("bob@example.com", Role::User).await;
    let browser = app.visitor();
    let signed_in = browser.login("bob@example.com", USER_PASSWORD).await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.body
    );
    let token = make_token(&browser, USER_PASSWORD, "ci", "read").await;
    let api = Api::new(app.addr, Some(&token));
    assert_eq!(api.get("/api/v1/vhosts").await.status, StatusCode::OK);
    (bob, token)
}

async fn tokens_of(app: &TestApp, user: i64) -> usize {
    app.state
        .db
        .run(move |c| api_tokens::list_for_user(c, user))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_ban_on_the_users_page_revokes_api_tokens_and_an_unban_does_not_bring_them_back() {
    let (app, _) = common::app_with_admin().await;
    let (bob, token) = bob_with_a_token(&app).await;

    let banned = app
        .post_form(
            &format!("/users/{bob}/ban"),
            &[("reason", "leaked a token")],
        )
        .await;
    assert_eq!(banned.status, StatusCode::OK, "{}", banned.body);
    assert_eq!(tokens_of(&app, bob).await, 0);
    let unbanned = app.post_form(&format!("/users/{bob}/unban"), &[]).await;
    assert_eq!(unbanned.status, StatusCode::OK, "{}", unbanned.body);

    let api = Api::new(app.addr, Some(&token));
    assert_eq!(
        api.get("/api/v1/vhosts").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(tokens_of(&app, bob).await, 0);
    assert!(
        app.audit_actions()
            .await
            .contains(&"api_token_revoked".to_string())
    );
}

#[tokio::test]
async fn a_ban_from_the_cli_revokes_api_tokens_and_an_unban_does_not_bring_them_back() {
    let app = TestApp::spawn_with(|c| c.security.login_attempts_per_minute = 1000).await;
    let (bob, token) = bob_with_a_token(&app).await;

    for args in [
        &[
            "user",
            "ban",
            "bob@example.com",
            "--reason",
            "leaked a token",
        ][..],
        &["user", "unban", "bob@example.com"][..],
    ] {
        let out = common::binary::gatehouse()
            .args(args)
            .env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let api = Api::new(app.addr, Some(&token));
    assert_eq!(
        api.get("/api/v1/vhosts").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(tokens_of(&app, bob).await, 0);
}

// ---- Agent URLs with credentials ------------------------------------------------------------

#[tokio::test]
async fn an_agent_url_with_a_user_and_password_is_refused_next_to_the_field_without_echoing_the_password()
 {
    let app = common::fleet::hub(|_| {}).await;
    let typed = "http://admin:hunter2@127.0.0.1:7070";
    let page = app
        .post_form(
            "/agents",
            &[
                ("name", "edge-1"),
                ("url", typed),
                ("token", common::fleet::AGENT_TOKEN),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text("#url-error").contains("user name and password"));
    // Kept as typed but for the secret, with everything else in the form.
    assert_eq!(
        page.attr("#url", "value").as_deref(),
        Some("http://***@127.0.0.1:7070")
    );
    assert_eq!(page.attr("#name", "value").as_deref(), Some("edge-1"));
    assert!(!page.body.contains("hunter2"));
    let stored = app
        .state
        .db
        .run(|c| gatehouse::db::agents::list(c))
        .await
        .unwrap();
    assert!(stored.is_empty());
}

#[tokio::test]
async fn an_agent_url_stored_with_a_password_before_is_never_shown_in_the_clear() {
    let app = common::fleet::hub(|_| {}).await;
    let id = app
        .state
        .db
        .run(|c| {
            Ok(gatehouse::db::agents::insert(
                c,
                "old-edge",
                "http://admin:hunter2@127.0.0.1:9",
                &gatehouse::config::Secret::new(common::fleet::AGENT_TOKEN),
                false,
                &Default::default(),
            )
            .unwrap())
        })
        .await
        .unwrap();
    let list = app.get("/agents").await;
    assert_eq!(
        list.text("article.agent-row[data-agent=\"old-edge\"] .agent-url"),
        "http://***@127.0.0.1:9"
    );
    let edit = app.get(&format!("/agents/{id}/edit")).await;
    assert_eq!(
        edit.attr("#url", "value").as_deref(),
        Some("http://***@127.0.0.1:9")
    );
    let export = app.get("/export.json").await;
    for page in [&list, &edit, &export] {
        assert!(!page.body.contains("hunter2"), "{}", page.body);
    }
}

#[test]
fn an_agent_url_with_a_password_in_the_config_file_stops_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatehouse.toml");
    std::fs::write(
        &file,
        "[[fleet.agents]]\nname = \"edge-1\"\nurl = \"http://admin:hunter2@10.0.0.5:7070\"\n\
         token = \"0123456789abcdef\"\n",
    )
    .unwrap();
    let out = common::binary::gatehouse()
        .args(["--config", file.to_str().unwrap(), "serve"])
        .env("GATEHOUSE_DATA_DIR", dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("fleet.agents") && stderr.contains("user name and password"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

// ---- Agent redirects --------------------------------------------------------------------------

/// A listener that only records whether anyone connected to it.
async fn tripwire() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = hit.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (addr, hit)
}

/// A server on loopback that answers `/health` as an agent would when `healthy`, and 302 to
/// `to` (with credentials in the address) for everything else.
async fn redirector(to: SocketAddr, healthy: bool) -> SocketAddr {
    use axum::http::header::LOCATION;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let elsewhere = move || async move {
        (
            StatusCode::FOUND,
            [(LOCATION, format!("http://thief:secret@{to}/steal"))],
        )
    };
    let health = move || async move {
        if healthy {
            axum::Json(serde_json::json!({
                "caddy": {"reachable": true, "version": "v2.6.2", "admin": "localhost:2019"},
                "applied_hash": null
            }))
            .into_response()
        } else {
            (
                StatusCode::FOUND,
                [(LOCATION, format!("http://thief:secret@{to}/health"))],
            )
                .into_response()
        }
    };
    let app = axum::Router::new()
        .route("/health", axum::routing::get(health))
        .fallback(elsewhere);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn agent_at(app: &TestApp, name: &str, addr: SocketAddr) -> i64 {
    common::fleet::add_agent_at(app, name, &format!("http://{addr}")).await
}

#[tokio::test]
async fn the_hub_never_follows_an_agents_redirect_and_says_why_it_failed() {
    use gatehouse::fleet::reconcile::{Sync, sync_agent};
    let app = common::fleet::hub(|c| c.fleet.reconcile_interval_secs = 3600).await;
    let (target, hit) = tripwire().await;

    // The health check is redirected.
    let id = agent_at(&app, "moved", redirector(target, false).await).await;
    let sync = sync_agent(&app.state.db, &app.state.fleet, &app.state.config, id)
        .await
        .unwrap();
    let Sync::Offline(why) = sync else {
        panic!("{sync:?}")
    };
    assert!(why.contains("redirect (302 to http://***@"), "{why}");
    let (_, error) = common::fleet::agent_row(&app, "moved").await;
    assert!(error.contains("does not follow"), "{error}");
    assert!(!error.contains("secret"), "{error}");

    // The health check answers, the push is redirected.
    let id = agent_at(&app, "pushy", redirector(target, true).await).await;
    let sync = sync_agent(&app.state.db, &app.state.fleet, &app.state.config, id)
        .await
        .unwrap();
    let Sync::Failed(why) = sync else {
        panic!("{sync:?}")
    };
    assert!(why.contains("redirect (302 to http://***@"), "{why}");

    // Give a connection that was under way every chance to land.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !hit.load(std::sync::atomic::Ordering::SeqCst),
        "the hub followed a redirect"
    );
}

// ---- Error pages are never cached -------------------------------------------------------------

#[tokio::test]
async fn every_error_page_is_sent_no_store() {
    let app = TestApp::spawn_with(|c| {
        c.security.login_attempts_per_minute = 1000;
        c.security.max_body_kib = 1;
    })
    .await;
    app.create_admin().await;
    let stranger = app.visitor();
    let wrong = stranger.login(ADMIN_EMAIL, "not the password").await;
    let csrf = stranger
        .post_form_without_csrf("/login", &[("email", ADMIN_EMAIL), ("password", "x")])
        .await;
    let fallback = stranger.get("/no/such/page").await;
    let fragment = stranger.get_htmx("/no/such/page").await;
    let method = stranger.get("/logout").await;
    let too_large = stranger
        .post_form("/login", &[("email", &"a".repeat(4096)), ("password", "x")])
        .await;
    let api = Api::new(app.addr, None).get("/api/v1/vhosts").await;
    app.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let missing = app.get("/vhosts/999999/edit").await;
    for (what, status, cache) in [
        (
            "wrong password",
            wrong.status,
            wrong.header("cache-control"),
        ),
        ("no CSRF token", csrf.status, csrf.header("cache-control")),
        (
            "fallback",
            fallback.status,
            fallback.header("cache-control"),
        ),
        (
            "htmx 404",
            fragment.status,
            fragment.header("cache-control"),
        ),
        (
            "wrong method",
            method.status,
            method.header("cache-control"),
        ),
        (
            "too large",
            too_large.status,
            too_large.header("cache-control"),
        ),
        (
            "missing site",
            missing.status,
            missing.header("cache-control"),
        ),
        (
            "API",
            api.status,
            api.headers
                .get("cache-control")
                .and_then(|v| v.to_str().ok()),
        ),
    ] {
        assert!(status.is_client_error(), "{what}: {status}");
        assert_eq!(cache, Some("no-store"), "{what} ({status})");
    }
    assert_eq!(
        (
            fallback.status,
            csrf.status,
            method.status,
            too_large.status
        ),
        (
            StatusCode::NOT_FOUND,
            StatusCode::FORBIDDEN,
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::PAYLOAD_TOO_LARGE
        )
    );
    // A real error page, not a bare status.
    assert_eq!(fallback.count("main"), 1, "{}", fallback.body);
}

// ---- What the audit log keeps of the email field -------------------------------------------

#[tokio::test]
async fn a_password_typed_into_the_email_field_never_reaches_the_audit_log() {
    let app = TestApp::spawn_with(|c| c.security.login_attempts_per_minute = 2).await;
    app.create_admin().await;
    let password_as_email = "correct horse battery staple";
    let stranger = app.visitor();
    // Refused as a wrong sign-in, then (over the limit of 2) as throttled.
    for _ in 0..3 {
        stranger.login(password_as_email, "whatever").await;
    }
    stranger.login("nobody@example.com", "whatever").await;

    let entries = app
        .state
        .db
        .run(|c| gatehouse::db::audit::list(c, None, None, 1000))
        .await
        .unwrap();
    let failed: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "login_failed" || e.action == "login_throttled")
        .collect();
    assert!(failed.len() >= 3, "{failed:?}");
    for e in &entries {
        let row = format!("{e:?}");
        assert!(!row.contains("horse"), "stored: {row}");
    }
    let typed: Vec<_> = failed.iter().filter_map(|e| e.email.as_deref()).collect();
    assert_eq!(typed, ["nobody@example.com"], "{failed:?}");
    assert!(
        failed
            .iter()
            .filter(|e| e.email.is_none())
            .all(|e| e.detail.contains("no email address")),
        "{failed:?}"
    );
}

// ---- File permissions ---------------------------------------------------------------------------

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn a_new_data_directory_is_0700_and_the_database_files_0600() {
    let app = TestApp::spawn().await;
    app.create_admin().await;
    let data = app.state.config.data_dir.clone();
    let db = app.db_path();
    assert_eq!(mode(&data), 0o700);
    for file in [
        "gatehouse.db",
        "gatehouse.db-wal",
        "gatehouse.db-shm",
        "secret.key",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(db, data.join("gatehouse.db"));
}

#[tokio::test]
async fn loose_permissions_on_existing_files_are_tightened_at_start_and_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An instance as an older version left it: everything readable by everyone.
    let out = common::binary::gatehouse()
        .args(["user", "add", "old@example.com"])
        .env("GATEHOUSE_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = data.join("gatehouse.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let wal = data.join("gatehouse.db-wal");
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o664)).unwrap();

    let port = common::free_port();
    let log = dir.path().join("serve.log");
    let mut serve = common::ChildGuard(
        common::binary::gatehouse()
            .arg("serve")
            .env("GATEHOUSE_DATA_DIR", &data)
            .env("GATEHOUSE_LISTEN", format!("127.0.0.1:{port}"))
            .env("GATEHOUSE_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut up = false;
    for _ in 0..100 {
        if status_line(addr, "/healthz", Duration::from_secs(2))
            .await
            .is_some()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "serve did not start: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    serve.terminate();

    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&db), 0o600);
    let logged = std::fs::read_to_string(&log).unwrap();
    let tightened: Vec<String> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("tightened permissions"))
        })
        .map(|l| {
            format!(
                "{} {}->{}",
                l["path"].as_str().unwrap_or(""),
                l["from"].as_str().unwrap_or(""),
                l["to"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        tightened,
        [
            format!("{} 755->700", data.display()),
            format!("{} 644->600", db.display()),
            format!("{} 664->600", wal.display()),
        ],
        "{logged}"
    );
}

// ---- Locking the admin out ----------------------------------------------------------------------

/// A browser whose requests reach the hub through the trusted proxy on 127.0.0.1 from `ip`,
/// keeping its cookies in `jar` (two of these on one jar are one browser on two networks).
fn browser_at(app: &TestApp, jar: &std::sync::Arc<reqwest::cookie::Jar>, ip: &str) -> Visitor {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-forwarded-for", ip.parse().unwrap());
    Visitor {
        addr: app.addr,
        http: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .unwrap(),
        setup_token: app.setup_token.clone(),
    }
}

fn new_jar() -> std::sync::Arc<reqwest::cookie::Jar> {
    std::sync::Arc::new(reqwest::cookie::Jar::default())
}

#[tokio::test]
async fn guessing_from_elsewhere_cannot_lock_the_admin_out_of_their_browsers_but_stays_limited() {
    let app = TestApp::spawn_with(|c| {
        c.security.login_attempts_per_minute = 3;
        c.security.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    app.create_admin().await;
    // The admin signs in at home once; that browser is remembered.
    let laptop = new_jar();
    let at_home = browser_at(&app, &laptop, "198.51.100.7");
    let secret = at_home.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    at_home.logout().await;

    // Someone guesses the admin's password from two addresses until the account is spent.
    for ip in ["203.0.113.1", "203.0.113.2"] {
        let attacker = browser_at(&app, &new_jar(), ip);
        for _ in 0..3 {
            let page = attacker.login(ADMIN_EMAIL, "a guess").await;
            assert_ne!(page.status, StatusCode::SEE_OTHER);
        }
    }
    // A new browser on their side is refused, even with the right password.
    let fresh = browser_at(&app, &new_jar(), "203.0.113.3");
    let refused = fresh.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.header("retry-after").is_some());
    assert!(refused.text("#form-error").contains("Too many attempts"));

    // The admin's laptop, now on another network, still gets in, second factor included:
    // its device cookie gives it its own limit.
    let travelling = browser_at(&app, &laptop, "192.0.2.44");
    let step = travelling.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(step.status, StatusCode::SEE_OTHER, "{}", step.body);
    assert_eq!(step.header("location"), Some("/login/2fa"));
    let done = travelling
        .second_factor(&common::totp_code(&secret, 1))
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(travelling.get("/").await.status, StatusCode::OK);

    // A new browser at home is spared too: the admin signed in from that address.
    let phone = browser_at(&app, &new_jar(), "198.51.100.7");
    let step = phone.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(step.status, StatusCode::SEE_OTHER, "{}", step.body);

    // The guessers stay limited, per address and on the account.
    let again = browser_at(&app, &new_jar(), "203.0.113.1")
        .login(ADMIN_EMAIL, ADMIN_PASSWORD)
        .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_remembered_browser_has_a_limit_of_its_own() {
    let app = TestApp::spawn_with(|c| {
        c.security.login_attempts_per_minute = 3;
        c.security.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    app.add_user("bob@example.com", Role::User).await;
    let jar = new_jar();
    let first = browser_at(&app, &jar, "198.51.100.7");
    let signed_in = first.login("bob@example.com", USER_PASSWORD).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let cookie = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gatehouse_device="))
        .expect("the browser is remembered")
        .to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/login"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    first.logout().await;
    // Whoever holds that browser still cannot guess faster than anyone else: it has its own
    // limit, from any address.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let elsewhere = browser_at(&app, &jar, &format!("192.0.2.{}", 10 + i));
        statuses.push(elsewhere.login("bob@example.com", "a guess").await.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}
