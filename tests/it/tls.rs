//! TLS between hub and agent with the real agent binary, a real Caddy and certificates made
//! here with rcgen: the agent serves HTTPS only; the hub trusts it through a pasted CA, a
//! pinned fingerprint or the public PKI, and says plainly why when it does not.

use crate::common::binary;
use crate::common::caddy::Caddy;
use crate::common::fleet::{AGENT_TOKEN, AgentProc, agent_id, eventually, hub};
use crate::common::{ChildGuard, Page, TestApp};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// PEM files for one agent, in a temp dir that lives as long as this.
struct AgentCert {
    dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    /// What the hub is given to trust: the CA's certificate (for a self-signed one, itself).
    ca_pem: String,
    /// SHA-256 of the agent's certificate, as openssl prints it (`AB:CD:…`).
    fingerprint: String,
}

impl AgentCert {
    fn write(leaf_pem: &str, key: &KeyPair, ca_pem: String, leaf_der: &[u8]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key_path) = (dir.path().join("agent.pem"), dir.path().join("agent.key"));
        std::fs::write(&cert, leaf_pem).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let fingerprint = Sha256::digest(leaf_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        Self {
            dir,
            cert,
            key: key_path,
            ca_pem,
            fingerprint,
        }
    }

    fn leaf_params() -> CertificateParams {
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("valid names");
        params
            .distinguished_name
            .push(DnType::CommonName, "gatehouse agent");
        params
    }

    /// A leaf for 127.0.0.1 signed by a fresh private CA.
    fn signed_by_a_private_ca() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "gatehouse test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let leaf = Self::leaf_params().signed_by(&key, &issuer).unwrap();
        Self::write(&leaf.pem(), &key, ca_cert.pem(), leaf.der())
    }

    /// A self-signed leaf for 127.0.0.1 (CA:FALSE, as the README's openssl command makes).
    fn self_signed() -> Self {
        let key = KeyPair::generate().unwrap();
        let leaf = Self::leaf_params().self_signed(&key).unwrap();
        Self::write(&leaf.pem(), &key, leaf.pem(), leaf.der())
    }

    /// A self-signed certificate marked CA:TRUE, as `openssl req -x509` makes by default.
    fn self_signed_as_a_ca() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = Self::leaf_params();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let leaf = params.self_signed(&key).unwrap();
        Self::write(&leaf.pem(), &key, leaf.pem(), leaf.der())
    }
}

/// Adds an agent through the form with extra TLS fields; returns the page.
async fn add_agent(app: &TestApp, name: &str, url: &str, tls: &[(&str, &str)]) -> Page {
    let mut form = vec![("name", name), ("url", url), ("token", AGENT_TOKEN)];
    form.extend_from_slice(tls);
    app.post_form("/agents", &form).await
}

/// Creates an enabled site on `caddy`'s test port answering `reply`; returns the response.
async fn make_site(app: &TestApp, name: &str, caddy: &Caddy, reply: &str) -> Page {
    let domain = format!("http://{name}.localhost:{}", caddy.http_port);
    let config = format!("bind 127.0.0.1\nrespond \"{reply}\"");
    app.post_form(
        "/vhosts",
        &[
            ("domain", &domain),
            ("template", "raw"),
            ("config", &config),
            ("enabled", "on"),
        ],
    )
    .await
}

fn row(name: &str) -> String {
    format!("article.agent-row[data-agent={name}]")
}

