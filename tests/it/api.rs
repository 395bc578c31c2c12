//! The JSON API and its tokens, through real HTTP, with a real agent beside a real Caddy
//! where a change must reach one: a 2FA user's token switches a site and Caddy follows,
//! scopes, revocation and expiry, the whole vhost round trip, field errors, Caddy's
//! refusal, cookies refused, audit rows, and the account page that makes the tokens.

use crate::common;

use crate::common::api::{Api, make_token};
use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, hub, upstream};
use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, USER_PASSWORD, signed_in_user};
use gatehouse::db::{api_tokens, audit, changelog, users, vhosts};
use gatehouse::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

fn site_body(name: &str, caddy: &Caddy, to: std::net::SocketAddr) -> serde_json::Value {
    json!({
        "domain": format!("http://{name}.localhost:{}", caddy.http_port),
        "template": "raw",
        "config": format!("bind 127.0.0.1\nreverse_proxy {to}"),
    })
}

async fn vhost_count(app: &TestApp) -> usize {
    app.state
        .db
        .run(|c| vhosts::list(c, &Default::default()))
        .await
        .unwrap()
        .len()
}

async fn audit_entries(app: &TestApp, action: &str) -> Vec<audit::Entry> {
    let action = action.to_string();
    app.state
        .db
        .run(move |c| audit::list(c, Some(&action), None, 1000))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_two_factor_users_token_switches_a_site_and_caddy_follows() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    add_agent(&app, "edge-1", &agent).await;
    let me = app
        .state
        .db
        .run(|c| users::find_by_email(c, ADMIN_EMAIL))
        .await
        .unwrap()
        .unwrap();
    assert!(me.totp_enabled, "the token's owner has 2FA on");
    let backend = upstream("served through the API").await;
    let token = make_token(&app, ADMIN_PASSWORD, "ci", "write").await;
    // No cookie jar, no CSRF token, no second factor: the bearer token alone.
    let api = Api::new(app.addr, Some(&token));

    let created = api
        .post("/api/v1/vhosts", site_body("api", &caddy, backend))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.json["id"].as_i64().unwrap();
    assert_eq!(
        created.headers.get("location").unwrap().to_str().unwrap(),
        format!("/api/v1/vhosts/{id}")
    );
    let host = format!("api.localhost:{}", caddy.http_port);
    assert_eq!(
        caddy.get(&host, "/").await,
        (200, "served through the API".into())
    );

    let off = api
        .post(&format!("/api/v1/vhosts/{id}/toggle"), json!({}))
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.json["enabled"], false);
    let (status, _) = caddy.get(&host, "/").await;
    assert_ne!(status, 200, "Caddy no longer serves the switched-off site");

    let on = api
        .post(&format!("/api/v1/vhosts/{id}/toggle"), json!({}))
        .await;
    assert_eq!(on.json["enabled"], true);
    assert_eq!(
        caddy.get(&host, "/").await,
        (200, "served through the API".into())
    );

    // Every write is audited with the token's name, and the token knows it was used.
    let writes = audit_entries(&app, "api_write").await;
    assert_eq!(writes.len(), 3, "{writes:?}");
    assert!(writes.iter().all(|e| e.user_id == Some(me.id)));
    assert!(
        writes[0]
            .detail
            .contains(&format!("\"ci\": POST /api/v1/vhosts/{id}/toggle -> 200")),
        "{}",
        writes[0].detail
    );
    assert!(
        writes.iter().all(|e| !e.detail.contains(&token)),
        "the token itself is never written down"
    );
    let used = app
        .state
        .db
        .run(move |c| api_tokens::list_for_user(c, me.id))
        .await
        .unwrap();
    assert!(used[0].last_used_at.is_some());
    assert_eq!(used[0].last_used_ip.as_deref(), Some("127.0.0.1"));
    let entries = app
        .state
        .db
        .run(|c| {
            changelog::list(
                c,
                &changelog::Filter {
                    limit: 10,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap();
    let actions: Vec<_> = entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["toggle", "toggle", "create"]);
    assert!(entries.iter().all(|e| e.user_email == ADMIN_EMAIL));
}

#[tokio::test]
async fn a_read_token_reads_but_gets_403_on_every_write() {
    let app = hub(|_| {}).await;
    let writer = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "writer", "write").await),
    );
    let reader = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "reader", "read").await),
    );
    let made = writer
        .post(
            "/api/v1/vhosts",
            json!({"domain": "read.example.com", "template": "raw", "config": "respond ok"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.json["id"].as_i64().unwrap();

    assert_eq!(reader.get("/api/v1/vhosts").await.status, StatusCode::OK);
    assert_eq!(
        reader.get(&format!("/api/v1/vhosts/{id}")).await.json["domain"],
        "read.example.com"
    );
    assert_eq!(reader.get("/api/v1/changelog").await.status, StatusCode::OK);
    let path = format!("/api/v1/vhosts/{id}");
    for answer in [
        reader
            .post(
                "/api/v1/vhosts",
                json!({"domain": "new.example.com", "template": "raw", "config": "respond ok"}),
            )
            .await,
        reader.patch(&path, json!({"enabled": false})).await,
        reader.post(&format!("{path}/toggle"), json!({})).await,
        reader.delete(&path).await,
    ] {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
        assert_eq!(answer.code(), "insufficient_scope");
    }
    let site = reader.get(&path).await;
    assert_eq!(site.json["enabled"], true, "nothing changed");
    assert_eq!(vhost_count(&app).await, 1);
    let refused = audit_entries(&app, "api_token_refused").await;
    assert_eq!(refused.len(), 4, "each refused write is audited");
    assert!(
        refused[0]
            .detail
            .ends_with(&format!("\"reader\": read scope used for DELETE {path}")),
        "{}",
        refused[0].detail
    );
}

#[tokio::test]
async fn a_role_that_requires_2fa_must_be_enrolled_for_its_tokens_to_work() {
    let app = hub(|_| {}).await;
    let api = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "ci", "read").await),
    );
    assert_eq!(api.get("/api/v1/vhosts").await.status, StatusCode::OK);
    // What `gatehouse user reset-2fa` does; the admin must enrol again before anything.
    app.state
        .db
        .run(|c| {
            let me = users::find_by_email(c, ADMIN_EMAIL)?.unwrap();
            users::reset_totp(c, me.id)
        })
        .await
        .unwrap();
    let refused = api.get("/api/v1/vhosts").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.code(), "enrolment_required");
}

