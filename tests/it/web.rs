//! The web shell through real HTTP: health, fragment-or-page, static caching, errors,
//! security headers, body limits and the first-run setup.

use crate::common;

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use gatehouse::db::{audit, users};
use reqwest::StatusCode;

#[tokio::test]
async fn healthz_reports_the_database() {
    let app = TestApp::spawn().await;
    let page = app.healthz().await;
    assert_eq!(page.status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(json["status"], "ok");
    assert_eq!(json["database"], "ok");
}

#[tokio::test]
async fn a_plain_request_gets_the_layout_and_htmx_gets_the_fragment() {
    let app = TestApp::spawn().await;
    let path = format!("/setup?token={}", app.setup_token);

    let page = app.get(&path).await;
    assert_eq!(page.count("header.topbar nav.nav a"), 1);
    assert_eq!(page.count("#main #setup form"), 1);
    assert_eq!(page.header("vary"), Some("HX-Request"));

    let fragment = app.get_htmx(&path).await;
    assert_eq!(
        fragment.count("header.topbar"),
        0,
        "a fragment has no layout"
    );
    assert_eq!(fragment.count("#setup form"), 1);
    assert_eq!(fragment.header("vary"), Some("HX-Request"));

    let boosted = Page::from(
        app.http
            .get(app.url(&path))
            .header("HX-Request", "true")
            .header("HX-Boosted", "true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        boosted.count("header.topbar"),
        1,
        "boosted navigation needs the whole page"
    );
}

use crate::common::Page;

#[tokio::test]
async fn the_layout_loads_pinned_htmx_and_configures_it_without_inline_script() {
    let app = TestApp::spawn().await;
    let page = app.get(&format!("/setup?token={}", app.setup_token)).await;
    let scripts = page.html();
    let srcs: Vec<_> = scripts
        .select(&common::selector("script"))
        .map(|s| {
            (
                s.value().attr("src").map(str::to_string),
                s.text().collect::<String>(),
            )
        })
        .collect();
    assert!(
        srcs.iter()
            .all(|(src, body)| src.is_some() && body.trim().is_empty()),
        "no inline script: {srcs:?}"
    );
    assert!(srcs.iter().any(|(s, _)| {
        s.as_deref()
            .unwrap()
            .starts_with("/static/vendor/htmx-2.0.11.min.js?v=")
    }));
    assert!(srcs.iter().any(|(s, _)| {
        s.as_deref()
            .unwrap()
            .starts_with("/static/vendor/htmx-ext-sse-2.2.4.min.js?v=")
    }));
    let config = page
        .attr("meta[name=htmx-config]", "content")
        .expect("htmx config meta");
    let config: serde_json::Value = serde_json::from_str(&config).expect("htmx config is JSON");
    assert_eq!(config["allowEval"], false);
    assert_eq!(config["includeIndicatorStyles"], false);
}

#[tokio::test]
async fn static_files_are_cached_by_version_and_revalidated_by_etag() {
    let app = TestApp::spawn().await;
    let page = app.get(&format!("/setup?token={}", app.setup_token)).await;
    let css = page.attr("link[rel=stylesheet]", "href").unwrap();

    let versioned = app.get(&css).await;
    assert_eq!(versioned.status, StatusCode::OK);
    assert_eq!(
        versioned.header("content-type"),
        Some("text/css; charset=utf-8")
    );
    assert_eq!(
        versioned.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    let plain = app.get("/static/app.css").await;
    assert_eq!(
        plain.header("cache-control"),
        Some("public, max-age=0, must-revalidate")
    );
    let etag = plain.header("etag").unwrap().to_string();
    let revalidated = app
        .http
        .get(app.url("/static/app.css"))
        .header("If-None-Match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);

    assert_eq!(
        app.get("/static/../Cargo.toml").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/static/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_pages_get_an_error_page_and_htmx_gets_a_toast() {
    let app = TestApp::spawn().await;
    let page = app.get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert_eq!(page.text(".error-page h1"), "Not Found");
    assert_eq!(page.count("header.topbar"), 1);

    let toast = app.get_htmx("/no/such/page").await;
    assert_eq!(toast.status, StatusCode::NOT_FOUND);
    assert_eq!(toast.text(".toast.toast-error"), "not found");
    assert_eq!(toast.header("hx-retarget"), Some("#toasts"));
    assert_eq!(toast.header("hx-reswap"), Some("beforeend"));
    assert_eq!(toast.count("header.topbar"), 0);
}

#[tokio::test]
async fn a_database_failure_is_a_generic_500_never_a_404_or_a_leak() {
    let app = TestApp::spawn().await;
    app.state
        .db
        .run(|c| {
            Ok(c.execute_batch("DROP TABLE backup_codes; DROP TABLE audit_log; DROP TABLE users")?)
        })
        .await
        .unwrap();
    let page = app.get(&format!("/setup?token={}", app.setup_token)).await;
    assert_eq!(page.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(page.text(".error-page h1"), "Internal Server Error");
    assert!(!page.body.to_lowercase().contains("sqlite") && !page.body.contains("no such table"));
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    for path in ["/", "/healthz", "/static/app.css", "/missing"] {
        let page = app.get(path).await;
        let csp = page
            .header("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        let script_src = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap();
        assert_eq!(script_src, "script-src 'self'", "{path}");
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(page.header("x-frame-options"), Some("DENY"));
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    }
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::spawn_with(|c| c.security.max_body_kib = 4).await;
    let big = "x".repeat(8 * 1024);
    let page = app.submit_setup("Ada", ADMIN_EMAIL, &big, &big).await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(page.text(".error-page h1"), "Payload Too Large");
    assert!(
        page.header("content-security-policy").is_some(),
        "limits answer with the security headers too"
    );
    assert_eq!(app.state.db.run(|c| users::count(c)).await.unwrap(), 0);
}

#[tokio::test]
async fn setup_is_hidden_without_the_right_token() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/setup").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.setup_page("wrong").await.status, StatusCode::NOT_FOUND);
    let forged = app
        .post_form(
            "/setup",
            &[
                ("token", "wrong"),
                ("name", "Eve"),
                ("email", "eve@example.com"),
                ("password", ADMIN_PASSWORD),
                ("password_confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::NOT_FOUND);
    assert_eq!(app.state.db.run(|c| users::count(c)).await.unwrap(), 0);
    assert_eq!(
        app.setup_page(&app.setup_token).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_refused_setup_form_keeps_the_input_and_says_why_beside_each_field() {
    let app = TestApp::spawn().await;
    let page = app.submit_setup("", "not-an-email", "short", "other").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(page.text("#name-error"), "Enter a name.");
    assert_eq!(page.text("#email-error"), "An email address needs an @.");
    assert_eq!(page.text("#password-error"), "Use at least 12 characters.");
    assert_eq!(
        page.attr("#email", "value").as_deref(),
        Some("not-an-email")
    );
    assert_eq!(page.attr("#email", "aria-invalid").as_deref(), Some("true"));
    assert_eq!(
        page.attr("input[name=token]", "value").as_deref(),
        Some(app.setup_token.as_str())
    );

    let mismatch = app
        .submit_setup("Ada", ADMIN_EMAIL, ADMIN_PASSWORD, "different password!")
        .await;
    assert_eq!(
        mismatch.text("#password_confirm-error"),
        "The two passwords differ."
    );
    assert_eq!(mismatch.attr("#name", "value").as_deref(), Some("Ada"));
    assert_eq!(app.state.db.run(|c| users::count(c)).await.unwrap(), 0);
}

#[tokio::test]
async fn setup_creates_one_admin_audits_it_and_then_disappears() {
    let app = TestApp::spawn().await;
    let page = app
        .submit_setup(
            "Ada Admin",
            " Admin@Example.com ",
            ADMIN_PASSWORD,
            ADMIN_PASSWORD,
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.text("#setup-done strong"), ADMIN_EMAIL);

    let (all, events) = app
        .state
        .db
        .run(|c| Ok((users::list(c)?, audit::list(c, None, None, 10)?)))
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].is_admin());
    assert_eq!(all[0].email, ADMIN_EMAIL);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "user_created");

    assert_eq!(
        app.setup_page(&app.setup_token).await.status,
        StatusCode::NOT_FOUND
    );
    let again = app
        .submit_setup("Eve", "eve@example.com", ADMIN_PASSWORD, ADMIN_PASSWORD)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(app.state.db.run(|c| users::count(c)).await.unwrap(), 1);
}

#[tokio::test]
async fn an_account_made_from_the_cli_closes_setup() {
    let app = TestApp::spawn().await;
    app.state
        .db
        .run(|c| {
            Ok(c.execute(
                "INSERT INTO users (name, email, password_hash, role) VALUES ('Cli', 'cli@example.com', 'x', 'admin')",
                [],
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        app.setup_page(&app.setup_token).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn concurrent_setups_create_exactly_one_admin() {
    let app = TestApp::spawn().await;
    let attempts = (0..4).map(|i| {
        let email = format!("admin{i}@example.com");
        let app = &app;
        async move {
            app.submit_setup("Racer", &email, ADMIN_PASSWORD, ADMIN_PASSWORD)
                .await
                .status
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(app.state.db.run(|c| users::count(c)).await.unwrap(), 1);
}

/// The JSON API's half of the authorization matrix (the cookie half is in tests/it/accounts.rs):
/// every API route of the table, every method, with no credential, with a signed-in admin's
/// session cookie, with a `user`'s read and write tokens aimed at someone else's site, and
/// with an admin's write token.
#[tokio::test]
async fn every_api_route_enforces_its_token_scope_and_ownership() {
    use gatehouse::db::api_tokens::{self, Scope};
    use gatehouse::domain::Role;
    use gatehouse::web::{Access, route_table};
    use reqwest::Method;

    let (app, _) = common::app_with_admin().await;
    let victim = app.add_user("victim@example.com", Role::User).await;
    let bob = app.add_user("bob@example.com", Role::User).await;
    // Tokens straight from storage: the account page that makes them is tested in tests/it/api.rs.
    let (admin_write, bob_read, bob_write, site) = app
        .state
        .db
        .run(move |c| {
            let admin = users::find_by_email(c, ADMIN_EMAIL)?.unwrap().id;
            let token = |user, scope| api_tokens::create(c, user, "matrix", scope, None);
            let tokens = (
                token(admin, Scope::Write)?.plain,
                token(bob, Scope::Read)?.plain,
                token(bob, Scope::Write)?.plain,
            );
            let v =
                crate::common::stored_site(c, "victim.example.com", victim, "victim@example.com");
            Ok((tokens.0, tokens.1, tokens.2, v.id))
        })
        .await
        .unwrap();

    let table = route_table(&app.state);
    let mut routes: Vec<_> = table
        .iter()
        .filter(|r| matches!(r.access, Access::Token(_)))
        .flat_map(|r| r.methods.iter().map(move |m| (r, m.clone())))
        .collect();
    assert!(routes.len() >= 7, "every API endpoint is in the table");
    // Deleting last, so the site is there for every other request; reverting after it, so
    // undoing the site's creation removes nothing another request needs.
    routes.sort_by_key(|(r, m)| (r.path.ends_with("/revert"), *m == Method::DELETE));
    let http = reqwest::Client::new();
    for (route, method) in routes {
        let path = route
            .path
            .replace("{id}", &site.to_string())
            .replace("{token}", "0123456789abcdef");
        // A deploy to follow is named by a token only its own user has: this one is nobody's.
        let names_a_deploy = route.path.contains("{token}");
        let names_a_site = route.path.contains("{id}") || names_a_deploy;
        // Reverting is an admin's, whichever site the entry is about.
        let admins_only = route.path.ends_with("/revert");
        let send = |token: Option<&str>| {
            let mut request = http.request(method.clone(), app.url(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            if method != Method::GET && method != Method::DELETE {
                request = request.json(&serde_json::json!({}));
            }
            async move { request.send().await.unwrap().status() }
        };
        let what = format!("{method} {path}");

        let anonymous = http
            .request(method.clone(), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            anonymous.status(),
            StatusCode::UNAUTHORIZED,
            "anonymous {what}"
        );
        assert!(anonymous.headers().contains_key("www-authenticate"));

        // The signed-in admin's browser: its session cookie is no API credential.
        let mut with_cookie = app.http.request(method.clone(), app.url(&path));
        if method != Method::GET && method != Method::DELETE {
            with_cookie = with_cookie.json(&serde_json::json!({}));
        }
        let cookie = with_cookie.send().await.unwrap().status();
        assert!(
            matches!(cookie, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "cookie {what}: {cookie}"
        );

        let writes = route.access == Access::Token(Scope::Write);
        let read = send(Some(&bob_read)).await;
        let expected = match (writes, names_a_site) {
            (true, _) => StatusCode::FORBIDDEN,
            (false, true) => StatusCode::NOT_FOUND,
            (false, false) => StatusCode::OK,
        };
        assert_eq!(read, expected, "read token {what}");

        let write = send(Some(&bob_write)).await;
        let expected = match (names_a_site, method == Method::POST) {
            _ if admins_only => StatusCode::FORBIDDEN,
            (true, _) => StatusCode::NOT_FOUND,
            // An empty site is refused for its values, not for who asks.
            (false, true) => StatusCode::UNPROCESSABLE_ENTITY,
            (false, false) => StatusCode::OK,
        };
        assert_eq!(write, expected, "another user's write token {what}");

        let admin = send(Some(&admin_write)).await;
        // The entry being reverted is the site's creation, and the site was deleted above.
        assert!(
            admin.is_success()
                || admin == StatusCode::UNPROCESSABLE_ENTITY
                || (admins_only && admin == StatusCode::CONFLICT)
                || (names_a_deploy && admin == StatusCode::NOT_FOUND),
            "admin {what}: {admin}"
        );
    }
    let left = app
        .state
        .db
        .run(|c| gatehouse::db::vhosts::list(c, &Default::default()))
        .await
        .unwrap();
    assert!(
        left.is_empty(),
        "the admin's token deleted the site at the end"
    );
}

#[tokio::test]
async fn api_errors_outside_any_handler_are_json_too() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    for (method, path, status, code) in [
        (
            reqwest::Method::GET,
            "/api/v1/nothing-here",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::PUT,
            "/api/v1/vhosts",
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ] {
        let response = http
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{method} {path}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{method} {path}");
    }
}

#[tokio::test]
async fn error_pages_keep_the_signed_in_header_with_a_way_back() {
    let (app, _) = common::app_with_admin().await;
    let (user, _) = common::signed_in_user(&app, "tenant@example.com").await;
    for (who, visitor, path, status) in [
        ("a user", &user, "/users", StatusCode::FORBIDDEN),
        ("a user", &user, "/no-such-page", StatusCode::NOT_FOUND),
        (
            "a user",
            &user,
            "/vhosts/999999/edit",
            StatusCode::NOT_FOUND,
        ),
        ("an admin", &*app, "/no-such-page", StatusCode::NOT_FOUND),
    ] {
        let page = visitor.get(path).await;
        assert_eq!(page.status, status, "{who} {path}");
        assert_eq!(page.count(".error-page .status-code"), 1, "{}", page.body);
        assert_eq!(
            page.count("nav.nav a[href='/vhosts']"),
            1,
            "{who} at {path} keeps their menu: {}",
            page.body
        );
        assert_eq!(
            page.count("form.nav-end[action='/logout'] input[name=csrf_token]"),
            1
        );
        assert_eq!(page.count("nav.nav a[href='/login']"), 0);
    }
    let admin_menu = app.get("/no-such-page").await;
    assert_eq!(admin_menu.count("nav.nav a[href='/users']"), 1);
    let user_menu = user.get("/users").await;
    assert_eq!(
        user_menu.count("nav.nav a[href='/users']"),
        0,
        "a user's own menu"
    );

    // Signed out, the error page offers sign-in.
    let anonymous = app.visitor().get("/no-such-page").await;
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    assert_eq!(anonymous.count("nav.nav a[href='/login']"), 1);
    assert_eq!(anonymous.count("form.nav-end"), 0);
}