#[tokio::test]
async fn an_agent_with_tls_serves_health_over_https_refuses_plain_http_and_stops_on_sigterm() {
    let caddy = Caddy::start().await;
    let pki = AgentCert::signed_by_a_private_ca();
    let mut agent = AgentProc::start_tls(&caddy, &pki.cert, &pki.key).await;

    let trusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let health = trusting
        .get(format!("https://{}/health", agent.addr))
        .send()
        .await
        .expect("HTTPS with the agent's CA");
    assert_eq!(health.status(), StatusCode::OK);
    let health: serde_json::Value = health.json().await.unwrap();
    assert_eq!(health["tls"], true, "{health}");
    assert_eq!(health["caddy"]["reachable"], true, "{health}");

    let plain = reqwest::Client::new()
        .get(format!("http://{}/health", agent.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.as_ref().is_err(),
        "plain HTTP gets no answer: {plain:?}"
    );

    let without_tls = AgentProc::start(&caddy).await;
    assert_eq!(without_tls.health().await["tls"], false);

    assert!(
        agent.terminate().success(),
        "SIGTERM stops the HTTPS agent cleanly"
    );
}

#[tokio::test]
async fn the_hub_with_the_agents_ca_pasted_deploys_a_site_over_https() {
    let caddy = Caddy::start().await;
    let pki = AgentCert::signed_by_a_private_ca();
    let agent = AgentProc::start_tls(&caddy, &pki.cert, &pki.key).await;
    let app = hub(|_| {}).await;

    let added = add_agent(&app, "edge-1", &agent.url(), &[("tls_ca", &pki.ca_pem)]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let made = make_site(&app, "secure", &caddy, "over https").await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);

    let host = format!("secure.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await, (200, "over https".into()));
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr(&row("edge-1"), "data-state").as_deref(),
        Some("in sync"),
        "{}",
        page.body
    );
    assert_eq!(
        page.attr(&format!("{} .agent-tls", row("edge-1")), "data-tls")
            .as_deref(),
        Some("custom CA")
    );
    let edit = app
        .get(&format!("/agents/{}/edit", agent_id(&app, "edge-1").await))
        .await;
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(
        edit.text("#edit-agent #tls_ca"),
        words(&pki.ca_pem),
        "the edit form shows the stored CA"
    );
}

#[tokio::test]
async fn an_agent_declared_in_the_hub_config_with_its_ca_file_is_trusted_and_caught_up() {
    let caddy = Caddy::start().await;
    let pki = AgentCert::signed_by_a_private_ca();
    let agent = AgentProc::start_tls(&caddy, &pki.cert, &pki.key).await;
    let ca_file = pki.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let app = hub(|c| {
        c.fleet.agents = vec![gatehouse::config::AgentDecl {
            name: "edge-1".into(),
            url: agent.url(),
            token: gatehouse::config::Secret::new(AGENT_TOKEN),
            token_file: String::new(),
            tls_ca_file: ca_file.to_str().unwrap().into(),
            tls_pin: String::new(),
        }];
    })
    .await;

    eventually(
        10,
        "the reconciler brings the declared agent in sync",
        || async {
            app.get("/agents")
                .await
                .attr(&row("edge-1"), "data-state")
                .as_deref()
                == Some("in sync")
        },
    )
    .await;
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr(&format!("{} .agent-tls", row("edge-1")), "data-tls")
            .as_deref(),
        Some("custom CA")
    );
}

