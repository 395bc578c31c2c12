//! The real agent binary against a real Caddy 2.6.2: token checks, reload and validate with
//! Caddy's own answers, the applied hash, what Caddy then serves, and start-up refusals.
//! Every test runs its own Caddy and agent on their own ports; both are stopped by PID.

use crate::common::binary;
use crate::common::caddy::{CADDY_BINARY, Caddy};
use crate::common::{ChildGuard, free_port};
use gatehouse::domain::caddyfile::config_hash;
use reqwest::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const TOKEN: &str = "test-agent-token-0123456789";

/// A running agent process and a client for its API.
struct Agent {
    process: ChildGuard,
    addr: SocketAddr,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts the agent in front of `caddy` and waits (bounded) until /health answers.
    async fn start(caddy: &Caddy) -> Self {
        Self::start_with(&caddy.admin_url()).await
    }

    async fn start_with(caddy_admin: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the agent");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log_path = dir.path().join("agent.log");
        let log = std::fs::File::create(&log_path).expect("agent log file");
        let mut command = binary::agent(&addr.to_string(), TOKEN, caddy_admin);
        command
            .env("GATEHOUSE_AGENT_CADDY_BINARY", CADDY_BINARY)
            .env("GATEHOUSE_AGENT_LOG_LEVEL", "debug")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        let health = format!("http://{addr}/health");
        let process = binary::start(&mut command, &health, || {
            std::fs::read_to_string(&log_path).unwrap_or_default()
        })
        .await;
        Self {
            process,
            addr,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    async fn health(&self) -> Value {
        let response = self
            .http
            .get(self.url("/health"))
            .send()
            .await
            .expect("GET /health");
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("JSON health")
    }

    /// POSTs a Caddyfile with the right token.
    async fn post(&self, path: &str, caddyfile: &str) -> (StatusCode, Value) {
        self.post_as(path, caddyfile, Some(&format!("Bearer {TOKEN}")))
            .await
    }

    async fn post_as(
        &self,
        path: &str,
        caddyfile: &str,
        authorization: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.post(self.url(path)).body(caddyfile.to_string());
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        let response = request.send().await.expect("POST");
        let status = response.status();
        let body = response.text().await.expect("body");
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {body}\n{}", self.log()));
        (status, json)
    }

    async fn reload(&self, caddyfile: &str) -> (StatusCode, Value) {
        self.post("/caddy/reload", caddyfile).await
    }

    async fn validate(&self, caddyfile: &str) -> (StatusCode, Value) {
        self.post("/caddy/validate", caddyfile).await
    }
}

/// A fmt-clean Caddyfile that keeps Caddy's admin endpoint where it is, with `sites`.
fn caddyfile(caddy: &Caddy, sites: &[String]) -> String {
    let mut text = format!("{{\n\tadmin {}\n\tauto_https off\n}}\n", caddy.admin_addr());
    for site in sites {
        text.push('\n');
        text.push_str(site);
    }
    text
}

/// `http://<name>.localhost:<http_port>`, bound to loopback only, answering `body`.
fn site(caddy: &Caddy, name: &str, body: &str) -> String {
    format!(
        "http://{name}.localhost:{} {{\n\tbind 127.0.0.1\n\trespond \"{body}\" 200\n}}\n",
        caddy.http_port
    )
}

fn host(caddy: &Caddy, name: &str) -> String {
    format!("{name}.localhost:{}", caddy.http_port)
}

/// Starts Caddy and an agent, and applies one site `app` answering "hello".
async fn caddy_serving_hello() -> (Caddy, Agent, String) {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let text = caddyfile(&caddy, &[site(&caddy, "app", "hello")]);
    let (status, body) = agent.reload(&text).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", agent.log());
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await,
        (200, "hello".into())
    );
    (caddy, agent, text)
}

#[tokio::test]
async fn health_without_a_token_reports_caddy_reachable_its_version_its_admin_address_and_no_applied_hash()
 {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;

    let health = agent.health().await;

    assert_eq!(health["status"], "ok");
    assert_eq!(health["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(health["caddy"]["reachable"], true, "{health}");
    let version = health["caddy"]["version"].as_str().expect("a version");
    assert!(version.contains("2.6"), "{version}");
    assert_eq!(health["caddy"]["admin"], caddy.admin_addr().to_string());
    assert_eq!(health["applied_hash"], Value::Null);
    assert_eq!(health["access_log"], "/var/log/caddy/gatehouse-access.log");
}

#[tokio::test]
async fn the_agent_stops_cleanly_on_sigterm() {
    let caddy = Caddy::start().await;
    let mut agent = Agent::start(&caddy).await;

    let status = agent.process.terminate();

    assert!(status.success(), "{status}\n{}", agent.log());
    assert!(agent.log().contains("stopped"), "{}", agent.log());
}

#[tokio::test]
async fn reload_and_validate_refuse_a_missing_or_wrong_token_with_401() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let text = caddyfile(&caddy, &[site(&caddy, "app", "hello")]);
    let wrong = format!("Bearer {TOKEN}x");
    let basic = format!("Basic {TOKEN}");

    for path in ["/caddy/reload", "/caddy/validate"] {
        for authorization in [
            None,
            Some(wrong.as_str()),
            Some(basic.as_str()),
            Some("Bearer "),
        ] {
            let (status, body) = agent.post_as(path, &text, authorization).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {authorization:?}");
            assert_eq!(body, serde_json::json!({ "error": "unauthorized" }));
        }
    }
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await.0,
        0,
        "nothing was loaded"
    );
    assert_eq!(agent.health().await["applied_hash"], Value::Null);
}

#[tokio::test]
async fn a_valid_caddyfile_is_applied_its_hash_reported_and_its_site_served() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let text = caddyfile(&caddy, &[site(&caddy, "app", "hello")]);