#[tokio::test]
async fn an_admin_sees_everyones_tokens_and_revokes_one() {
    let app = hub(|_| {}).await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let bobs = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "bob's laptop", "write").await),
    );
    let own = app
        .post_form(
            "/account/tokens",
            &[
                ("token_name", "admin's own"),
                ("scope", "read"),
                ("expires", "2099-12-31"),
                ("token_current", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.body);

    let page = app.get("/users").await;
    assert_eq!(page.count("#all-token-table tr.token-row"), 2);
    assert_eq!(
        page.text(&format!(
            "#all-token-table tr.token-row[data-owner='{ADMIN_EMAIL}'] td.token-expires"
        )),
        "through 2099-12-31 (UTC)",
        "the last day the token works"
    );
    let row = "#all-token-table tr.token-row[data-owner='bob@example.com']";
    assert_eq!(page.text(&format!("{row} td.token-name")), "bob's laptop");
    assert_eq!(page.text(&format!("{row} td.token-scope")), "write");
    let id = page.attr(row, "data-token").unwrap();

    // Another user cannot revoke it: the account route is scoped to one's own tokens.
    let (carol, _) = signed_in_user(&app, "carol@example.com").await;
    let theft = carol
        .post_form(&format!("/account/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(theft.status, StatusCode::NOT_FOUND);
    assert_eq!(bobs.get("/api/v1/vhosts").await.status, StatusCode::OK);

    let done = app
        .post_form(&format!("/users/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(
        done.text("#notice"),
        "Revoked the token bob's laptop of bob@example.com."
    );
    assert_eq!(done.count("#all-token-table tr.token-row"), 1);
    assert_eq!(
        bobs.get("/api/v1/vhosts").await.status,
        StatusCode::UNAUTHORIZED
    );
    let audited = audit_entries(&app, "api_token_revoked").await;
    assert_eq!(audited[0].email.as_deref(), Some(ADMIN_EMAIL));
    assert!(
        audited[0]
            .detail
            .ends_with("\"bob's laptop\" of bob@example.com")
    );
}

#[tokio::test]
async fn revoked_and_expired_tokens_get_401() {
    let app = hub(|_| {}).await;
    let revoked = make_token(&app, ADMIN_PASSWORD, "old laptop", "write").await;
    let expired = make_token(&app, ADMIN_PASSWORD, "short-lived", "read").await;
    let api = Api::new(app.addr, Some(&revoked));
    assert_eq!(api.get("/api/v1/vhosts").await.status, StatusCode::OK);

    // Revoked on the account page.
    let page = app.get("/account").await;
    let rows: Vec<(String, String)> = page
        .html()
        .select(&common::selector("tr.token-row"))
        .map(|r| {
            (
                r.value().attr("data-token").unwrap().to_string(),
                r.select(&common::selector("td.token-name"))
                    .next()
                    .unwrap()
                    .text()
                    .collect(),
            )
        })
        .collect();
    let old_laptop = rows
        .iter()
        .find(|(_, n)| n == "old laptop")
        .unwrap()
        .0
        .clone();
    let done = app
        .post_form(&format!("/account/tokens/{old_laptop}/revoke"), &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let refused = api.get("/api/v1/vhosts").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.code(), "unauthorized");
    assert_eq!(
        refused.headers.get("www-authenticate").unwrap(),
        "Bearer realm=\"gatehouse\""
    );
    assert!(
        audit_entries(&app, "api_token_revoked").await[0]
            .detail
            .contains("old laptop")
    );

    // Expired: the earliest expiry the form allows is tonight, so the test moves the
    // stored expiry into the past instead of waiting a day.
    let short = Api::new(app.addr, Some(&expired));
    assert_eq!(short.get("/api/v1/vhosts").await.status, StatusCode::OK);
    app.state
        .db
        .run(|c| {
            Ok(c.execute(
                "UPDATE api_tokens SET expires_at = unixepoch() - 1 WHERE name = 'short-lived'",
                [],
            )?)
        })
        .await
        .unwrap();
    let refused = short.get("/api/v1/vhosts").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.headers.contains_key("www-authenticate"));
    let listed = app.get("/account").await;
    assert_eq!(
        listed.count("#token-table tr.token-row"),
        1,
        "the revoked one is gone"
    );
    assert_eq!(
        listed.text("tr.token-row td.token-expires .badge"),
        "expired"
    );
    assert_eq!(
        audit_entries(&app, "api_token_refused").await[0].detail,
        format!(
            "token #{} \"short-lived\": expired",
            rows.iter().find(|(_, n)| n == "short-lived").unwrap().0
        )
    );

    // No token, a malformed one and a made-up one: the same 401.
    for token in [
        None,
        Some("nonsense"),
        Some("gh_0123456789abcdef_00112233445566778899aabbccddeeff0011223344556677"),
    ] {
        let answer = Api::new(app.addr, token).get("/api/v1/vhosts").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(answer.code(), "unauthorized");
    }
}

#[tokio::test]
async fn a_site_goes_through_create_get_list_update_and_delete_and_caddy_serves_each_step() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    // Bob's site listens on the test Caddy's port, which an admin allows users here.
    // Its upstreams are on loopback, which an admin opens to users here; sites stay on it.
    let app = hub(|c| {
        c.vhosts.user_ports.push(caddy.http_port);
        c.vhosts.user_networks = vec!["127.0.0.1/32".into()];
        c.caddy.default_bind = vec!["127.0.0.1".into()];
    })
    .await;
    let edge = add_agent(&app, "edge-1", &agent).await;
    let first = upstream("first upstream").await;
    let second = upstream("second upstream").await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let api = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "bob's script", "write").await),
    );
    let domain = format!("http://round.localhost:{}", caddy.http_port);
    let host = format!("round.localhost:{}", caddy.http_port);

    // A `user` makes a reverse proxy from the template, served by the chosen agent.
    let created = api
        .post(
            "/api/v1/vhosts",
            json!({
                "domain": domain,
                "template": "reverse_proxy",
                "upstream": first.to_string(),
                "agent_ids": [edge],
            }),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.json["id"].as_i64().unwrap();
    assert_eq!(created.json["owner_id"], bob_id);
    assert_eq!(created.json["template"], "reverse_proxy");
    assert_eq!(created.json["fields"]["upstream"], first.to_string());
    assert_eq!(created.json["all_agents"], false);
    assert_eq!(created.json["agent_ids"], json!([edge]));
    assert_eq!(created.json["enabled"], true);
    assert_eq!(caddy.get(&host, "/").await, (200, "first upstream".into()));

    let got = api.get(&format!("/api/v1/vhosts/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.json, created.json);
    let list = api.get("/api/v1/vhosts").await;
    assert_eq!(list.json["vhosts"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["vhosts"][0]["id"], id);
    let filtered = api.get("/api/v1/vhosts?q=nothing-like-it").await;
    assert_eq!(filtered.json["vhosts"], json!([]));

    // Only what is sent changes.
    let updated = api
        .patch(
            &format!("/api/v1/vhosts/{id}"),
            json!({"fields": {"upstream": second.to_string()}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.json["fields"]["upstream"], second.to_string());
    assert_eq!(updated.json["domain"], created.json["domain"]);
    assert_eq!(caddy.get(&host, "/").await, (200, "second upstream".into()));

    // Served everywhere again, then by the chosen agent only: an edit keeps the choice.
    let everywhere = api
        .patch(&format!("/api/v1/vhosts/{id}"), json!({"all_agents": true}))
        .await;
    assert_eq!(everywhere.status, StatusCode::OK, "{}", everywhere.body);
    assert_eq!(
        (
            &everywhere.json["all_agents"],
            &everywhere.json["agent_ids"]
        ),
        (&json!(true), &json!([]))
    );
    let chosen = api
        .patch(
            &format!("/api/v1/vhosts/{id}"),
            json!({"agent_ids": [edge]}),
        )
        .await;
    assert_eq!(
        (&chosen.json["all_agents"], &chosen.json["agent_ids"]),
        (&json!(false), &json!([edge]))
    );
    assert_eq!(caddy.get(&host, "/").await, (200, "second upstream".into()));

    let history = api.get("/api/v1/changelog").await;
    let entries = history.json["changelog"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["new"]["agent_ids"], json!([edge]));
    assert_eq!(entries[2]["action"], "update");
    assert_eq!(entries[2]["old"]["fields"]["upstream"], first.to_string());
    assert_eq!(entries[2]["new"]["fields"]["upstream"], second.to_string());
    assert_eq!(entries[2]["user_email"], "bob@example.com");

    let gone = api.delete(&format!("/api/v1/vhosts/{id}")).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.body);
    assert_eq!(gone.json["deleted"], id);
    let (status, _) = caddy.get(&host, "/").await;
    assert_ne!(status, 200, "Caddy stops serving a deleted site");
    let missing = api.get(&format!("/api/v1/vhosts/{id}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "not_found");
    assert_eq!(vhost_count(&app).await, 0);
}

#[tokio::test]
async fn invalid_values_come_back_as_422_with_a_reason_per_field() {
    let app = hub(|_| {}).await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let api = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "bob", "write").await),
    );

    let bad = api
        .post(
            "/api/v1/vhosts",
            json!({"domain": "not a domain", "template": "reverse_proxy", "upstream": "127.0.0.1:notaport"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(bad.code(), "invalid");
    let fields = bad.json["error"]["fields"].as_object().unwrap();
    assert!(fields["domain"].as_str().unwrap().len() > 5, "{fields:?}");
    assert!(fields["upstream"].as_str().unwrap().len() > 5, "{fields:?}");

    // The `user` directive allowlist applies exactly as in the portal.
    let escape = api
        .post(
            "/api/v1/vhosts",
            json!({"domain": "files.example.com", "template": "raw", "config": "root * /\nfile_server"}),
        )
        .await;
    assert_eq!(
        escape.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        escape.body
    );
    assert!(
        escape.json["error"]["fields"]["config"].is_string(),
        "{}",
        escape.body
    );

    let shapes = api
        .post(
            "/api/v1/vhosts",
            json!({"domain": "x.example.com", "template": "raw", "config": "respond ok", "upstram": "typo", "enabled": "yes", "owner_id": 1}),
        )
        .await;
    assert_eq!(shapes.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = shapes.json["error"]["fields"].as_object().unwrap();
    let mut keys: Vec<_> = fields.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["enabled", "owner_id", "upstram"]);

    let taken = json!({"domain": "taken.example.com", "template": "raw", "config": "respond ok"});
    assert_eq!(
        api.post("/api/v1/vhosts", taken.clone()).await.status,
        StatusCode::CREATED
    );
    let again = api.post("/api/v1/vhosts", taken).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        again.json["error"]["fields"]["domain"],
        "Another site already uses this domain."
    );

    let not_json = Api::new(app.addr, api.token.as_deref())
        .send(reqwest::Method::POST, "/api/v1/vhosts", None)
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.code(), "bad_request");
    assert_eq!(vhost_count(&app).await, 1, "only the valid site was made");
}

#[tokio::test]
async fn a_change_caddy_refuses_is_409_and_changes_nothing() {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let app = hub(|_| {}).await;
    add_agent(&app, "edge-1", &agent).await;
    let backend = upstream("still here").await;
    let api = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "ci", "write").await),
    );
    let kept = api
        .post("/api/v1/vhosts", site_body("kept", &caddy, backend))
        .await;
    assert_eq!(kept.status, StatusCode::CREATED, "{}", kept.body);
    let entries = app.state.db.run(|c| changelog::count(c)).await.unwrap();

    // Admins may write any directive; Caddy itself does not know this one.
    let refused = api
        .post(
            "/api/v1/vhosts",
            json!({
                "domain": format!("http://bad.localhost:{}", caddy.http_port),
                "template": "raw",
                "config": "bind 127.0.0.1\nfrobnicate on",
            }),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.code(), "rejected_by_caddy");
    assert_eq!(refused.json["error"]["agent"], "edge-1");
    assert!(
        refused.json["error"]["caddy_error"]
            .as_str()
            .unwrap()
            .contains("frobnicate"),
        "{}",
        refused.body
    );
    assert_eq!(vhost_count(&app).await, 1, "nothing was created");
    assert_eq!(
        app.state.db.run(|c| changelog::count(c)).await.unwrap(),
        entries
    );
    let host = format!("kept.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await, (200, "still here".into()));
}

#[tokio::test]
async fn a_browser_session_cookie_buys_nothing_on_the_api() {
    let app = hub(|_| {}).await;
    // The signed-in admin's own browser: a session cookie and its CSRF token.
    let cookie_get = app.get("/api/v1/vhosts").await;
    assert_eq!(cookie_get.status, StatusCode::UNAUTHORIZED);
    let csrf = app.csrf().await;
    let with_csrf = app
        .http
        .post(app.url("/api/v1/vhosts"))
        .header("X-CSRF-Token", &csrf)
        .json(&json!({"domain": "cookie.example.com", "template": "raw", "config": "respond ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_csrf.status(),
        StatusCode::UNAUTHORIZED,
        "even with the CSRF token, a session is not an API credential"
    );
    assert!(with_csrf.headers().contains_key("www-authenticate"));
    let cross_site = app
        .http
        .post(app.url("/api/v1/vhosts"))
        .json(&json!({"domain": "cookie.example.com", "template": "raw", "config": "respond ok"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    let error: serde_json::Value = cross_site.json().await.unwrap();
    assert_eq!(error["error"]["code"], "forbidden", "answered as JSON");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("send no cookies"),
        "{error}"
    );
    assert_eq!(vhost_count(&app).await, 0);
}

#[tokio::test]
async fn a_ban_or_a_deletion_stops_the_users_tokens_at_once() {
    let app = hub(|_| {}).await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let (carol, carol_id) = signed_in_user(&app, "carol@example.com").await;
    let bob_api = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "bob", "read").await),
    );
    let carol_api = Api::new(
        app.addr,
        Some(&make_token(&carol, USER_PASSWORD, "carol", "read").await),
    );
    assert_eq!(bob_api.get("/api/v1/vhosts").await.status, StatusCode::OK);
    assert_eq!(carol_api.get("/api/v1/vhosts").await.status, StatusCode::OK);

    let ban = app
        .post_form(&format!("/users/{bob_id}/ban"), &[("reason", "left")])
        .await;
    assert!(
        ban.status.is_success() || ban.status.is_redirection(),
        "{}",
        ban.status
    );
    assert_eq!(
        bob_api.get("/api/v1/vhosts").await.status,
        StatusCode::UNAUTHORIZED
    );
    let deleted = app
        .post_form(&format!("/users/{carol_id}/delete"), &[])
        .await;
    assert!(deleted.status.is_success() || deleted.status.is_redirection());
    assert_eq!(
        carol_api.get("/api/v1/vhosts").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_user_sees_and_changes_only_their_own_sites_and_history() {
    let app = hub(|_| {}).await;
    let admin = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "admin", "write").await),
    );
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let bob_api = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "bob", "write").await),
    );
    let theirs = admin
        .post(
            "/api/v1/vhosts",
            json!({"domain": "admins.example.com", "template": "raw", "config": "respond ok"}),
        )
        .await;
    let for_bob = admin
        .post(
            "/api/v1/vhosts",
            json!({"domain": "bobs.example.com", "template": "raw", "config": "respond ok", "owner_id": bob_id}),
        )
        .await;
    assert_eq!(for_bob.status, StatusCode::CREATED, "{}", for_bob.body);
    assert_eq!(
        for_bob.json["owner_id"], bob_id,
        "an admin chooses the owner"
    );
    let other = theirs.json["id"].as_i64().unwrap();

    let list = bob_api.get("/api/v1/vhosts").await;
    let domains: Vec<_> = list.json["vhosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["domain"].as_str().unwrap())
        .collect();
    assert_eq!(domains, ["bobs.example.com"]);
    let everyone = bob_api.get("/api/v1/vhosts?owner=").await;
    assert_eq!(everyone.json["vhosts"].as_array().unwrap().len(), 1);
    for answer in [
        bob_api.get(&format!("/api/v1/vhosts/{other}")).await,
        bob_api
            .patch(
                &format!("/api/v1/vhosts/{other}"),
                json!({"enabled": false}),
            )
            .await,
        bob_api
            .post(&format!("/api/v1/vhosts/{other}/toggle"), json!({}))
            .await,
        bob_api.delete(&format!("/api/v1/vhosts/{other}")).await,
    ] {
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.body);
    }
    let history = bob_api.get("/api/v1/changelog").await;
    let seen: Vec<_> = history.json["changelog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["domain"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["bobs.example.com"]);
    assert_eq!(
        admin.get(&format!("/api/v1/vhosts/{other}")).await.json["enabled"],
        true
    );
}

