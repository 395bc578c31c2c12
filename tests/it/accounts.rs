//! Accounts and security through real HTTP against a real hub and SQLite file: sign-in,
//! TOTP and backup codes, rate limits, bans, CSRF, sessions, the users and audit pages, and
//! the authorization of every route in the route table.

use crate::common;
use crate::common::location;

use crate::common::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, USER_PASSWORD, Visitor, app_with_admin, signed_in_user,
    totp_code,
};
use gatehouse::db::{sessions, users};
use gatehouse::domain::Role;
use gatehouse::web::{Access, route_table};
use reqwest::StatusCode;

#[tokio::test]
async fn a_wrong_password_is_refused_without_saying_whether_the_account_exists() {
    let app = TestApp::spawn().await;
    app.add_user("bob@example.com", Role::User).await;
    let wrong = app
        .login("bob@example.com", "not the password at all")
        .await;
    let unknown = app
        .login("nobody@example.com", "not the password at all")
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(wrong.text("#form-error"), unknown.text("#form-error"));
    assert_eq!(
        wrong.attr("#email", "value").as_deref(),
        Some("bob@example.com"),
        "the email is kept"
    );
    assert_eq!(
        wrong.attr("#password", "value").as_deref(),
        Some(""),
        "the password is not echoed"
    );
    let actions = app.audit_actions().await;
    assert_eq!(actions.iter().filter(|a| *a == "login_failed").count(), 2);
}

#[tokio::test]
async fn signing_in_renews_the_session_id_and_sets_safe_cookies() {
    let app = TestApp::spawn().await;
    app.add_user("bob@example.com", Role::User).await;
    let before = app.get("/login").await;
    let anon_cookie = before.header("set-cookie").unwrap().to_string();
    assert!(
        anon_cookie.contains("HttpOnly") && anon_cookie.contains("SameSite=Lax"),
        "{anon_cookie}"
    );
    assert!(
        !anon_cookie.contains("Secure"),
        "plain http public URL: no Secure flag"
    );
    let login = app.login("bob@example.com", USER_PASSWORD).await;
    assert_eq!(login.status, StatusCode::SEE_OTHER);
    let signed_in = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gatehouse_session="))
        .expect("a new session cookie at sign-in");
    let id = |c: &str| c.split(';').next().unwrap().to_string();
    assert_ne!(
        id(&anon_cookie),
        id(signed_in),
        "the session id changes at sign-in"
    );
    assert_eq!(app.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let app = TestApp::spawn_with(|c| c.public_url = "https://gatehouse.example.com".into()).await;
    let cookie = app
        .get("/login")
        .await
        .header("set-cookie")
        .unwrap()
        .to_string();
    assert!(cookie.contains("Secure"), "{cookie}");
}

#[tokio::test]
async fn a_required_role_cannot_reach_any_page_before_enrolling() {
    let app = TestApp::spawn_with(|c| c.security.login_attempts_per_minute = 1000).await;
    app.create_admin().await;
    assert_eq!(
        app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    for route in route_table(&app.state) {
        if route.access < Access::User {
            continue;
        }
        let path = route.path.replace("{id}", "1");
        for method in route.methods {
            let page = if *method == reqwest::Method::GET {
                app.get(&path).await
            } else {
                app.post_form(&path, &[]).await
            };
            assert_eq!(page.status, StatusCode::SEE_OTHER, "{method} {path}");
            assert_eq!(location(&page), "/account/2fa", "{method} {path}");
        }
    }
    let enrol = app.get("/account/2fa").await;
    assert_eq!(enrol.status, StatusCode::OK);
    assert_eq!(enrol.count("#enrol-required"), 1);
    let qr = enrol.attr("img#totp-qr", "src").unwrap();
    assert!(
        qr.starts_with("data:image/png;base64,iVBORw0KGgo"),
        "an inline PNG QR code"
    );
    assert_eq!(
        enrol.text("#totp-secret").len(),
        32,
        "the secret is shown as text too"
    );
}

#[tokio::test]
async fn enrolment_needs_a_valid_code_and_shows_ten_backup_codes_once() {
    let app = TestApp::spawn().await;
    app.create_admin().await;
    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let secret = app.start_enrolment().await;
    let wrong = app.confirm_enrolment("000000").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong
            .text("#code-error")
            .starts_with("That code is not right")
    );
    assert_eq!(
        wrong.text("#totp-secret"),
        secret,
        "the same secret is kept while retrying"
    );
    let done = app.confirm_enrolment(&totp_code(&secret, 0)).await;
    let codes = done.texts("li.backup-code");
    assert_eq!(codes.len(), 10);
    assert_eq!(
        done.header("cache-control"),
        Some("no-store"),
        "one-time secrets are never cached"
    );
    assert!(codes.iter().all(|c| c.len() == 9 && &c[4..5] == "-"));
    let stored = app
        .state
        .db
        .run(|c| {
            Ok(c.query_row(
                "SELECT group_concat(code_hash) FROM backup_codes",
                [],
                |r| r.get::<_, String>(0),
            )?)
        })
        .await
        .unwrap();
    assert!(
        codes.iter().all(|c| !stored.contains(c.as_str())),
        "only hashes are stored"
    );
    assert_eq!(
        app.get("/").await.status,
        StatusCode::OK,
        "enrolled: pages open"
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&"2fa_enrolled".to_string())
    );
}

