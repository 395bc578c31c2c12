//! Each account rule through both front ends: the portal over real HTTP, and the real
//! `gatehouse user …` binary against the same database, with the same outcome asserted for
//! both. A ban ends sessions and revokes tokens; a new password or a reset second factor
//! ends sessions and revokes tokens; the last admin stays; deletion and role changes take
//! effect on the account's next request.

use crate::common::api::{Api, make_token};
use crate::common::{ADMIN_EMAIL, TestApp, USER_PASSWORD, Visitor, totp_code};
use gatehouse::db::{audit, users};
use gatehouse::domain::Role;
use reqwest::StatusCode;
use std::process::Output;

/// The two ways to change an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Front {
    /// The portal, as the signed-in admin.
    Web,
    /// `gatehouse user …` on the server.
    Cli,
}

const FRONTS: [Front; 2] = [Front::Web, Front::Cli];

/// A hub with an enrolled admin signed in as the default visitor.
async fn hub() -> TestApp {
    crate::common::app_with_admin().await.0
}

/// Runs `gatehouse user <args>` against the hub's data directory.
fn cli(app: &TestApp, args: &[&str]) -> Output {
    let mut cmd = crate::common::binary::gatehouse_in(app.dir.path());
    cmd.env("GATEHOUSE_DATA_DIR", &app.state.config.data_dir)
        .arg("user")
        .args(args);
    cmd.output().expect("run gatehouse user")
}

/// What a front end said about one change.
#[derive(Debug)]
struct Said {
    done: bool,
    /// The portal's notice or error message; the CLI's stdout or stderr.
    message: String,
}

/// Asks `front` for the change `verb` (`ban`, `unban`, `role`, `reset-2fa`, `delete`) to the
/// account `email`, as the admin.
async fn change(app: &TestApp, front: Front, verb: &str, email: &str, value: &str) -> Said {
    match front {
        Front::Web => {
            let id = id_of(app, email).await;
            let form: Vec<(&str, &str)> = match verb {
                "ban" => vec![("reason", value)],
                "role" => vec![("role", value)],
                _ => vec![],
            };
            let page = app.post_form(&format!("/users/{id}/{verb}"), &form).await;
            match page.status {
                StatusCode::OK => Said {
                    done: true,
                    message: page.text("#notice"),
                },
                StatusCode::CONFLICT => Said {
                    done: false,
                    message: page.text(".error-message"),
                },
                other => panic!("{verb}: unexpected {other}: {}", page.body),
            }
        }
        Front::Cli => {
            let mut args = vec![verb, email];
            match verb {
                "ban" => args.extend(["--reason", value]),
                "role" => args.push(value),
                _ => {}
            }
            let out = cli(app, &args);
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
            Said {
                done: out.status.success(),
                message: if out.status.success() { stdout } else { stderr },
            }
        }
    }
}

/// As [`change`], which must be done; returns what the front end said.
async fn done(app: &TestApp, front: Front, verb: &str, email: &str, value: &str) -> String {
    let said = change(app, front, verb, email, value).await;
    assert!(said.done, "{front:?} {verb}: {said:?}");
    said.message
}

async fn id_of(app: &TestApp, email: &str) -> i64 {
    user(app, email).await.expect("the account exists").id
}

async fn user(app: &TestApp, email: &str) -> Option<users::User> {
    let email = email.to_string();
    let found = app.state.db.run(move |c| users::find_by_email(c, &email));
    found.await.unwrap()
}

/// A user account signed in from two browsers, with a write API token made from the first.
struct Signed {
    email: String,
    phone: Visitor,
    laptop: Visitor,
    token: Api,
}

async fn signed_in(app: &TestApp, email: &str) -> Signed {
    app.add_user(email, Role::User).await;
    let (phone, laptop) = (app.visitor(), app.visitor());
    for v in [&phone, &laptop] {
        let page = v.login(email, USER_PASSWORD).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    }
    let token = Api::new(
        app.addr,
        Some(&make_token(&phone, USER_PASSWORD, "ci", "write").await),
    );
    assert_eq!(token.get("/api/v1/vhosts").await.status, StatusCode::OK);
    Signed {
        email: email.to_string(),
        phone,
        laptop,
        token,
    }
}

/// Both of the account's browsers are signed out and its API token is refused.
async fn locked_out(bob: &Signed) -> bool {
    signed_out(&bob.phone).await && signed_out(&bob.laptop).await && token_refused(bob).await
}

async fn token_refused(bob: &Signed) -> bool {
    bob.token.get("/api/v1/vhosts").await.status == StatusCode::UNAUTHORIZED
}