#[tokio::test]
async fn the_account_page_shows_a_new_token_once_and_lists_it_without_the_secret() {
    let app = hub(|_| {}).await;
    let empty = app.get("/account").await;
    assert_eq!(empty.text("#api-tokens #no-tokens"), "No tokens yet.");
    assert_eq!(empty.count("#new-token"), 0);

    let made = app
        .post_form(
            "/account/tokens",
            &[
                ("token_name", "deploy from CI"),
                ("scope", "write"),
                ("expires", "2099-12-31"),
                ("token_current", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert_eq!(made.header("cache-control"), Some("no-store"));
    let token = made.attr("#new-token #new-token-value", "value").unwrap();
    assert!(token.starts_with("gh_"), "{token}");
    assert_eq!(
        made.attr("#new-token-value", "readonly").as_deref(),
        Some("")
    );
    assert_eq!(made.text("#new-token strong"), "deploy from CI");
    assert_eq!(made.count("#token-table tr.token-row"), 1);
    assert_eq!(made.text("tr.token-row td.token-scope"), "write");
    assert_eq!(
        made.text("tr.token-row td.token-expires"),
        "through 2099-12-31 (UTC)",
        "the last day it works, as the form asked"
    );
    assert_eq!(made.text("tr.token-row td.token-used"), "never");

    let later = app.get("/account").await;
    assert_eq!(later.count("#new-token"), 0, "shown only once");
    assert_eq!(later.count("#token-table tr.token-row"), 1);
    assert_eq!(later.text("tr.token-row td.token-name"), "deploy from CI");
    assert!(!later.body.contains(&token), "never shown again");
    let stored = app
        .state
        .db
        .run(|c| {
            Ok(c.query_row(
                "SELECT lookup || ' ' || token_hash FROM api_tokens",
                [],
                |r| r.get::<_, String>(0),
            )?)
        })
        .await
        .unwrap();
    assert!(
        !stored.contains(&token[20..]),
        "only a hash of the secret is kept"
    );

    assert_eq!(
        Api::new(app.addr, Some(&token))
            .get("/api/v1/vhosts")
            .await
            .status,
        StatusCode::OK
    );
    let used = app.get("/account").await;
    assert!(
        used.text("tr.token-row td.token-used")
            .ends_with("from 127.0.0.1")
    );
    assert_eq!(audit_entries(&app, "api_token_created").await.len(), 1);

    // Kept to the minute: a use an hour after the last one is recorded again.
    let db = app.state.db.clone();
    let last_used = || {
        let db = db.clone();
        async move {
            db.run(|c| {
                Ok(c.query_row("SELECT last_used_at FROM api_tokens", [], |r| {
                    r.get::<_, i64>(0)
                })?)
            })
            .await
            .unwrap()
        }
    };
    db.run(|c| {
        Ok(c.execute(
            "UPDATE api_tokens SET last_used_at = last_used_at - 3600",
            [],
        )?)
    })
    .await
    .unwrap();
    let an_hour_ago = last_used().await;
    Api::new(app.addr, Some(&token))
        .get("/api/v1/changelog")
        .await;
    assert!(last_used().await >= an_hour_ago + 3600);
}

#[tokio::test]
async fn a_refused_token_form_keeps_the_input_and_says_why() {
    let app = hub(|_| {}).await;
    let refused = app
        .post_form(
            "/account/tokens",
            &[
                ("token_name", ""),
                ("scope", "admin"),
                ("expires", "2001-01-01"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.text("#token_name-error"),
        "Give the token a name, e.g. where it will be used."
    );
    assert_eq!(refused.text("#token_scope-error"), "Choose read or write.");
    assert_eq!(
        refused.text("#token_expires-error"),
        "Choose today or a later date."
    );
    assert_eq!(
        refused.attr("#token_expires", "value").as_deref(),
        Some("2001-01-01")
    );
    assert_eq!(refused.count("#new-token"), 0);
    let kept = app
        .post_form(
            "/account/tokens",
            &[
                ("token_name", "nightly backup"),
                ("scope", "read"),
                ("expires", "soon"),
            ],
        )
        .await;
    assert_eq!(kept.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        kept.attr("#token_name", "value").as_deref(),
        Some("nightly backup")
    );
    assert_eq!(
        kept.text("#token_expires-error"),
        "Give a date as YYYY-MM-DD."
    );
    let count = app
        .state
        .db
        .run(|c| {
            Ok(c.query_row("SELECT count(*) FROM api_tokens", [], |r| {
                r.get::<_, i64>(0)
            })?)
        })
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn making_a_token_asks_for_the_current_password() {
    let app = hub(|_| {}).await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let fields = |password: &'static str| {
        [
            ("token_name", "deploy from CI"),
            ("scope", "write"),
            ("expires", "2099-12-31"),
            ("token_current", password),
        ]
    };
    for wrong in ["", "not bob's password at all"] {
        let refused = bob.post_form("/account/tokens", &fields(wrong)).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{wrong:?}"
        );
        assert_eq!(
            refused.text("#new-token-form #token_current-error"),
            "That is not your current password."
        );
        assert_eq!(
            refused.attr("#token_name", "value").as_deref(),
            Some("deploy from CI")
        );
        assert_eq!(
            refused.attr("#token_expires", "value").as_deref(),
            Some("2099-12-31")
        );
        assert_eq!(
            refused
                .attr("#token_scope option[selected]", "value")
                .as_deref(),
            Some("write")
        );
        assert!(
            refused
                .attr("#token_current", "value")
                .unwrap_or_default()
                .is_empty(),
            "a password is never sent back"
        );
        assert_eq!(refused.count("#new-token"), 0);
    }
    let stored = || async {
        app.state
            .db
            .run(|c| api_tokens::list_all(c))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(stored().await, 0, "no token without the password");
    let made = bob
        .post_form("/account/tokens", &fields(USER_PASSWORD))
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert!(made.attr("#new-token-value", "value").is_some());
    assert_eq!(stored().await, 1);
}

#[tokio::test]
async fn a_password_change_on_the_account_page_revokes_all_the_users_tokens() {
    let app = hub(|_| {}).await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let (carol, _) = signed_in_user(&app, "carol@example.com").await;
    let bobs = [
        Api::new(
            app.addr,
            Some(&make_token(&bob, USER_PASSWORD, "ci", "write").await),
        ),
        Api::new(
            app.addr,
            Some(&make_token(&bob, USER_PASSWORD, "cron", "read").await),
        ),
    ];
    let carols = Api::new(
        app.addr,
        Some(&make_token(&carol, USER_PASSWORD, "carol", "read").await),
    );
    let changed = bob
        .post_form(
            "/account/password",
            &[
                ("current", USER_PASSWORD),
                ("new", "a brand new password for bob"),
                ("confirm", "a brand new password for bob"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        changed.text("#notice"),
        "Password changed. Signed out: 0 other sessions. Revoked: 2 API tokens."
    );
    assert_eq!(changed.count("#token-table tr.token-row"), 0);
    for api in &bobs {
        assert_eq!(
            api.get("/api/v1/vhosts").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(carols.get("/api/v1/vhosts").await.status, StatusCode::OK);
    let audited = audit_entries(&app, "api_token_revoked").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].user_id, Some(bob_id));
    assert_eq!(audited[0].detail, "all 2 API token(s): password changed");
}

#[tokio::test]
async fn an_admins_2fa_reset_revokes_the_users_tokens() {
    let app = hub(|_| {}).await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let bobs = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "ci", "write").await),
    );
    assert_eq!(bobs.get("/api/v1/vhosts").await.status, StatusCode::OK);
    let reset = app
        .post_form(&format!("/users/{bob_id}/reset-2fa"), &[])
        .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.body);
    assert_eq!(
        bobs.get("/api/v1/vhosts").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(reset.count("#all-token-table tr.token-row"), 0);
    let audited = audit_entries(&app, "api_token_revoked").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(
        audited[0].detail,
        "all 1 API token(s): two-factor authentication reset by an admin"
    );
    let reset_entry = audit_entries(&app, "2fa_reset").await;
    assert!(
        reset_entry[0]
            .detail
            .starts_with("1 session ended, 1 API token revoked"),
        "{}",
        reset_entry[0].detail
    );
}

#[tokio::test]
async fn signing_out_other_sessions_keeps_the_tokens_and_says_so() {
    let app = hub(|_| {}).await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let other = app.visitor();
    assert_eq!(
        other.login("bob@example.com", USER_PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );
    let bobs = Api::new(
        app.addr,
        Some(&make_token(&bob, USER_PASSWORD, "ci", "read").await),
    );
    let page = bob.get("/account").await;
    assert_eq!(
        page.text("#sessions #revoke-others-hint"),
        "Your API tokens keep working: revoke them one by one under API tokens, or change your password to revoke them all."
    );
    let done = bob.post_form("/account/sessions/revoke-others", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(
        other.get("/").await.header("location"),
        Some("/login?next=%2F")
    );
    assert_eq!(bobs.get("/api/v1/vhosts").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_agents_and_owners_and_other_templates_fields_are_refused_not_ignored() {
    let app = hub(|_| {}).await;
    let (_bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let admin = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "admin", "write").await),
    );
    let site = |extra: serde_json::Value| {
        let mut body =
            json!({"domain": "x.example.com", "template": "raw", "config": "respond ok"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let nowhere = admin
        .post("/api/v1/vhosts", site(json!({"agent_ids": [999]})))
        .await;
    assert_eq!(
        nowhere.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        nowhere.body
    );
    assert_eq!(
        nowhere.json["error"]["fields"]["agent_ids"],
        "There is no agent with the id 999; choose among the agents listed."
    );
    let nobody = admin
        .post("/api/v1/vhosts", site(json!({"owner_id": 999})))
        .await;
    assert_eq!(
        nobody.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a 500: {}",
        nobody.body
    );
    assert_eq!(
        nobody.json["error"]["fields"]["owner_id"],
        "There is no user with the id 999."
    );
    let shaped = admin
        .post("/api/v1/vhosts", site(json!({"owner_id": "bob"})))
        .await;
    assert_eq!(shaped.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(shaped.json["error"]["fields"]["owner_id"].is_string());

    // `root` belongs to static_files: on a reverse_proxy it would be dropped unseen.
    let proxy = json!({"domain": "p.example.com", "template": "reverse_proxy", "upstream": "127.0.0.1:3000"});
    let mut top = proxy.clone();
    top["root"] = json!("/srv/www");
    let foreign = admin.post("/api/v1/vhosts", top).await;
    assert_eq!(foreign.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        foreign.json["error"]["fields"]["root"],
        "Not a field of the reverse_proxy template."
    );
    let mut nested = proxy.clone();
    nested["fields"] = json!({"root": "/srv/www"});
    let foreign = admin.post("/api/v1/vhosts", nested).await;
    assert_eq!(foreign.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        foreign.json["error"]["fields"]["fields.root"],
        "Not a field of the reverse_proxy template."
    );
    assert_eq!(vhost_count(&app).await, 0, "nothing refused was made");

    // An admin's `owner_id: null` means nobody owns the site, not the admin.
    let made = admin
        .post("/api/v1/vhosts", site(json!({"owner_id": bob_id})))
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let id = made.json["id"].as_i64().unwrap();
    let orphaned = admin
        .patch(&format!("/api/v1/vhosts/{id}"), json!({"owner_id": null}))
        .await;
    assert_eq!(orphaned.status, StatusCode::OK, "{}", orphaned.body);
    assert_eq!(orphaned.json["owner_id"], serde_json::Value::Null);
    let stored = app
        .state
        .db
        .run(move |c| vhosts::find(c, id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.owner_id, None);
    // …and stays so when something else changes.
    let later = admin
        .patch(&format!("/api/v1/vhosts/{id}"), json!({"enabled": false}))
        .await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.body);
    assert_eq!(later.json["owner_id"], serde_json::Value::Null);
}

#[tokio::test]
async fn names_outside_grants_other_ports_and_overlaps_are_422_on_the_domain_for_both_roles() {
    let app = hub(|_| {}).await;
    let admin = Api::new(
        app.addr,
        Some(&make_token(&app, ADMIN_PASSWORD, "admin", "write").await),
    );
    let alice_id = app
        .add_user_with_grants("alice@example.com", Role::User, &["*.team.example.com"])
        .await;
    let alice = app.visitor();
    alice.login("alice@example.com", USER_PASSWORD).await;
    let alice = Api::new(
        app.addr,
        Some(&make_token(&alice, USER_PASSWORD, "alice", "write").await),
    );
    let site = |domain: &str| json!({"domain": domain, "template": "raw", "config": "respond ok"});
    let bobs = admin
        .post("/api/v1/vhosts", site("*.team.example.com"))
        .await;
    assert_eq!(bobs.status, StatusCode::CREATED, "{}", bobs.body);

    let outside = alice.post("/api/v1/vhosts", site("www.example.org")).await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(outside.code(), "invalid");
    assert!(
        outside.json["error"]["fields"]["domain"]
            .as_str()
            .unwrap()
            .contains("*.team.example.com"),
        "{}",
        outside.body
    );
    let port = alice
        .post("/api/v1/vhosts", site("http://x.y.team.example.com:2019"))
        .await;
    assert_eq!(port.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        port.json["error"]["fields"]["domain"]
            .as_str()
            .unwrap()
            .contains("ports 80, 443")
    );
    // Under the admin's wildcard (one label): someone else's, and no override for a user.
    let mut under = site("a.team.example.com");
    under["allow_overlap"] = json!(true);
    let refused = alice.post("/api/v1/vhosts", under).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.json["error"]["fields"]["allow_overlap"],
        "Only an admin can override the overlap rule."
    );
    let refused = alice
        .post("/api/v1/vhosts", site("a.team.example.com"))
        .await;
    assert!(
        refused.json["error"]["fields"]["domain"]
            .as_str()
            .unwrap()
            .contains("someone else"),
        "{}",
        refused.body
    );
    let deeper = alice
        .post("/api/v1/vhosts", site("x.y.team.example.com"))
        .await;
    assert_eq!(deeper.status, StatusCode::CREATED, "{}", deeper.body);
    let id = deeper.json["id"].as_i64().unwrap();
    let renamed = alice
        .patch(
            &format!("/api/v1/vhosts/{id}"),
            json!({"domain": "x.example.org"}),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::UNPROCESSABLE_ENTITY);

    // The admin over Alice's site: refused with a warning, then saved knowingly.
    let mut over = site("http://x.y.team.example.com");
    let warned = admin.post("/api/v1/vhosts", over.clone()).await;
    assert_eq!(warned.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = &warned.json["error"]["fields"];
    assert_eq!(
        fields["domain"],
        "This overlaps x.y.team.example.com (owner: alice@example.com)."
    );
    assert!(
        fields["allow_overlap"]
            .as_str()
            .unwrap()
            .contains("Saved anyway")
    );
    over["allow_overlap"] = json!(true);
    let knowingly = admin.post("/api/v1/vhosts", over).await;
    assert_eq!(knowingly.status, StatusCode::CREATED, "{}", knowingly.body);
    assert_eq!(knowingly.json["owner_id"], json!(app_admin_id(&app).await));
    assert_ne!(knowingly.json["owner_id"], json!(alice_id));
    assert_eq!(audit_entries(&app, "overlap_allowed").await.len(), 1);
}

async fn app_admin_id(app: &TestApp) -> i64 {
    app.state
        .db
        .run(|c| users::find_by_email(c, ADMIN_EMAIL))
        .await
        .unwrap()
        .unwrap()
        .id
}