#[tokio::test]
async fn totp_sign_in_rejects_wrong_and_replayed_codes() {
    let (app, secret) = app_with_admin().await;
    app.logout().await;
    let step = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(location(&step), "/login/2fa");
    assert_eq!(
        app.get("/").await.status,
        StatusCode::SEE_OTHER,
        "the password alone does not sign in"
    );

    let wrong = app.second_factor("123456").await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong
            .text("#code-error")
            .starts_with("That code is not right")
    );

    // Enrolment spent the current step; the next one is inside the ±1 window.
    let code = totp_code(&secret, 1);
    let ok = app.second_factor(&code).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    assert_eq!(app.get("/").await.status, StatusCode::OK);

    app.logout().await;
    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let replay = app.second_factor(&code).await;
    assert_eq!(replay.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        replay.text("#code-error").contains("already used"),
        "{}",
        replay.text("#code-error")
    );
    let stale = app.second_factor(&totp_code(&secret, -1)).await;
    assert_eq!(
        stale.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an older step than the last used one is a replay too"
    );
}

#[tokio::test]
async fn a_backup_code_signs_in_once() {
    let app = TestApp::spawn_with(|c| c.security.login_attempts_per_minute = 1000).await;
    app.create_admin().await;
    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let secret = app.start_enrolment().await;
    let codes = app
        .confirm_enrolment(&totp_code(&secret, 0))
        .await
        .texts("li.backup-code");
    app.logout().await;

    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let used = app
        .second_factor(&codes[3].to_lowercase().replace('-', " "))
        .await;
    assert_eq!(
        used.status,
        StatusCode::SEE_OTHER,
        "typed loosely, the code still works"
    );
    let account = app.get("/account").await;
    assert!(
        account
            .text("#totp-status")
            .contains("9 unused backup codes")
    );
    app.logout().await;

    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let reused = app.second_factor(&codes[3]).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        app.audit_actions()
            .await
            .contains(&"backup_code_used".to_string())
    );
}