    let (status, body) = agent.reload(&text).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = config_hash(&text);
    assert_eq!(
        body,
        serde_json::json!({ "status": "applied", "hash": hash, "warnings": [] })
    );
    assert_eq!(agent.health().await["applied_hash"], hash);
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await,
        (200, "hello".into())
    );
    assert!(caddy.admin_answers().await, "the admin endpoint stayed put");
}

#[tokio::test]
async fn a_caddyfile_with_an_unknown_directive_is_rejected_in_caddys_words_and_changes_nothing() {
    let (caddy, agent, applied) = caddy_serving_hello().await;
    let broken = caddyfile(
        &caddy,
        &[format!(
            "http://app.localhost:{} {{\n\tbind 127.0.0.1\n\tfrobnicate\n}}\n",
            caddy.http_port
        )],
    );

    let (status, body) = agent.reload(&broken).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["caddy_status"], 400);
    let error = body["error"].as_str().expect("Caddy's message");
    assert!(
        error.contains("Caddyfile:8: unrecognized directive: frobnicate"),
        "{error}"
    );
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await,
        (200, "hello".into())
    );
    assert_eq!(agent.health().await["applied_hash"], config_hash(&applied));
}

#[tokio::test]
async fn a_caddyfile_that_is_not_fmt_clean_is_applied_with_caddys_warnings() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let untidy = format!(
        "{}\n\n",
        caddyfile(
            &caddy,
            &[format!(
                "http://app.localhost:{} {{\n  bind 127.0.0.1\n\trespond \"untidy\" 200\n}}\n",
                caddy.http_port
            )]
        )
    );

    let (status, body) = agent.reload(&untidy).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "applied");
    assert_eq!(body["hash"], config_hash(&untidy));
    let warnings = body["warnings"].as_array().expect("warnings");
    assert!(!warnings.is_empty(), "{body}");
    assert_eq!(warnings[0]["file"], "Caddyfile");
    assert!(warnings[0]["line"].as_u64().is_some(), "{body}");
    assert!(
        warnings[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not formatted")),
        "{body}"
    );
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await,
        (200, "untidy".into())
    );
}

#[tokio::test]
async fn validate_says_invalid_in_caddys_words_and_loads_nothing() {
    let (caddy, agent, applied) = caddy_serving_hello().await;
    let broken = caddyfile(
        &caddy,
        &[format!(
            "http://app.localhost:{} {{\n\tbind 127.0.0.1\n\tfrobnicate\n}}\n",
            caddy.http_port
        )],
    );
    let other = caddyfile(&caddy, &[site(&caddy, "app", "changed")]);

    let (status, body) = agent.validate(&broken).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["status"], "invalid");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unrecognized directive: frobnicate")),
        "{body}"
    );

    let (status, body) = agent.validate(&other).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "status": "valid", "warnings": [] })
    );

    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await,
        (200, "hello".into())
    );
    assert_eq!(agent.health().await["applied_hash"], config_hash(&applied));
}

#[tokio::test]
async fn validate_passes_on_caddys_warnings_for_a_caddyfile_that_is_not_fmt_clean() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let untidy = format!("{}\n\n", caddyfile(&caddy, &[site(&caddy, "app", "x")]));

    let (status, body) = agent.validate(&untidy).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "valid");
    assert!(
        body["warnings"].as_array().is_some_and(|w| !w.is_empty()),
        "{body}"
    );
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await.0,
        0,
        "nothing was loaded"
    );
}

#[tokio::test]
async fn with_caddy_stopped_reload_answers_502_and_health_says_unreachable() {
    let mut caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let text = caddyfile(&caddy, &[site(&caddy, "app", "hello")]);
    caddy.stop();

    let (status, body) = agent.reload(&text).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "caddy_unreachable");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains(&caddy.admin_addr().to_string())),
        "{body}"
    );

    let (status, body) = agent.validate(&text).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "caddy_unreachable");

    let health = agent.health().await;
    assert_eq!(health["caddy"]["reachable"], false, "{health}");
    assert_eq!(health["applied_hash"], Value::Null);
}

