//! Shared test support for the integration tests, the browser journeys and the benchmarks:
//! `TestApp` runs the real hub on port 0 with its own SQLite file and gives a cookie-keeping
//! client with one helper per route; `html` helpers select with CSS; the fixtures below
//! start from an admin signed in, or a `user`.

pub mod api;
pub mod binary;
pub mod caddy;
pub mod fleet;
pub mod loadgen;

use gatehouse::app::Server;
use gatehouse::config::{Config, Secret};
use gatehouse::db::{audit, users};
use gatehouse::domain::{DisplayName, Email, Role};
use gatehouse::web::AppState;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use scraper::{ElementRef, Html, Selector};
use std::net::SocketAddr;
use std::path::PathBuf;

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
pub const USER_PASSWORD: &str = "user password that is long";
/// The names every `user` of [`TestApp::add_user`] may serve: the suite's test domains.
/// Delegation itself is tested with [`TestApp::add_user_with_grants`].
pub const TEST_GRANTS: &[&str] = &[
    "*.example.com",
    "*.example.org",
    "*.example.net",
    "*.localhost",
    "*.agency.test",
    "*.internal.test",
];

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    /// The default visitor; `visitor()` makes more, each with its own cookie jar.
    pub client: Visitor,
    pub setup_token: String,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for TestApp {
    type Target = Visitor;
    fn deref(&self) -> &Visitor {
        &self.client
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a hub on a random loopback port with a fresh data directory.
    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let setup_token = gatehouse::auth::token::random_hex(16);
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("data"),
            setup_token: Secret::new(setup_token.clone()),
            ..Config::default()
        };
        configure(&mut config);
        let server = Server::bind(config).await.expect("hub starts");
        let addr = server.local_addr();
        let state = server.state.clone();
        tokio::spawn(server.run(std::future::pending()));
        let client = Visitor::new(addr, setup_token.clone());
        Self {
            addr,
            state,
            client,
            setup_token,
            dir,
        }
    }

    /// Someone else, with an empty cookie jar.
    pub fn visitor(&self) -> Visitor {
        Visitor::new(self.addr, self.setup_token.clone())
    }

    pub fn db_path(&self) -> PathBuf {
        self.state.config.db_path()
    }

    /// Adds an account straight into the database (role `user` or `admin`), returning its id.
    /// A `user` is granted [`TEST_GRANTS`], as an admin would grant them on the user's page.
    pub async fn add_user(&self, email: &str, role: Role) -> i64 {
        let grants = if role == Role::User { TEST_GRANTS } else { &[] };
        self.add_user_with_grants(email, role, grants).await
    }

    /// Adds an account with exactly these delegated names (see `domain::vhost::Grant`).
    pub async fn add_user_with_grants(&self, email: &str, role: Role, grants: &[&str]) -> i64 {
        let email = Email::parse(email).unwrap();
        let hash = gatehouse::auth::password::hash(USER_PASSWORD);
        let grants: Vec<String> = grants
            .iter()
            .map(|g| {
                gatehouse::domain::vhost::Grant::parse(g)
                    .unwrap()
                    .as_str()
                    .to_string()
            })
            .collect();
        self.state
            .db
            .run(move |c| {
                let name = DisplayName::parse("Test User").unwrap();
                let id = users::insert(
                    c,
                    &users::NewUser {
                        name: &name,
                        email: &email,
                        password_hash: &hash,
                        role,
                    },
                )
                .unwrap();
                for g in &grants {
                    gatehouse::db::grants::insert(c, id, g, None)?;
                }
                Ok(id)
            })
            .await
            .unwrap()
    }

    pub async fn audit_actions(&self) -> Vec<String> {
        self.state
            .db
            .run(|c| audit::list(c, None, None, 1000))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect()
    }
}

/// A hub with an enrolled admin signed in as the default visitor, and sign-in attempts
/// limited loosely enough for any test; returns the admin's TOTP secret with it.
pub async fn app_with_admin() -> (TestApp, String) {
    app_with_admin_and(|_| {}).await
}