#[tokio::test]
async fn the_sixth_attempt_in_a_minute_is_refused_even_with_the_right_password() {
    let app = TestApp::spawn().await;
    app.add_user("bob@example.com", Role::User).await;
    for _ in 0..5 {
        assert_eq!(
            app.login("bob@example.com", "wrong wrong wrong")
                .await
                .status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    let sixth = app.login("bob@example.com", USER_PASSWORD).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = sixth.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    assert!(
        sixth
            .text("#form-error")
            .contains(&format!("wait {wait} seconds")),
        "{}",
        sixth.text("#form-error")
    );
    assert_eq!(
        sixth.attr("#email", "value").as_deref(),
        Some("bob@example.com")
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&"login_throttled".to_string())
    );
    assert_eq!(
        app.get("/").await.status,
        StatusCode::SEE_OTHER,
        "not signed in"
    );
}

#[tokio::test]
async fn right_sign_ins_do_not_count_against_the_limit_so_a_team_behind_one_address_gets_in() {
    let app = TestApp::spawn().await;
    app.create_admin().await;
    let secret = app.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.logout().await;
    for i in 0..4 {
        app.add_user(&format!("member{i}@example.com"), Role::User)
            .await;
    }
    // Eight sign-ins from one address (the limit is five a minute): every one gets in.
    for round in 0..2 {
        for i in 0..4 {
            let someone = app.visitor();
            let page = someone
                .login(&format!("member{i}@example.com"), USER_PASSWORD)
                .await;
            assert_eq!(
                page.status,
                StatusCode::SEE_OTHER,
                "round {round}, member {i}"
            );
        }
    }
    // The second factor too: four wrong codes and a right one leave four failures on the
    // address, so the next wrong code is told it is wrong, and only the one after is refused.
    let first = app.visitor();
    assert_eq!(
        first.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    for _ in 0..4 {
        assert_eq!(
            first.second_factor("000000").await.status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    let passed = first.second_factor(&totp_code(&secret, 1)).await;
    assert_eq!(passed.status, StatusCode::SEE_OTHER, "{}", passed.body);
    let second = app.visitor();
    assert_eq!(
        second.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        second.second_factor("000000").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        second.second_factor("000000").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Failures still count: five wrong, and the sixth is refused even when right.
    for _ in 0..5 {
        app.visitor()
            .login("member0@example.com", "wrong wrong wrong")
            .await;
    }
    assert_eq!(
        app.visitor()
            .login("member1@example.com", USER_PASSWORD)
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS,
        "the address is spent by failures"
    );
}

#[tokio::test]
async fn totp_attempts_are_rate_limited_too() {
    let app = TestApp::spawn().await;
    app.create_admin().await;
    let secret = app.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    app.logout().await;
    app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    for _ in 0..5 {
        assert_eq!(
            app.second_factor("000000").await.status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    let refused = app.second_factor(&totp_code(&secret, 1)).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the right code is refused too"
    );
    assert!(refused.text("#form-error").contains("seconds"));
}

#[tokio::test]
async fn a_banned_users_other_session_gets_the_login_page_on_its_next_request() {
    let (app, _) = app_with_admin().await;
    let (phone, bob) = signed_in_user(&app, "bob@example.com").await;
    let (laptop, _) = (app.visitor(), ());
    assert_eq!(
        laptop.login("bob@example.com", USER_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(phone.get("/").await.status, StatusCode::OK);

    let banned = app
        .post_form(&format!("/users/{bob}/ban"), &[("reason", "posting spam")])
        .await;
    assert_eq!(banned.status, StatusCode::OK, "{}", banned.body);
    assert!(banned.text("#notice").contains("banned"));

    for session in [&phone, &laptop] {
        let next = session.get("/account").await;
        assert_eq!(next.status, StatusCode::SEE_OTHER);
        assert_eq!(location(&next), "/login?next=%2Faccount");
        let login = session.get(location(&next)).await;
        assert_eq!(login.count("#login form"), 1);
        // Told they were signed out, once, and never why.
        assert_eq!(
            login.text("#login #signed-out"),
            "You were signed out. Sign in again to go on."
        );
        assert!(!login.body.contains("spam") && !login.body.contains("ban"));
        assert_eq!(session.get(location(&next)).await.count("#signed-out"), 0);
    }
    assert_eq!(
        app.visitor().get("/login").await.count("#signed-out"),
        0,
        "a browser that was never signed in is told nothing"
    );
    let again = phone.login("bob@example.com", USER_PASSWORD).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.text("#form-error").contains("suspended"));

    app.post_form(&format!("/users/{bob}/unban"), &[]).await;
    assert_eq!(
        phone.login("bob@example.com", USER_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_ban_from_the_cli_also_ends_live_sessions() {
    let (app, _) = app_with_admin().await;
    let (phone, bob) = signed_in_user(&app, "bob@example.com").await;
    app.state
        .db
        .run(move |c| users::set_banned(c, bob, Some("cli")))
        .await
        .unwrap();
    assert_eq!(location(&phone.get("/").await), "/login?next=%2F");
}

#[tokio::test]
async fn state_changing_requests_without_the_csrf_token_get_403() {
    let (app, _) = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let fields = [
        ("current", USER_PASSWORD),
        ("new", "a brand new password"),
        ("confirm", "a brand new password"),
    ];
    let missing = bob
        .post_form_without_csrf("/account/password", &fields)
        .await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let mut forged = fields.to_vec();
    forged.push(("csrf_token", "0000"));
    assert_eq!(
        bob.post_form_without_csrf("/account/password", &forged)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_form_without_csrf("/users", &[("name", "x"), ("email", "x@example.com")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // The right token in the htmx header works; from another origin it does not.
    let token = bob.csrf().await;
    let via_header = bob.post_htmx("/account/password", &fields).await;
    assert_eq!(via_header.status, StatusCode::OK);
    let cross = bob
        .http
        .post(bob.url("/account/sessions/revoke-others"))
        .header("X-CSRF-Token", &token)
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_route_enforces_its_access_level() {
    let (app, _) = app_with_admin().await;
    let (user, _) = signed_in_user(&app, "bob@example.com").await;
    let (banned, banned_id) = signed_in_user(&app, "eve@example.com").await;
    app.state
        .db
        .run(move |c| users::set_banned(c, banned_id, Some("test")))
        .await
        .unwrap();
    let victim = app.add_user("victim@example.com", Role::User).await;
    let anonymous = app.visitor();
    let (other_site, other_entry) = app
        .state
        .db
        .run(move |c| {
            let v =
                crate::common::stored_site(c, "victim.example.com", victim, "victim@example.com");
            let entry = gatehouse::db::changelog::list(c, &Default::default())?[0].id;
            Ok((v.id, entry))
        })
        .await
        .unwrap();

    let table = route_table(&app.state);
    assert!(table.len() >= 20, "the table lists every route");
    // Sign-out last, so each visitor stays signed in for the rest.
    let mut routes: Vec<_> = table.iter().collect();
    routes.sort_by_key(|r| r.path == "/logout");
    for route in routes {
        // The API takes bearer tokens, never these cookie sessions: its own matrix is in
        // tests/it/web.rs (`every_api_route_enforces_its_token_scope_and_ownership`).
        if matches!(route.access, Access::Token(_)) {
            continue;
        }
        // Ids in vhost and changelog routes name another user's site and its history.
        let id = if route.path.starts_with("/vhosts/{id}") {
            other_site
        } else if route.path.starts_with("/changelog/{id}") {
            other_entry
        } else {
            victim
        };
        let someone_elses = id != victim && route.access == Access::User;
        let path = route
            .path
            .replace("{id}", &id.to_string())
            .replace("{*path}", "app.css");
        for method in route.methods {
            for (who, visitor) in [
                ("anonymous", &anonymous),
                ("banned", &banned),
                ("user", &user),
                ("admin", &*app),
            ] {
                let page = if *method == reqwest::Method::GET {
                    visitor.get(&path).await
                } else {
                    visitor.post_form(&path, &[]).await
                };
                let to_login = page.status == StatusCode::SEE_OTHER
                    && location(&page).starts_with("/login?next=");
                let denied = page.status == StatusCode::FORBIDDEN;
                let signed_in_as = match who {
                    "anonymous" | "banned" => None,
                    "user" => Some(false),
                    _ => Some(true),
                };
                let (expect_login, expect_denied) = match (route.access, signed_in_as) {
                    (Access::Public, _) => (false, false),
                    (_, None) => (true, false),
                    (Access::Admin, Some(false)) => (false, true),
                    _ => (false, false),
                };
                assert_eq!(
                    to_login,
                    expect_login,
                    "{who} {method} {path}: {} {}",
                    page.status,
                    location(&page)
                );
                assert_eq!(
                    denied, expect_denied,
                    "{who} {method} {path}: {}",
                    page.status
                );
                assert!(
                    !page.status.is_server_error(),
                    "{who} {method} {path}: {}",
                    page.status
                );
                if who == "user" && someone_elses {
                    assert_eq!(
                        page.status,
                        StatusCode::NOT_FOUND,
                        "{who} {method} {path}: another user's site is not found"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn an_admin_cannot_ban_demote_or_delete_themselves_or_the_last_admin() {
    let (app, _) = app_with_admin().await;
    let me = app
        .state
        .db
        .run(|c| users::find_by_email(c, ADMIN_EMAIL))
        .await
        .unwrap()
        .unwrap()
        .id;
    for (path, form) in [
        ("ban", vec![("reason", "oops")]),
        ("role", vec![("role", "user")]),
        ("delete", vec![]),
    ] {
        let page = app.post_form(&format!("/users/{me}/{path}"), &form).await;
        assert_eq!(page.status, StatusCode::CONFLICT, "{path}");
        assert!(
            page.text(".error-message").starts_with("You cannot"),
            "{path}"
        );
    }
    let me_after = app
        .state
        .db
        .run(move |c| users::find(c, me))
        .await
        .unwrap()
        .unwrap();
    assert!(me_after.is_admin() && !me_after.is_banned());

    // With a second admin, one may demote the other, but not the last one standing.
    let other = app.add_user("second@example.com", Role::Admin).await;
    assert_eq!(
        app.post_form(&format!("/users/{other}/role"), &[("role", "user")])
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.state.db.run(|c| users::count_admins(c)).await.unwrap(),
        1
    );
    assert!(
        app.audit_actions()
            .await
            .contains(&"role_changed".to_string())
    );
}

#[tokio::test]
async fn admins_create_users_with_a_one_time_password_shown_once() {
    let (app, _) = app_with_admin().await;
    let refused = app
        .post_form(
            "/users",
            &[
                ("name", "Carol"),
                ("email", "carol-at-example"),
                ("role", "user"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.text("#email-error"), "An email address needs an @.");
    assert_eq!(
        refused.attr("#new-user #name", "value").as_deref(),
        Some("Carol")
    );
    assert_eq!(
        refused.attr("#new-user #email", "value").as_deref(),
        Some("carol-at-example")
    );

    // Left empty, the password is generated: the browser must let the form go without one.
    let page = app.get("/users").await;
    assert_eq!(page.count("#new-user input[name=password]"), 1);
    assert_eq!(
        page.count("#new-user input[name=password][required]"),
        0,
        "{}",
        page.body
    );
    let created = app
        .post_form(
            "/users",
            &[
                ("name", "Carol"),
                ("email", "carol@example.com"),
                ("role", "user"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK);
    // Shown beside the form that asked for it, with a button to copy it.
    let one_time = created.text("#new-user #notice #one-time-password");
    assert_eq!(
        created.attr("#new-user #copy-one-time-password", "data-copy"),
        Some(one_time.clone())
    );
    assert_eq!(created.count("tr[data-user='carol@example.com']"), 1);
    assert_eq!(
        app.get("/users").await.count("#one-time-password"),
        0,
        "shown only once"
    );
    let carol = app.visitor();
    assert_eq!(
        carol.login("carol@example.com", &one_time).await.status,
        StatusCode::SEE_OTHER
    );

    // It signs in once, and then a password of her own comes before anything else.
    for page in ["/", "/vhosts", "/account", "/account/2fa"] {
        let asked = carol.get(page).await;
        assert_eq!(asked.status, StatusCode::SEE_OTHER, "{page}");
        assert_eq!(
            asked.header("location"),
            Some("/account/password"),
            "{page}"
        );
    }
    let choose = carol.get("/account/password").await;
    assert_eq!(choose.status, StatusCode::OK);
    assert_eq!(
        choose.count("#choose-password form[action='/account/password'] input[name=new]"),
        1
    );
    assert_eq!(
        choose.count("nav.nav a"),
        1,
        "nothing else to go to: {}",
        choose.body
    );
    let again = app.visitor();
    let refused = again.login("carol@example.com", &one_time).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "used once already"
    );
    assert_eq!(
        refused.text("#form-error"),
        "This one-time password has been used. Ask an administrator for a new one."
    );
    let short = carol
        .post_form(
            "/account/password",
            &[
                ("current", one_time.as_str()),
                ("new", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        short.count("#choose-password #new-error"),
        1,
        "{}",
        short.body
    );
    let own = "carol's very own passphrase";
    let chosen = carol
        .post_form(
            "/account/password",
            &[
                ("current", one_time.as_str()),
                ("new", own),
                ("confirm", own),
            ],
        )
        .await;
    assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.body);
    assert_eq!(chosen.header("location"), Some("/"));
    assert_eq!(
        carol.get("/vhosts").await.status,
        StatusCode::OK,
        "free to go on"
    );
    assert_eq!(
        carol.get("/account/password").await.header("location"),
        Some("/account#password")
    );
    assert_eq!(
        app.visitor().login("carol@example.com", own).await.status,
        StatusCode::SEE_OTHER
    );

    let duplicate = app
        .post_form(
            "/users",
            &[
                ("name", "C2"),
                ("email", "CAROL@example.com"),
                ("role", "user"),
                ("password", ""),
            ],
        )
        .await;
    assert_eq!(
        duplicate.text("#email-error"),
        "An account with this email already exists."
    );
}

#[tokio::test]
async fn an_admin_resets_another_users_second_factor() {
    let (app, _) = app_with_admin().await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let secret = bob.start_enrolment().await;
    bob.confirm_enrolment(&totp_code(&secret, 0)).await;
    assert!(
        app.state
            .db
            .run(move |c| users::find(c, bob_id))
            .await
            .unwrap()
            .unwrap()
            .totp_enabled
    );
    let reset = app
        .post_form(&format!("/users/{bob_id}/reset-2fa"), &[])
        .await;
    assert_eq!(reset.status, StatusCode::OK);
    assert!(
        !app.state
            .db
            .run(move |c| users::find(c, bob_id))
            .await
            .unwrap()
            .unwrap()
            .totp_enabled
    );
    assert!(app.audit_actions().await.contains(&"2fa_reset".to_string()));
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_signs_out_other_sessions() {
    let (app, _) = app_with_admin().await;
    let (phone, _) = signed_in_user(&app, "bob@example.com").await;
    let (laptop, _) = (app.visitor(), ());
    laptop.login("bob@example.com", USER_PASSWORD).await;

    let wrong = phone
        .post_form(
            "/account/password",
            &[("current", "nope"), ("new", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        wrong.text("#current-error"),
        "That is not your current password."
    );
    assert_eq!(wrong.text("#new-error"), "Use at least 12 characters.");
    assert_eq!(
        wrong.attr("#new", "value").as_deref(),
        Some(""),
        "passwords are never sent back"
    );

    let new = "a different long password";
    let ok = phone
        .post_form(
            "/account/password",
            &[("current", USER_PASSWORD), ("new", new), ("confirm", new)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert!(ok.text("#notice").contains("1 other session"));
    assert_eq!(
        phone.get("/").await.status,
        StatusCode::OK,
        "this browser stays signed in"
    );
    assert_eq!(location(&laptop.get("/").await), "/login?next=%2F");
    assert_eq!(
        laptop.login("bob@example.com", new).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn a_session_can_be_revoked_from_the_account_page() {
    let (app, _) = app_with_admin().await;
    let (phone, bob) = signed_in_user(&app, "bob@example.com").await;
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
    let laptop = app.visitor().browser(firefox);
    laptop.login("bob@example.com", USER_PASSWORD).await;
    let account = phone.get("/account").await;
    assert_eq!(account.count("li.session-row"), 2);
    // Each session reads as the browser and system people know, the raw string on hover.
    assert_eq!(
        account.count(&format!(
            "li.session-row .session-device[title='{firefox}']"
        )),
        1,
        "{}",
        account.body
    );
    assert!(
        account
            .texts("li.session-row .session-device")
            .contains(&"Firefox on Linux".to_string())
    );
    let mine = app
        .state
        .db
        .run(move |c| sessions::list_for_user(c, bob))
        .await
        .unwrap();
    let current = account.html();
    let this = current
        .select(&common::selector("li.session-row"))
        .find(|li| li.text().any(|t| t.contains("this browser")))
        .unwrap()
        .value()
        .attr("data-session")
        .unwrap()
        .to_string();
    let other = mine.iter().find(|s| s.id != this).unwrap().id.clone();
    let revoked = phone
        .post_form(&format!("/account/sessions/{other}/revoke"), &[])
        .await;
    assert_eq!(location(&revoked), "/account");
    assert_eq!(location(&laptop.get("/").await), "/login?next=%2F");
    assert_eq!(phone.get("/").await.status, StatusCode::OK);

    // Someone else's session id is not found, and nothing happens to it.
    let (eve, _) = signed_in_user(&app, "eve@example.com").await;
    assert_eq!(
        eve.post_form(&format!("/account/sessions/{this}/revoke"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(phone.get("/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn idle_and_absolute_timeouts_end_a_session() {
    let (app, _) = app_with_admin().await;
    let (bob, id) = signed_in_user(&app, "bob@example.com").await;
    app.state
        .db
        .run(move |c| {
            Ok(c.execute(
                "UPDATE auth_sessions SET last_seen_at = last_seen_at - 3601 WHERE user_id = ?1",
                [id],
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        location(&bob.get("/").await),
        "/login?next=%2F",
        "idle for over an hour"
    );
    bob.login("bob@example.com", USER_PASSWORD).await;
    app.state
        .db
        .run(move |c| {
            Ok(c.execute(
                "UPDATE auth_sessions SET created_at = created_at - 13 * 3600 WHERE user_id = ?1",
                [id],
            )?)
        })
        .await
        .unwrap();
    assert_eq!(
        location(&bob.get("/").await),
        "/login?next=%2F",
        "signed in over 12 hours ago"
    );
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let (app, _) = app_with_admin().await;
    let data_dir = app.state.config.data_dir.clone();
    let token = app.setup_token.clone();
    let second = gatehouse::app::Server::bind(gatehouse::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir,
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = second.local_addr();
    tokio::spawn(second.run(std::future::pending()));
    // Cookies are per host, not per port: the same browser now talks to the new process.
    let same_browser = Visitor {
        addr,
        ..(*app).clone()
    };
    let _ = token;
    assert_eq!(same_browser.get("/account").await.status, StatusCode::OK);
}

#[tokio::test]
async fn next_never_redirects_off_site() {
    let app = TestApp::spawn().await;
    app.add_user("bob@example.com", Role::User).await;
    let asked = app.get("/account?tab=2").await;
    assert_eq!(
        location(&asked),
        "/login?next=%2Faccount%3Ftab%3D2",
        "the page asked for is kept"
    );

    let token = app.csrf().await;
    let evil = [
        ("email", "bob@example.com"),
        ("password", USER_PASSWORD),
        ("next", "//evil.example/x"),
        ("csrf_token", &token),
    ];
    assert_eq!(
        location(&app.post_form_without_csrf("/login", &evil).await),
        "/"
    );
    app.logout().await;

    let token = app.csrf().await;
    let back = [
        ("email", "bob@example.com"),
        ("password", USER_PASSWORD),
        ("next", "/account?tab=2"),
        ("csrf_token", &token),
    ];
    assert_eq!(
        location(&app.post_form_without_csrf("/login", &back).await),
        "/account?tab=2"
    );
}

#[tokio::test]
async fn the_audit_page_filters_by_event_and_is_for_admins_only() {
    let (app, _) = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    app.visitor()
        .login("bob@example.com", "a wrong password")
        .await;
    let failed = app.get("/audit?action=login_failed").await;
    assert_eq!(failed.status, StatusCode::OK);
    let actions = failed.texts("#audit-table td.action");
    assert!(
        !actions.is_empty() && actions.iter().all(|a| a == "login_failed"),
        "{actions:?}"
    );
    let by_email = app
        .get("/audit?email=bob@")
        .await
        .texts("#audit-table td[data-label=Account]");
    assert!(!by_email.is_empty() && by_email.iter().all(|e| e.contains("bob@")));
    assert_eq!(bob.get("/audit").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_active_session_outlives_the_idle_timeout_and_the_cookie_lasts_the_absolute_limit() {
    let (app, _) = app_with_admin().await;
    let id = app.add_user("bob@example.com", Role::User).await;
    let bob = app.visitor();
    let login = bob.login("bob@example.com", USER_PASSWORD).await;
    // The session's cookie (a sign-in also sets the device cookie, see tests/it/hardening.rs).
    let cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("gatehouse_session="))
        .unwrap();
    assert!(
        cookie.contains(&format!("Max-Age={}", 12 * 3600)),
        "{cookie}"
    );
    // Signed in two hours ago, active two minutes ago: still in.
    app.state
        .db
        .run(move |c| Ok(c.execute("UPDATE auth_sessions SET created_at = created_at - 7200, last_seen_at = last_seen_at - 120 WHERE user_id = ?1", [id])?))
        .await
        .unwrap();
    assert_eq!(bob.get("/").await.status, StatusCode::OK);
    let seen: i64 = app
        .state
        .db
        .run(move |c| {
            Ok(c.query_row(
                "SELECT last_seen_at FROM auth_sessions WHERE user_id = ?1",
                [id],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert!(
        gatehouse::db::now() - seen < 10,
        "activity moves last_seen forward"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_and_audit_use_the_forwarded_client_address() {
    let app =
        TestApp::spawn_with(|c| c.security.trusted_proxies = vec!["127.0.0.1".parse().unwrap()])
            .await;
    app.add_user("bob@example.com", Role::User).await;
    let attempt = |ip: &'static str, email: &'static str| {
        let v = app.visitor();
        async move {
            let token = v.csrf().await;
            let form = [
                ("email", email),
                ("password", "wrong wrong wrong"),
                ("csrf_token", token.as_str()),
            ];
            v.http
                .post(v.url("/login"))
                .header("X-Forwarded-For", ip)
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for i in 0..5 {
        let email: &'static str = Box::leak(format!("x{i}@example.com").into_boxed_str());
        assert_eq!(
            attempt("203.0.113.1", email).await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(
        attempt("203.0.113.1", "fresh@example.com").await,
        StatusCode::TOO_MANY_REQUESTS,
        "that client is spent"
    );
    assert_eq!(
        attempt("203.0.113.2", "fresh@example.com").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "another client is not"
    );
    let ips = app
        .state
        .db
        .run(|c| gatehouse::db::audit::list(c, Some("login_failed"), None, 10))
        .await
        .unwrap();
    assert!(ips.iter().all(|e| {
        e.ip.as_deref()
            .is_some_and(|ip| ip.starts_with("203.0.113."))
    }));
}