/// The browser is signed out: its next page is the sign-in form.
async fn signed_out(v: &Visitor) -> bool {
    let next = v.get("/account").await;
    next.status == StatusCode::SEE_OTHER
        && next.header("location") == Some("/login?next=%2Faccount")
        && v.get("/login").await.count("#login form") == 1
}

fn email_for(front: Front, who: &str) -> String {
    format!("{who}-{front:?}@example.com").to_lowercase()
}

/// A hub as [`hub`], and for each front end a user signed in as [`signed_in`] to act on.
async fn hub_with_users() -> (TestApp, Vec<(Front, Signed)>) {
    let app = hub().await;
    let mut users = Vec::new();
    for front in FRONTS {
        users.push((front, signed_in(&app, &email_for(front, "bob")).await));
    }
    (app, users)
}

/// The audit entries of `action` about `email`, newest first.
async fn audited(app: &TestApp, action: &str, email: &str) -> Vec<audit::Entry> {
    let (action, email) = (action.to_string(), email.to_string());
    app.state
        .db
        .run(move |c| audit::list(c, Some(&action), Some(&email), 100))
        .await
        .unwrap()
}

/// The admin's users page row of `email`: (role, status), by CSS.
async fn row(app: &TestApp, email: &str) -> Option<(String, String)> {
    let page = app.get("/users").await;
    assert_eq!(page.status, StatusCode::OK);
    let tr = format!("#user-table tr[data-user='{email}']");
    if page.count(&tr) == 0 {
        return None;
    }
    let status = page.text(&format!("{tr} td.status"));
    let status = status
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    Some((page.text(&format!("{tr} td.role")), status))
}

#[tokio::test]
async fn a_ban_ends_every_session_and_revokes_every_token_from_either_front_end() {
    let (app, users) = hub_with_users().await;
    for (front, bob) in users {
        let said = done(&app, front, "ban", &bob.email, "posting spam").await;
        assert!(said.contains("banned"), "{front:?}: {said}");

        assert!(locked_out(&bob).await, "{front:?}");
        let again = bob.phone.login(&bob.email, USER_PASSWORD).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "{front:?}");
        assert!(again.text("#form-error").contains("suspended"), "{front:?}");
        assert_eq!(
            row(&app, &bob.email).await,
            Some(("user".into(), "banned".into()))
        );
        assert_eq!(audited(&app, "ban", &bob.email).await.len(), 1);
        assert_eq!(
            audited(&app, "api_token_revoked", &bob.email).await.len(),
            1
        );

        done(&app, front, "unban", &bob.email, "").await;
        assert_eq!(
            bob.phone.login(&bob.email, USER_PASSWORD).await.status,
            StatusCode::SEE_OTHER,
            "{front:?}"
        );
        assert!(
            token_refused(&bob).await,
            "{front:?}: an unban brings no token back"
        );
    }
}

#[tokio::test]
async fn a_new_password_ends_sessions_and_revokes_tokens_from_either_front_end() {
    let (app, users) = hub_with_users().await;
    for (front, bob) in users {
        let new_password = match front {
            Front::Web => {
                let new = "a different long password";
                let page = bob
                    .phone
                    .post_form(
                        "/account/password",
                        &[("current", USER_PASSWORD), ("new", new), ("confirm", new)],
                    )
                    .await;
                assert_eq!(page.status, StatusCode::OK, "{}", page.body);
                assert!(page.text("#notice").contains("Revoked: 1 API token."));
                // The browser that asked stays signed in; the other does not.
                assert_eq!(bob.phone.get("/account").await.status, StatusCode::OK);
                new.to_string()
            }
            Front::Cli => {
                let out = cli(&app, &["passwd", &bob.email]);
                assert!(out.status.success());
                assert!(signed_out(&bob.phone).await);
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .find_map(|l| l.strip_prefix("one-time password: "))
                    .expect("a generated password")
                    .to_string()
            }
        };
        assert!(signed_out(&bob.laptop).await, "{front:?}");
        assert!(token_refused(&bob).await, "{front:?}");
        let fresh = app.visitor();
        let old = fresh.login(&bob.email, USER_PASSWORD).await;
        assert_eq!(old.status, StatusCode::UNPROCESSABLE_ENTITY, "{front:?}");
        assert_eq!(
            fresh.login(&bob.email, &new_password).await.status,
            StatusCode::SEE_OTHER,
            "{front:?}"
        );
        assert_eq!(audited(&app, "password_changed", &bob.email).await.len(), 1);
    }
}