/// As [`app_with_admin`], with more settings.
pub async fn app_with_admin_and(configure: impl FnOnce(&mut Config)) -> (TestApp, String) {
    let app = TestApp::spawn_with(|c| {
        c.security.login_attempts_per_minute = 1000;
        configure(c);
    })
    .await;
    app.create_admin().await;
    let secret = app.login_and_enrol(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    (app, secret)
}

/// A `user` (granted [`TEST_GRANTS`]) signed in on their own visitor; returns it and their id.
pub async fn signed_in_user(app: &TestApp, email: &str) -> (Visitor, i64) {
    signed_in_user_with_grants(app, email, TEST_GRANTS).await
}

/// As [`signed_in_user`], granted exactly these names.
pub async fn signed_in_user_with_grants(
    app: &TestApp,
    email: &str,
    grants: &[&str],
) -> (Visitor, i64) {
    let id = app.add_user_with_grants(email, Role::User, grants).await;
    let v = app.visitor();
    let page = v.login(email, USER_PASSWORD).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    (v, id)
}

/// The TOTP code for `secret`, `steps` steps of 30 s from now.
pub fn totp_code(secret: &str, steps: i64) -> String {
    let now = gatehouse::db::now() + steps * 30;
    gatehouse::auth::totp::code_at(secret, now as u64).unwrap()
}

/// One person's browser: a cookie jar and a helper per route. Posts carry the CSRF token
/// the way a form does, unless sent with `post_form_without_csrf`.
#[derive(Clone)]
pub struct Visitor {
    pub addr: SocketAddr,
    pub http: Client,
    pub setup_token: String,
}

impl Visitor {
    fn new(addr: SocketAddr, setup_token: String) -> Self {
        Self {
            addr,
            http: new_client(),
            setup_token,
        }
    }

    /// The same person with a fresh cookie jar, in a browser that says it is `user_agent`.
    pub fn browser(&self, user_agent: &str) -> Self {
        Self {
            http: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(user_agent)
                .build()
                .expect("client"),
            ..self.clone()
        }
    }

    /// A visitor of a hub running elsewhere (another process).
    pub fn at(addr: SocketAddr, setup_token: &str) -> Self {
        Self::new(addr, setup_token.to_string())
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> Page {
        Page::from(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    /// GET as htmx would send it (a fragment request).
    pub async fn get_htmx(&self, path: &str) -> Page {
        Page::from(
            self.http
                .get(self.url(path))
                .header("HX-Request", "true")
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// This visitor's CSRF token, as a page's forms carry it.
    pub async fn csrf(&self) -> String {
        let mut path = "/login".to_string();
        for _ in 0..3 {
            let page = self.get(&path).await;
            if let Some(token) = page.attr("meta[name=csrf-token]", "content") {
                return token;
            }
            path = page
                .header("location")
                .expect("a page or a redirect")
                .to_string();
        }
        panic!("no page with a CSRF token reachable from /login")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let token = self.csrf().await;
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        fields.push(("csrf_token", &token));
        self.post_form_without_csrf(path, &fields).await
    }

    /// POST as htmx sends it from a page: the CSRF token in its header, `HX-Request` set.
    pub async fn post_htmx(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let token = self.csrf().await;
        Page::from(
            self.http
                .post(self.url(path))
                .header("HX-Request", "true")
                .header("X-CSRF-Token", token)
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    pub async fn post_form_without_csrf(&self, path: &str, form: &[(&str, &str)]) -> Page {
        Page::from(
            self.http
                .post(self.url(path))
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    pub async fn healthz(&self) -> Page {
        self.get("/healthz").await
    }

    pub async fn setup_page(&self, token: &str) -> Page {
        self.get(&format!("/setup?token={token}")).await
    }

    pub async fn submit_setup(
        &self,
        name: &str,
        email: &str,
        password: &str,
        confirm: &str,
    ) -> Page {
        let token = self.setup_token.clone();
        self.post_form(
            "/setup",
            &[
                ("token", &token),
                ("name", name),
                ("email", email),
                ("password", password),
                ("password_confirm", confirm),
            ],
        )
        .await
    }

    /// Creates the first admin through the real setup flow.
    pub async fn create_admin(&self) {
        let page = self
            .submit_setup("Ada Admin", ADMIN_EMAIL, ADMIN_PASSWORD, ADMIN_PASSWORD)
            .await;
        assert_eq!(page.status, StatusCode::OK, "setup failed: {}", page.body);
    }

    pub async fn login(&self, email: &str, password: &str) -> Page {
        self.post_form("/login", &[("email", email), ("password", password)])
            .await
    }

    pub async fn second_factor(&self, code: &str) -> Page {
        self.post_form("/login/2fa", &[("code", code)]).await
    }

    pub async fn logout(&self) -> Page {
        self.post_form("/logout", &[]).await
    }

    /// Opens the enrolment page and returns the secret it shows.
    pub async fn start_enrolment(&self) -> String {
        let page = self.get("/account/2fa").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page.text("#totp-secret")
    }

    pub async fn confirm_enrolment(&self, code: &str) -> Page {
        self.post_form("/account/2fa", &[("code", code)]).await
    }

    /// Signs in as an admin with no second factor yet, enrols, and returns the secret.
    pub async fn login_and_enrol(&self, email: &str, password: &str) -> String {
        let page = self.login(email, password).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let secret = self.start_enrolment().await;
        let done = self.confirm_enrolment(&totp_code(&secret, 0)).await;
        assert_eq!(done.count("li.backup-code"), 10, "{}", done.body);
        secret
    }
}

/// A response read in full, with its HTML parsed for CSS selection.
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Self {
            status,
            headers,
            body,
        }
    }

    pub fn html(&self) -> Html {
        Html::parse_document(&self.body)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every element matching `css`, as trimmed text.
    pub fn texts(&self, css: &str) -> Vec<String> {
        let doc = self.html();
        doc.select(&selector(css)).map(|e| text_of(&e)).collect()
    }

    /// The text of the one element matching `css`; panics if there is none.
    pub fn text(&self, css: &str) -> String {
        self.texts(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no element matches {css}:\n{}", self.body))
    }

    pub fn count(&self, css: &str) -> usize {
        self.html().select(&selector(css)).count()
    }

    pub fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let doc = self.html();
        doc.select(&selector(css))
            .next()
            .and_then(|e| e.value().attr(attr).map(str::to_string))
    }
}

/// Where a redirect points (empty when the answer is not one).
pub fn location(page: &Page) -> &str {
    page.header("location").unwrap_or_default()
}

pub fn selector(css: &str) -> Selector {
    Selector::parse(css).unwrap_or_else(|e| panic!("bad selector {css}: {e}"))
}

fn text_of(e: &ElementRef<'_>) -> String {
    e.text()
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A free loopback port for a process that binds it later. Chosen below the kernel's
/// ephemeral range (32768 and up), so a listener bound to port 0 meanwhile (an upstream, a
/// client socket) can never take it between the check and the bind.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000")
}

/// A child process that is killed by its PID when dropped, whatever the test did.
/// Sends `sig` (as `kill` spells it, e.g. `-STOP`) to process `pid`, which the test started.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        for _ in 0..100 {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.0.kill();
        self.0.wait().expect("wait after kill")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A client that keeps cookies and does not follow redirects, so tests see them.
pub fn new_client() -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A raw site (`respond ok`) at `domain`, owned by `owner` (`email`), written straight to
/// storage with its changelog entry: a site of someone else's that no request made.
pub fn stored_site(
    c: &rusqlite::Connection,
    domain: &str,
    owner: i64,
    email: &str,
) -> gatehouse::db::vhosts::Vhost {
    let site = gatehouse::db::vhosts::Snapshot {
        domain: domain.into(),
        template: "raw".into(),
        params: "{}".into(),
        config: "respond ok\n".into(),
        enabled: true,
        owner_id: Some(owner),
        all_agents: true,
        agent_ids: Vec::new(),
        labels: Vec::new(),
    };
    let author = gatehouse::db::changelog::Author {
        user_id: owner,
        email,
    };
    gatehouse::sites::changes::create(c, &author, &site, &gatehouse::claims::Claim::ADMIN).unwrap()
}
