//! Journey: the operator opens the one-time setup link and creates the first admin.

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp};
use crate::driver::Browser;
use anyhow::ensure;
use gatehouse::db::users;

pub async fn creates_the_first_admin(b: &Browser) -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    b.client
        .goto(&app.url(&format!("/setup?token={}", app.setup_token)))
        .await?;
    b.wait_for("#setup form").await?;

    // A mistake first: the form comes back in place with the reason and the input kept.
    b.fill("#name", "Ada Admin").await?;
    b.fill("#email", ADMIN_EMAIL).await?;
    b.fill("#password", ADMIN_PASSWORD).await?;
    b.fill("#password_confirm", "something else entirely")
        .await?;
    b.click("#setup button[type=submit]").await?;
    let error = b.wait_for("#password_confirm-error").await?;
    ensure!(error.text().await? == "The two passwords differ.");
    ensure!(
        b.value("#email").await? == ADMIN_EMAIL,
        "email kept after a refusal"
    );
    ensure!(
        b.value("#name").await? == "Ada Admin",
        "name kept after a refusal"
    );
    b.screenshot("setup-refused").await?;

    ensure!(
        b.value("#password").await?.is_empty(),
        "passwords are never sent back"
    );
    b.fill("#password", ADMIN_PASSWORD).await?;
    b.fill("#password_confirm", ADMIN_PASSWORD).await?;
    b.click("#setup button[type=submit]").await?;
    b.wait_for("#setup-done").await?;
    ensure!(b.text("#setup-done strong").await? == ADMIN_EMAIL);
    b.screenshot("setup-done").await?;

    let admins = app.state.db.run(|c| users::list(c)).await?;
    ensure!(admins.len() == 1 && admins[0].is_admin() && admins[0].email == ADMIN_EMAIL);

    // The link is spent: the page is gone.
    b.client
        .goto(&app.url(&format!("/setup?token={}", app.setup_token)))
        .await?;
    ensure!(
        b.text("h1").await? == "Not Found",
        "setup must 404 once an admin exists"
    );
    Ok(())
}

pub async fn fits_a_phone(b: &Browser) -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    for (width, height, shot) in [(390, 844, "setup-390x844"), (360, 740, "setup-360x740")] {
        b.viewport(width, height).await?;
        b.client
            .goto(&app.url(&format!("/setup?token={}", app.setup_token)))
            .await?;
        b.wait_for("#setup form").await?;
        let inner = b.client.execute("return window.innerWidth", vec![]).await?;
        ensure!(
            inner.as_u64() == Some(u64::from(width)),
            "viewport is {inner}, wanted {width}"
        );
        ensure!(
            !b.has_horizontal_scroll().await?,
            "setup page scrolls sideways at {width}px"
        );
        b.screenshot(shot).await?;
    }
    Ok(())
}
