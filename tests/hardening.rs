//! Web hardening: slow requests time out, and markup typed into any field a person controls
//! is shown as text on every page that displays it, never run.

mod common;

use common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use reqwest::StatusCode;
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

/// The only scripts on a page are the two vendored files.
fn only_our_scripts(page: &common::Page) {
    let doc = page.html();
    let scripts: Vec<_> = doc
        .select(&common::selector("script"))
        .map(|s| s.value().attr("src").unwrap_or("inline").to_string())
        .collect();
    assert_eq!(scripts.len(), 2, "{scripts:?}");
    assert!(
        scripts.iter().all(|s| s.starts_with("/static/vendor/")),
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
    let app = TestApp::spawn_with(|c| c.security.login_attempts_per_minute = 1000).await;
    app.create_admin().await;
    app.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
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

    // A sign-in attempt with markup for an email lands in the audit log as text.
    app.visitor().login(evil, "whatever password").await;
    let audit = app.get("/audit").await;
    only_our_scripts(&audit);
    assert!(
        audit
            .texts("#audit-table td")
            .iter()
            .any(|t| t.contains("<img src=x onerror=alert(2)>"))
    );
}