#[tokio::test]
async fn concurrent_reloads_leave_the_hash_of_the_caddyfile_caddy_actually_runs() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let texts: Vec<String> = (0..6)
        .map(|n| caddyfile(&caddy, &[site(&caddy, "app", &format!("version {n}"))]))
        .collect();

    let results = futures::future::join_all(texts.iter().map(|text| agent.reload(text))).await;

    for (status, body) in &results {
        assert_eq!(*status, StatusCode::OK, "{body}");
    }
    let (_, served) = caddy.get(&host(&caddy, "app"), "/").await;
    let running = texts
        .iter()
        .find(|text| text.contains(&format!("\"{served}\"")))
        .unwrap_or_else(|| panic!("Caddy serves {served:?}, none of the pushes"));
    assert_eq!(agent.health().await["applied_hash"], config_hash(running));
}

#[tokio::test]
async fn the_agent_reaches_caddy_by_the_name_localhost_too() {
    // Caddy's admin API refuses a Host header that does not name one of its listen
    // addresses, so this proves the agent sends `localhost:<port>` when configured so.
    let caddy = Caddy::start().await;
    let agent = Agent::start_with(&format!("http://localhost:{}", caddy.admin_addr().port())).await;

    let health = agent.health().await;
    assert_eq!(
        health["caddy"]["reachable"],
        true,
        "{health}\n{}",
        agent.log()
    );
    assert_eq!(
        health["caddy"]["admin"],
        format!("localhost:{}", caddy.admin_addr().port())
    );
    let text = caddyfile(&caddy, &[site(&caddy, "app", "hello")]);
    let (status, body) = agent.reload(&text).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn reloads_still_work_when_caddy_enforces_the_origin_header() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;
    let strict = |body: &str| {
        format!(
            "{{\n\tadmin {} {{\n\t\tenforce_origin\n\t}}\n\tauto_https off\n}}\n\n{}",
            caddy.admin_addr(),
            site(&caddy, "app", body)
        )
    };

    let (status, body) = agent.reload(&strict("first")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        caddy.running_config().await["admin"]["enforce_origin"],
        true,
        "{}",
        caddy.log()
    );
    let without_origin = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{}/config/", caddy.admin_url()))
        .send()
        .await
        .expect("GET /config/");
    assert_eq!(
        without_origin.status(),
        StatusCode::FORBIDDEN,
        "Caddy now refuses requests without an Origin"
    );
    let (status, body) = agent.reload(&strict("second")).await;
    assert_eq!(status, StatusCode::OK, "{body}\n{}", caddy.log());
    assert_eq!(
        caddy.get(&host(&caddy, "app"), "/").await,
        (200, "second".into())
    );
    assert_eq!(agent.health().await["caddy"]["reachable"], true);
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_refused_before_caddy_sees_it() {
    let caddy = Caddy::start().await;
    let agent = Agent::start(&caddy).await;

    let response = agent
        .http
        .post(agent.url("/caddy/reload"))
        .header(reqwest::header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(vec![0xff, 0xfe, b'{', b'}'])
        .send()
        .await
        .expect("POST");

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.expect("JSON");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("UTF-8")),
        "{body}"
    );
}

fn refused_start(envs: &[(&str, &str)]) -> String {
    let out = binary::gatehouse()
        .arg("agent")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run the agent");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_agent_refuses_to_start_with_a_non_loopback_caddy_admin_naming_the_key() {
    let err = refused_start(&[
        ("GATEHOUSE_AGENT_TOKEN", TOKEN),
        ("GATEHOUSE_AGENT_CADDY_ADMIN", "http://192.0.2.10:2019"),
    ]);
    assert!(
        err.contains("`caddy_admin`")
            && err.contains("GATEHOUSE_AGENT_CADDY_ADMIN")
            && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn the_agent_refuses_to_start_without_a_token_naming_the_key() {
    let err = refused_start(&[]);
    assert!(
        err.contains("`token`") && err.contains("token_file"),
        "{err}"
    );

    let err = refused_start(&[("GATEHOUSE_AGENT_TOKEN", "too-short")]);
    assert!(
        err.contains("`token`") && err.contains("at least 16"),
        "{err}"
    );
}

#[test]
fn the_agent_reads_its_config_file_and_names_a_bad_key_in_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        format!("token = \"{TOKEN}\"\ncaddy_adimn = \"http://localhost:2019\"\n"),
    )
    .unwrap();

    let out = binary::gatehouse()
        .arg("agent")
        .args(["--config", path(&file)])
        .stdin(Stdio::null())
        .output()
        .expect("run the agent");

    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("caddy_adimn"), "{err}");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}
