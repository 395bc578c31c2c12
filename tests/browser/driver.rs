//! Drives Debian's Chromium through chromedriver (fantoccini). One driver and one browser
//! serve every journey, with a fresh profile per run; both are stopped by PID.

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, ChildGuard, TestApp, totp_code};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

pub struct Browser {
    pub client: Client,
    driver: ChildGuard,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> anyhow::Result<Self> {
        let port = crate::common::free_port();
        let driver =
            Command::new(std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot start chromedriver (is chromium-driver installed?): {e}"
                    )
                })?;
        let driver = ChildGuard(driver);
        let status = format!("http://127.0.0.1:{port}/status");
        let mut ready = false;
        for _ in 0..100 {
            if reqwest::get(&status)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::ensure!(ready, "chromedriver did not come up on port {port}");
        let profile = tempfile::tempdir()?;
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::rustls()?
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await?;
        Ok(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    /// Sets the layout viewport (what CSS sees) to `width`×`height` CSS pixels.
    pub async fn viewport(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.client.set_window_size(width, height).await?;
        // The window may include chrome; grow it by the difference once.
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await?;
        let (iw, ih) = (
            inner[0].as_u64().unwrap_or(0) as u32,
            inner[1].as_u64().unwrap_or(0) as u32,
        );
        if (iw, ih) != (width, height) {
            self.client
                .set_window_size(
                    width + width.saturating_sub(iw),
                    height + height.saturating_sub(ih),
                )
                .await?;
        }
        Ok(())
    }

    /// Whether the page scrolls sideways (it must not, even on a phone).
    pub async fn has_horizontal_scroll(&self) -> anyhow::Result<bool> {
        let v = self
            .client
            .execute(
                "return document.documentElement.scrollWidth > window.innerWidth",
                vec![],
            )
            .await?;
        Ok(v.as_bool().unwrap_or(true))
    }

    /// Saves a PNG under target/screenshots/ and returns its path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)?;
        Ok(path)
    }

    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let field = self.client.find(Locator::Css(css)).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client.find(Locator::Css(css)).await?.click().await?;
        Ok(())
    }

    /// Waits (at most 5 s) for an element to appear, e.g. after an htmx swap.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        use anyhow::Context;
        self.client
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    pub async fn value(&self, css: &str) -> anyhow::Result<String> {
        Ok(self
            .client
            .find(Locator::Css(css))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default())
    }

    /// Signs in on the login page as the admin of [`app_with_admin`](crate::common::app_with_admin),
    /// with a code from its TOTP `secret`, and waits for the dashboard.
    pub async fn sign_in_as_admin(&self, app: &TestApp, secret: &str) -> anyhow::Result<()> {
        self.client.goto(&app.url("/login")).await?;
        self.wait_for("#login form").await?;
        self.fill("#email", ADMIN_EMAIL).await?;
        self.fill("#password", ADMIN_PASSWORD).await?;
        self.click("#login button[type=submit]").await?;
        self.wait_for("#second-factor").await?;
        self.fill("#code", &totp_code(secret, 1)).await?;
        self.click("#second-factor button[type=submit]").await?;
        self.wait_for("#home").await?;
        Ok(())
    }

    /// Forgets cookies between journeys so each starts signed out.
    pub async fn reset(&self) -> anyhow::Result<()> {
        self.client.goto("about:blank").await?;
        self.client.delete_all_cookies().await?;
        self.viewport(1280, 800).await
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        self.driver.terminate();
    }
}
