//! Tenant safety with a real hub, a real agent process and a real Caddy 2.6: every body of the
//! hostile corpus (tests/fixtures/tenancy/corpus.toml) is refused for a `user` through the site
//! form and the API with its reason beside the field, what users may do still works, admins
//! keep full power, the Settings page opens networks, and anonymous requests through a
//! user's site reach its backend and nothing of Gatehouse's or Caddy's.

use crate::common;

use crate::common::api::{Api, make_token};
use crate::common::caddy::Caddy;
use crate::common::fleet::{AgentProc, add_agent, hub, post_owned, upstream};
use crate::common::{TestApp, USER_PASSWORD, Visitor};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;

#[derive(Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(Deserialize, Clone)]
struct Case {
    name: String,
    #[serde(default = "raw")]
    template: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default = "refused")]
    verdict: String,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    reason: String,
}

fn raw() -> String {
    "raw".into()
}

fn refused() -> String {
    "refused".into()
}

fn corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tenancy/corpus.toml"
    ))
    .expect("the corpus");
    toml::from_str::<Corpus>(&text)
        .expect("the corpus parses")
        .case
}

/// A hub with one agent beside a real Caddy, a `user` signed in, and a backend on loopback.
struct World {
    app: TestApp,
    caddy: Caddy,
    agent: AgentProc,
    user: Visitor,
    backend: SocketAddr,
}

const OPEN_NETWORKS: [&str; 2] = ["127.0.0.1/32", "10.9.0.0/16"];

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(configure: impl FnOnce(&mut gatehouse::config::Config)) -> World {
    let caddy = Caddy::start().await;
    let agent = AgentProc::start(&caddy).await;
    let http_port = caddy.http_port;
    let app = hub(|c| {
        // Sites listen on loopback only, and users may use the test's port.
        c.caddy.default_bind = vec!["127.0.0.1".into()];
        c.vhosts.user_ports = vec![80, 443, http_port];
        c.vhosts.user_networks = OPEN_NETWORKS.iter().map(|n| n.to_string()).collect();
        c.vhosts.user_upstream_hosts = vec!["*.svc.test".into()];
        c.vhosts.user_unix_sockets = vec!["/run/gatehouse-test/php.sock".into()];
        configure(c);
    })
    .await;
    add_agent(&app, "edge-1", &agent).await;
    let (user, _) =
        common::signed_in_user_with_grants(&app, "tenant@example.com", &["*.localhost"]).await;
    let backend = upstream("the tenant's own backend").await;
    World {
        app,
        caddy,
        agent,
        user,
        backend,
    }
}

impl World {
    /// `text` with the corpus markers filled in.
    fn fill(&self, text: &str) -> String {
        let admin = self.caddy.admin_addr();
        text.replace("@ADMIN_PORT@", &admin.port().to_string())
            .replace("@ADMIN@", &admin.to_string())
            .replace("@AGENT_PORT@", &self.agent.addr.port().to_string())
            .replace("@AGENT@", &self.agent.addr.to_string())
            .replace("@HUB_PORT@", &self.app.addr.port().to_string())
            .replace("@HUB@", &self.app.addr.to_string())
            .replace("@BACKEND_PORT@", &self.backend.port().to_string())
            .replace("@BACKEND@", &self.backend.to_string())
            .replace("@SITE_PORT@", &self.caddy.http_port.to_string())
    }

    /// `who` saves a raw site at `domain` through the form.
    async fn raw(&self, who: &Visitor, domain: &str, config: &str) -> common::Page {
        who.post_form(
            "/vhosts",
            &[
                ("domain", domain),
                ("template", "raw"),
                ("config", config),
                ("enabled", "on"),
            ],
        )
        .await
    }

    fn domain(&self, name: &str) -> String {
        format!("http://{name}.localhost:{}", self.caddy.http_port)
    }

    /// The form fields of a case, for a site at `domain`.
    fn form(&self, case: &Case, domain: &str) -> Vec<(String, String)> {
        let mut fields = vec![
            ("domain".to_string(), domain.to_string()),
            ("template".to_string(), case.template.clone()),
            ("enabled".to_string(), "on".to_string()),
        ];
        if case.template == "raw" {
            fields.push(("config".into(), self.fill(&case.body)));
        }
        for (k, v) in &case.fields {
            fields.push((k.clone(), self.fill(v)));
        }
        fields
    }
}