#[tokio::test]
async fn the_hub_deploys_with_the_right_pin_and_a_wrong_pin_leaves_the_agent_out_of_sync_with_the_reason()
 {
    let caddy = Caddy::start().await;
    let pki = AgentCert::self_signed();
    let agent = AgentProc::start_tls(&caddy, &pki.cert, &pki.key).await;
    // A slow reconciler, so what the page shows is what the deploy left.
    let app = hub(|c| c.fleet.reconcile_interval_secs = 3600).await;

    let added = add_agent(
        &app,
        "edge-1",
        &agent.url(),
        &[("tls_pin", &pki.fingerprint)],
    )
    .await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let id = agent_id(&app, "edge-1").await;
    let made = make_site(&app, "pinned", &caddy, "pinned ok").await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let host = format!("pinned.localhost:{}", caddy.http_port);
    assert_eq!(caddy.get(&host, "/").await, (200, "pinned ok".into()));
    let page = app.get("/agents").await;
    assert_eq!(
        page.attr(&row("edge-1"), "data-state").as_deref(),
        Some("in sync")
    );
    assert_eq!(
        page.attr(&format!("{} .agent-tls", row("edge-1")), "data-tls")
            .as_deref(),
        Some("pinned")
    );

    // The agent now presents another certificate than the one pinned.
    let wrong = "00:".repeat(31) + "00";
    let edited = app
        .post_form(
            &format!("/agents/{id}"),
            &[
                ("name", "edge-1"),
                ("url", &agent.url()),
                ("tls_pin", &wrong),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let made = make_site(&app, "later", &caddy, "made meanwhile").await;
    assert_eq!(
        made.status,
        StatusCode::SEE_OTHER,
        "the change stands, as for an unreachable agent: {}",
        made.body
    );
    // Caddy answers an unknown host on a port it serves with an empty 200: compare bodies.
    let later = format!("later.localhost:{}", caddy.http_port);
    assert_ne!(
        caddy.get(&later, "/").await.1,
        "made meanwhile",
        "nothing reached Caddy"
    );
    assert_eq!(
        caddy.get(&host, "/").await,
        (200, "pinned ok".into()),
        "the old config still runs"
    );

    let page = app.get("/agents").await;
    assert_eq!(
        page.attr(&row("edge-1"), "data-state").as_deref(),
        Some("offline"),
        "{}",
        page.body
    );
    let error = page.text(&format!("{} .agent-error", row("edge-1")));
    assert!(
        error.contains("does not match the pinned fingerprint") && error.contains(&pki.fingerprint),
        "names the reason and what the agent presents: {error}"
    );
    let tested = app.post_form(&format!("/agents/{id}/test"), &[]).await;
    assert!(
        tested
            .text(".agent-outcome")
            .contains("does not match the pinned fingerprint"),
        "{}",
        tested.body
    );

    // Putting the right pin back lets the agent catch up.
    let fixed = app
        .post_form(
            &format!("/agents/{id}"),
            &[
                ("name", "edge-1"),
                ("url", &agent.url()),
                ("tls_pin", &pki.fingerprint),
            ],
        )
        .await;
    assert_eq!(fixed.status, StatusCode::SEE_OTHER, "{}", fixed.body);
    let synced = app.post_form(&format!("/agents/{id}/sync"), &[]).await;
    assert_eq!(synced.status, StatusCode::SEE_OTHER, "{}", synced.body);
    eventually(10, "Caddy serves the change made meanwhile", || async {
        caddy.get(&later, "/").await.1 == "made meanwhile"
    })
    .await;
}

#[tokio::test]
async fn a_self_signed_agent_trusted_through_the_public_pki_is_refused_as_an_unknown_issuer_and_plain_http_is_explained()
 {
    let caddy = Caddy::start().await;
    let pki = AgentCert::self_signed();
    let agent = AgentProc::start_tls(&caddy, &pki.cert, &pki.key).await;
    let app = hub(|c| c.fleet.reconcile_interval_secs = 3600).await;

    let added = add_agent(&app, "edge-1", &agent.url(), &[]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let made = make_site(&app, "public", &caddy, "never served").await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let host = format!("public.localhost:{}", caddy.http_port);
    assert_ne!(caddy.get(&host, "/").await.1, "never served");

    let page = app.get("/agents").await;
    assert_eq!(
        page.attr(&row("edge-1"), "data-state").as_deref(),
        Some("not contacted yet"),
        "never reached, like any agent that never answered"
    );
    assert_eq!(
        page.attr(&format!("{} .agent-tls", row("edge-1")), "data-tls")
            .as_deref(),
        Some("public CA")
    );
    let error = page.text(&format!("{} .agent-error", row("edge-1")));
    assert!(
        error.contains("unknown issuer") && error.contains("not signed by a publicly trusted CA"),
        "{error}"
    );

    let plain_url = agent.url().replace("https://", "http://");
    let added = add_agent(&app, "edge-plain", &plain_url, &[]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let page = app.get("/agents").await;
    let error = page.text(&format!("{} .agent-error", row("edge-plain")));
    assert!(
        error.contains("must start with https://"),
        "plain HTTP to an HTTPS agent says what to change: {error}"
    );
}

#[tokio::test]
async fn a_self_signed_certificate_marked_as_a_ca_is_explained_and_a_pin_still_takes_it() {
    let caddy = Caddy::start().await;
    let pki = AgentCert::self_signed_as_a_ca();
    let agent = AgentProc::start_tls(&caddy, &pki.cert, &pki.key).await;
    let app = hub(|c| c.fleet.reconcile_interval_secs = 3600).await;

    let added = add_agent(&app, "edge-1", &agent.url(), &[("tls_ca", &pki.ca_pem)]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let page = app.get("/agents").await;
    let error = page.text(&format!("{} .agent-error", row("edge-1")));
    assert!(
        error.contains("marked as a CA") && error.contains("CA:FALSE"),
        "{error}"
    );

    let id = agent_id(&app, "edge-1").await;
    let pinned = app
        .post_form(
            &format!("/agents/{id}"),
            &[
                ("name", "edge-1"),
                ("url", &agent.url()),
                ("tls_pin", &pki.fingerprint),
            ],
        )
        .await;
    assert_eq!(pinned.status, StatusCode::SEE_OTHER, "{}", pinned.body);
    let tested = app.post_form(&format!("/agents/{id}/test"), &[]).await;
    assert!(
        tested.text(".agent-outcome").starts_with("Connected."),
        "{}",
        tested.body
    );
}

/// Runs the agent binary with these settings and returns its exit code and stderr; it must
/// stop by itself within ten seconds.
fn refused_start(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = ChildGuard(
        binary::gatehouse()
            .arg("agent")
            .env("GATEHOUSE_AGENT_TOKEN", AGENT_TOKEN)
            .env("GATEHOUSE_AGENT_LISTEN", "127.0.0.1:0")
            .env("GATEHOUSE_AGENT_CADDY_BINARY", "")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start the agent"),
    );
    for _ in 0..100 {
        if let Some(status) = child.0.try_wait().unwrap() {
            return (
                status.code(),
                std::fs::read_to_string(&stderr_path).unwrap(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the agent started instead of refusing: {env:?}");
}

#[test]
fn the_agent_refuses_to_start_with_only_one_of_tls_cert_and_tls_key_naming_the_missing_one() {
    let (code, err) = refused_start(&[("GATEHOUSE_AGENT_TLS_CERT", "/etc/gatehouse/agent.pem")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`tls_key`"), "{err}");

    let (code, err) = refused_start(&[("GATEHOUSE_AGENT_TLS_KEY", "/etc/gatehouse/agent.key")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`tls_cert`"), "{err}");

    let pki = AgentCert::self_signed();
    let (code, err) = refused_start(&[
        ("GATEHOUSE_AGENT_TLS_CERT", "/nonexistent/agent.pem"),
        ("GATEHOUSE_AGENT_TLS_KEY", pki.key.to_str().unwrap()),
    ]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("`tls_cert`") && err.contains("/nonexistent/agent.pem"),
        "{err}"
    );
    let (code, err) = refused_start(&[
        ("GATEHOUSE_AGENT_TLS_CERT", pki.cert.to_str().unwrap()),
        ("GATEHOUSE_AGENT_TLS_KEY", pki.cert.to_str().unwrap()),
    ]);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("`tls_key`"),
        "a certificate is not a key: {err}"
    );
    drop(pki.dir);
}

#[tokio::test]
async fn a_bad_pem_or_fingerprint_comes_back_422_with_the_reason_beside_the_field_and_the_input_kept()
 {
    let app = hub(|c| c.fleet.reconcile_interval_secs = 3600).await;
    let url = "https://127.0.0.1:9";

    let refused = add_agent(
        &app,
        "edge-1",
        url,
        &[("tls_ca", "not a certificate"), ("tls_pin", "12:34:zz")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.text("#new-agent #tls_ca-error").contains("PEM"),
        "{}",
        refused.body
    );
    assert!(
        refused
            .text("#new-agent #tls_pin-error")
            .contains("64 hex digits")
    );
    assert_eq!(refused.text("#new-agent #tls_ca"), "not a certificate");
    assert_eq!(
        refused.attr("#new-agent #tls_pin", "value").as_deref(),
        Some("12:34:zz")
    );
    assert_eq!(
        refused.attr("#new-agent #name", "value").as_deref(),
        Some("edge-1")
    );

    let pki = AgentCert::self_signed();
    let on_http = add_agent(
        &app,
        "edge-1",
        "http://127.0.0.1:9",
        &[("tls_pin", &pki.fingerprint)],
    )
    .await;
    assert_eq!(on_http.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(on_http.text("#new-agent #url-error").contains("https://"));

    let added = add_agent(&app, "edge-1", url, &[("tls_pin", &pki.fingerprint)]).await;
    assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    let id = agent_id(&app, "edge-1").await;
    let edit = app.get(&format!("/agents/{id}/edit")).await;
    assert_eq!(
        edit.attr("#edit-agent #tls_pin", "value").as_deref(),
        Some(pki.fingerprint.as_str()),
        "the stored pin is shown the way openssl prints it"
    );

    let both = app
        .post_form(
            &format!("/agents/{id}"),
            &[
                ("name", "edge-1"),
                ("url", url),
                ("tls_ca", &pki.ca_pem),
                ("tls_pin", "abc"),
            ],
        )
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        both.text("#edit-agent #tls_pin-error")
            .contains("64 hex digits")
    );
    assert_eq!(
        both.attr("#edit-agent #tls_pin", "value").as_deref(),
        Some("abc")
    );
    assert!(
        both.text("#edit-agent #tls_ca")
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "the pasted CA is kept"
    );
    let key = std::fs::read_to_string(&pki.key).unwrap();
    let with_key = app
        .post_form(
            &format!("/agents/{id}"),
            &[
                ("name", "edge-1"),
                ("url", url),
                ("tls_ca", &format!("{}\n{key}", pki.ca_pem)),
            ],
        )
        .await;
    assert_eq!(with_key.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        with_key
            .text("#edit-agent #tls_ca-error")
            .contains("private key")
    );
    let stored = app
        .state
        .db
        .run(move |c| gatehouse::db::agents::find(c, id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tls_ca, None, "nothing refused was stored");
    assert_eq!(
        stored.tls_pin.as_deref(),
        Some(pki.fingerprint.replace(':', "").to_lowercase().as_str())
    );
}