#[tokio::test]
async fn a_second_factor_reset_ends_sessions_and_revokes_tokens_from_either_front_end() {
    let (app, users) = hub_with_users().await;
    for (front, bob) in users {
        let secret = bob.phone.start_enrolment().await;
        let enrolled = bob.phone.confirm_enrolment(&totp_code(&secret, 0)).await;
        assert_eq!(enrolled.count("li.backup-code"), 10);
        assert_eq!(
            row(&app, &bob.email).await,
            Some(("user".into(), "active".into()))
        );

        let said = done(&app, front, "reset-2fa", &bob.email, "").await;
        assert!(
            said.contains("two-factor authentication"),
            "{front:?}: {said}"
        );
        assert!(locked_out(&bob).await, "{front:?}");
        assert!(!user(&app, &bob.email).await.unwrap().totp_enabled);
        // The password alone signs in again: no second factor is asked for.
        let again = bob.phone.login(&bob.email, USER_PASSWORD).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER, "{front:?}");
        assert_eq!(again.header("location"), Some("/"), "{front:?}");
        assert_eq!(audited(&app, "2fa_reset", &bob.email).await.len(), 1);
    }
}

#[tokio::test]
async fn the_last_admin_cannot_be_demoted_banned_or_deleted_from_either_front_end() {
    let app = hub().await;
    for front in FRONTS {
        for (verb, value) in [("role", "user"), ("ban", "oops"), ("delete", "")] {
            let said = change(&app, front, verb, ADMIN_EMAIL, value).await;
            assert!(!said.done, "{front:?} {verb}: {said:?}");
            let expected = match front {
                // In the portal, the last admin is the one asking.
                Front::Web => "You cannot",
                Front::Cli => "is the last active admin",
            };
            assert!(
                said.message.contains(expected),
                "{front:?} {verb}: {said:?}"
            );
            let admin = user(&app, ADMIN_EMAIL).await.expect("still there");
            assert!(admin.is_admin() && !admin.is_banned(), "{front:?} {verb}");
        }
    }
    assert_eq!(
        row(&app, ADMIN_EMAIL).await,
        Some(("admin".into(), "active".into()))
    );
    for action in ["role_changed", "ban", "user_deleted"] {
        assert!(audited(&app, action, ADMIN_EMAIL).await.is_empty());
    }
    assert_eq!(
        app.get("/users").await.status,
        StatusCode::OK,
        "still admin"
    );

    // With a second admin, either front end may demote them, but the CLI still keeps one.
    for front in FRONTS {
        let second = email_for(front, "second");
        app.add_user(&second, Role::Admin).await;
        done(&app, front, "role", &second, "user").await;
        assert_eq!(
            row(&app, &second).await,
            Some(("user".into(), "active".into()))
        );
    }
    let said = change(&app, Front::Cli, "role", ADMIN_EMAIL, "user").await;
    assert!(
        !said.done && said.message.contains("last active admin"),
        "{said:?}"
    );
}

#[tokio::test]
async fn deleting_an_account_signs_it_out_and_keeps_its_email_in_the_log_from_either_front_end() {
    let (app, users) = hub_with_users().await;
    for (front, bob) in users {
        let said = done(&app, front, "delete", &bob.email, "").await;
        assert!(said.contains("deleted"), "{front:?}: {said}");
        assert!(said.contains(&bob.email), "{front:?}: {said}");

        assert_eq!(row(&app, &bob.email).await, None, "{front:?}");
        assert!(user(&app, &bob.email).await.is_none());
        assert!(locked_out(&bob).await, "{front:?}");
        let entries = audited(&app, "user_deleted", &bob.email).await;
        assert_eq!(entries.len(), 1, "{front:?}");
        assert_eq!(entries[0].user_id, None, "no dangling id");
        assert_eq!(entries[0].email.as_deref(), Some(bob.email.as_str()));
        let again = bob.phone.login(&bob.email, USER_PASSWORD).await;
        assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    }
}

#[tokio::test]
async fn a_role_change_takes_effect_on_the_next_request_from_either_front_end() {
    let (app, users) = hub_with_users().await;
    for (front, bob) in users {
        assert_eq!(bob.phone.get("/users").await.status, StatusCode::FORBIDDEN);

        done(&app, front, "role", &bob.email, "admin").await;
        assert_eq!(
            row(&app, &bob.email).await,
            Some(("admin".into(), "active".into())),
            "{front:?}"
        );
        // An admin must enrol a second factor before anything else.
        let next = bob.phone.get("/users").await;
        assert_eq!(next.status, StatusCode::SEE_OTHER, "{front:?}");
        assert_eq!(next.header("location"), Some("/account/2fa"), "{front:?}");
        let details: Vec<String> = audited(&app, "role_changed", &bob.email)
            .await
            .into_iter()
            .map(|e| e.detail)
            .collect();
        assert_eq!(details.len(), 1, "{front:?}");
        assert!(details[0].starts_with("user -> admin"), "{details:?}");

        done(&app, front, "role", &bob.email, "user").await;
        assert_eq!(bob.phone.get("/users").await.status, StatusCode::FORBIDDEN);
    }
}