/// The field a refusal must show beside, as the form names it.
fn field_of(case: &Case) -> &str {
    case.field.as_deref().unwrap_or("config")
}

#[tokio::test]
async fn every_body_of_the_corpus_gets_its_verdict_through_the_form_and_the_api() {
    let w = world().await;
    let token = make_token(&w.user, USER_PASSWORD, "ci", "write").await;
    let api = Api::new(w.app.addr, Some(&token));
    let cases = corpus();
    assert!(
        cases.iter().filter(|c| c.verdict == "refused").count() >= 40,
        "the corpus holds at least 40 hostile bodies"
    );
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        // The portal's form.
        let form = w.form(case, &w.domain(&format!("form-{i}")));
        let page = post_owned(&w.user, "/vhosts", &form).await;
        let field = field_of(case);
        match case.verdict.as_str() {
            "accepted" => {
                if page.status != StatusCode::SEE_OTHER {
                    failures.push(format!(
                        "form refused {:?}: {}",
                        case.name,
                        page.texts(".field-error, .notice.error").join(" | ")
                    ));
                }
            }
            _ => {
                let why = page.text(&format!("#{field}-error"));
                if page.status != StatusCode::UNPROCESSABLE_ENTITY || !why.contains(&case.reason) {
                    failures.push(format!(
                        "form {:?}: status {}, beside {field}: {why:?}, other errors {:?}",
                        case.name,
                        page.status,
                        page.texts(".field-error, .notice.error")
                    ));
                }
                // Everything typed comes back (texts are compared with whitespace collapsed).
                let input = if case.template == "raw" {
                    "config"
                } else {
                    field
                };
                let kept = match page.texts(&format!("textarea#{input}")).pop() {
                    Some(text) => text,
                    None => page.attr(&format!("#{input}"), "value").unwrap_or_default(),
                };
                let typed = form
                    .iter()
                    .find(|(k, _)| k == input)
                    .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                if kept.split_whitespace().collect::<Vec<_>>().join(" ") != typed {
                    failures.push(format!("form {:?} lost the input: {kept:?}", case.name));
                }
            }
        }
        // The JSON API.
        let mut body = serde_json::Map::new();
        for (k, v) in w.form(case, &w.domain(&format!("api-{i}"))) {
            if k != "enabled" {
                body.insert(k, Value::String(v));
            }
        }
        let answer = api
            .send(Method::POST, "/api/v1/vhosts", Some(Value::Object(body)))
            .await;
        match case.verdict.as_str() {
            "accepted" => {
                if answer.status != StatusCode::CREATED {
                    failures.push(format!("API refused {:?}: {}", case.name, answer.body));
                }
            }
            _ => {
                let why = answer.json["error"]["fields"][field]
                    .as_str()
                    .unwrap_or_default();
                if answer.status != StatusCode::UNPROCESSABLE_ENTITY || !why.contains(&case.reason)
                {
                    failures.push(format!(
                        "API {:?}: {} {}",
                        case.name, answer.status, answer.body
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Nothing refused reached Caddy: every dial it runs is the backend or the open network.
    let running = w.caddy.running_config().await;
    for dial in dials(&running) {
        assert!(
            dial == w.backend.to_string()
                || dial.starts_with("10.9.")
                || dial.starts_with("api.svc.test")
                || dial == "unix//run/gatehouse-test/php.sock",
            "Caddy runs a dial to {dial}"
        );
    }
}

/// Every `dial` anywhere in Caddy's JSON.
fn dials(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "dial"
                        && let Some(s) = v.as_str()
                    {
                        out.push(s.to_string());
                    }
                    walk(v, out);
                }
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(config, &mut out);
    out
}

#[tokio::test]
async fn anonymous_requests_through_a_users_site_reach_its_backend_and_nothing_else() {
    let w = world().await;
    let shop = w.domain("shop");
    let made = w
        .raw(&w.user, &shop, &format!("reverse_proxy {}", w.backend))
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let host = format!("shop.localhost:{}", w.caddy.http_port);
    common::fleet::eventually(10, "Caddy serves the user's site", || async {
        w.caddy.get(&host, "/").await == (200, "the tenant's own backend".into())
    })
    .await;

    // Each way to the admin API, the agent, the hub or a socket is refused before saving ...
    let targets = [
        (
            "admin",
            w.caddy.admin_addr().to_string(),
            "Caddy admin endpoint",
        ),
        ("agent", w.agent.addr.to_string(), "the agent edge-1"),
        ("hub", w.app.addr.to_string(), "the Gatehouse hub"),
        ("socket", "unix//var/run/docker.sock".into(), "unix socket"),
        (
            "header",
            "{http.request.header.X-Target}".into(),
            "placeholder",
        ),
    ];
    for (name, target, reason) in &targets {
        let domain = w.domain(name);
        let page = w
            .raw(&w.user, &domain, &format!("reverse_proxy {target}"))
            .await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert!(
            page.text("#config-error").contains(reason),
            "{name}: {}",
            page.text("#config-error")
        );
    }
    // ... so anonymous visitors who ask for those sites get nothing of them ...
    for (name, path) in [
        ("admin", "/config/"),
        ("agent", "/health"),
        ("hub", "/healthz"),
    ] {
        let (status, body) = w
            .caddy
            .get(&format!("{name}.localhost:{}", w.caddy.http_port), path)
            .await;
        assert!(
            !body.contains("apps") && !body.contains("agent_version") && body != "ok",
            "{name}{path} answered {status}: {body}"
        );
    }
    // ... and whatever they send to the user's site, it only ever reaches its own backend.
    for (header, value) in [
        ("X-Target", w.caddy.admin_addr().to_string()),
        ("X-Forwarded-Host", w.caddy.admin_addr().to_string()),
    ] {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/config/", w.caddy.http_port))
            .header(reqwest::header::HOST, &host)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.text().await.unwrap(), "the tenant's own backend");
    }
    let running = w.caddy.running_config().await;
    assert_eq!(dials(&running), vec![w.backend.to_string()]);
    // `caddy.default_bind` kept every site on loopback, though the site names no interface.
    let servers = running["apps"]["http"]["servers"].as_object().unwrap();
    for server in servers.values() {
        for listen in server["listen"].as_array().unwrap() {
            assert!(
                listen.as_str().unwrap().starts_with("127.0.0.1:"),
                "{listen}"
            );
        }
    }
}

#[tokio::test]
async fn admins_still_write_anything_caddy_accepts() {
    let w = world().await;
    let domain = w.domain("ops");
    let page = w
        .app
        .post_form(
            "/vhosts",
            &[
                ("domain", &domain),
                ("template", "raw"),
                (
                    "config",
                    &format!(
                        "reverse_proxy {} {{\n\theader_up Host {{upstream_hostport}}\n}}",
                        w.caddy.admin_addr()
                    ),
                ),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
}

#[tokio::test]
async fn the_preview_shows_a_users_refusal_and_no_green_light() {
    let w = world().await;
    let domain = w.domain("preview");
    let target = format!("reverse_proxy {}", w.caddy.admin_addr());
    let page = w
        .user
        .post_form(
            "/vhosts/preview",
            &[
                ("domain", &domain),
                ("template", "raw"),
                ("config", &target),
            ],
        )
        .await;
    assert!(
        page.text("#preview-errors li[data-field=config]")
            .contains("Caddy admin endpoint"),
        "{}",
        page.body
    );
    assert_eq!(page.count("#preview-status.ok"), 0, "{}", page.body);
}

/// Stops the world's agent and waits until the hub has noticed.
async fn agent_gone(w: &mut World) {
    w.agent.terminate();
    let app = &w.app;
    common::fleet::eventually(15, "the agent shows offline", || async {
        app.state
            .db
            .run(|c| gatehouse::db::agents::list(c))
            .await
            .unwrap()
            .iter()
            .all(|a| !a.online)
    })
    .await;
}

#[tokio::test]
async fn a_users_site_waits_for_a_caddy_to_judge_it() {
    // No agent online and no caddy of the hub's own to ask.
    let mut w = world_with(|c| c.vhosts.caddy_binary = String::new()).await;
    agent_gone(&mut w).await;
    let domain = w.domain("later");
    let page = w.raw(&w.user, &domain, "respond \"hi\"").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text(".form-alert, .notice.error")
            .contains("Caddy has checked"),
        "{}",
        page.body
    );
    assert_eq!(page.text("textarea#config"), "respond \"hi\"");
}

#[tokio::test]
async fn with_no_agent_online_the_hubs_own_caddy_judges_a_users_site() {
    let mut w = world_with(|c| c.vhosts.caddy_binary = common::caddy::CADDY_BINARY.into()).await;
    agent_gone(&mut w).await;
    let save = |name: &'static str, config: String| {
        let domain = w.domain(name);
        let w = &w;
        async move { w.raw(&w.user, &domain, &config).await }
    };
    let refused = save("evil", format!("reverse_proxy {}", w.caddy.admin_addr())).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .text("#config-error")
            .contains("Caddy admin endpoint")
    );
    let invalid = save("typo", "frobnicate".into()).await;
    assert!(
        invalid.text("#config-error").contains("not allowed"),
        "the token gate speaks first: {}",
        invalid.text("#config-error")
    );
    let fine = save("fine", "reverse_proxy 10.9.0.8:80".into()).await;
    assert_eq!(fine.status, StatusCode::SEE_OTHER, "{}", fine.body);
}

#[tokio::test]
async fn the_settings_page_opens_networks_and_refuses_bad_entries_beside_their_field() {
    let w = world().await;
    let target = "reverse_proxy 10.77.0.5:8080";
    let refused = w.raw(&w.user, &w.domain("later"), target).await;
    assert!(
        refused
            .text("#config-error")
            .contains("outside the networks")
    );

    let bad = w
        .app
        .post_form(
            "/settings",
            &[
                ("networks", "10.77.0.0/16\n169.254.169.254"),
                ("upstream_hosts", "localhost"),
                ("unix_sockets", "relative.sock"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text("#networks-error").contains("link-local"),
        "{}",
        bad.text("#networks-error")
    );
    assert!(bad.text("#upstream_hosts-error").contains("this machine"));
    assert!(bad.text("#unix_sockets-error").contains("absolute path"));
    assert_eq!(
        bad.text("textarea#networks"),
        "10.77.0.0/16 169.254.169.254",
        "the typed lists come back as typed"
    );

    let saved = w
        .app
        .post_form(
            "/settings",
            &[
                ("networks", "127.0.0.1/32\n10.77.0.0/16"),
                ("upstream_hosts", ""),
                ("unix_sockets", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let page = w.app.get("/settings").await;
    assert_eq!(page.text("textarea#networks"), "127.0.0.1/32 10.77.0.0/16");
    assert!(page.text("#reserved").contains("Caddy admin endpoint"));
    assert!(
        w.app
            .audit_actions()
            .await
            .contains(&"settings_changed".to_string())
    );

    let accepted = w.raw(&w.user, &w.domain("later"), target).await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    // The page replaced the config file's lists: the host name listed there is closed now.
    let closed = w
        .raw(&w.user, &w.domain("named"), "reverse_proxy api.svc.test:80")
        .await;
    assert!(closed.text("#config-error").contains("host name"));
    // Users cannot open the page.
    assert_eq!(w.user.get("/settings").await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_admin_finds_the_users_sites_that_break_the_policy_now() {
    let w = world().await;
    let user_id = w
        .app
        .state
        .db
        .run(|c| {
            Ok(
                gatehouse::db::users::find_by_email(c, "tenant@example.com")?
                    .unwrap()
                    .id,
            )
        })
        .await
        .unwrap();
    // An admin may write anything, and gives the site to the user: as a site saved before
    // the policy existed would be.
    let old = w.domain("legacy");
    let given = w
        .app
        .post_form(
            "/vhosts",
            &[
                ("domain", &old),
                ("template", "raw"),
                ("config", &format!("reverse_proxy {}", w.caddy.admin_addr())),
                ("owner_id", &user_id.to_string()),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(given.status, StatusCode::SEE_OTHER, "{}", given.body);
    let fine = w.domain("fine");
    let made = w.raw(&w.user, &fine, "reverse_proxy 10.9.0.9:80").await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);

    let page = w.app.post_form("/settings/review", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let row = format!("#breaches tr[data-domain=\"{old}\"]");
    assert!(
        page.text(&row).contains("Caddy admin endpoint"),
        "{}",
        page.body
    );
    assert_eq!(
        page.count(&format!("#breaches tr[data-domain=\"{fine}\"]")),
        0
    );
    assert_eq!(page.count("#breaches tbody tr"), 1);
    // Users cannot run it.
    assert_eq!(
        w.user.post_form("/settings/review", &[]).await.status,
        StatusCode::FORBIDDEN
    );
}
