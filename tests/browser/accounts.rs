//! Journey: an admin signs in, enrols in TOTP from the QR page, signs out, signs in with a
//! code from the app, then with a backup code.

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, TestApp, app_with_admin, totp_code};
use crate::driver::Browser;
use anyhow::ensure;

async fn sign_in(b: &Browser, app: &TestApp) -> anyhow::Result<()> {
    b.client.goto(&app.url("/login")).await?;
    b.wait_for("#login form").await?;
    b.fill("#email", ADMIN_EMAIL).await?;
    b.fill("#password", ADMIN_PASSWORD).await?;
    b.click("#login button[type=submit]").await?;
    Ok(())
}

async fn sign_out(b: &Browser) -> anyhow::Result<()> {
    b.click("form.nav-end button[type=submit]").await?;
    b.wait_for("#login form").await?;
    Ok(())
}

pub async fn enrol_then_sign_in_with_totp_and_a_backup_code(b: &Browser) -> anyhow::Result<()> {
    let app = TestApp::spawn().await;
    app.create_admin().await;
    b.viewport(390, 844).await?;

    // The password is right; the admin role requires 2FA, so enrolment comes first.
    sign_in(b, &app).await?;
    b.wait_for("#enrol-required").await?;
    let qr = b.wait_for("img#totp-qr").await?;
    let src = qr.attr("src").await?.unwrap_or_default();
    ensure!(
        src.starts_with("data:image/png;base64,"),
        "the QR code is an inline image"
    );
    let loaded = b
        .client
        .execute(
            "return document.querySelector('#totp-qr').naturalWidth",
            vec![],
        )
        .await?;
    ensure!(
        loaded.as_u64().unwrap_or(0) > 0,
        "the QR image decodes in the browser"
    );
    ensure!(!b.has_horizontal_scroll().await?, "enrolment fits a phone");
    b.screenshot("accounts-enrol-390").await?;

    // Any other page sends the admin back here until enrolment is done.
    b.client.goto(&app.url("/users")).await?;
    b.wait_for("#enrol-required").await?;

    let secret = b.text("#totp-secret").await?;
    b.fill("#code", &totp_code(&secret, 0)).await?;
    b.click("#enrol button[type=submit]").await?;
    b.wait_for("#backup-codes").await?;
    let codes = b
        .client
        .find_all(fantoccini::Locator::Css("li.backup-code"))
        .await?;
    ensure!(codes.len() == 10, "ten backup codes, got {}", codes.len());
    let backup = codes[0].text().await?;
    // They can be downloaded as a text file and copied in one tap.
    let href = b
        .wait_for("#download-codes[download='gatehouse-backup-codes.txt']")
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    let file = b
        .client
        .execute(
            "return decodeURIComponent(arguments[0].split(',')[1])",
            vec![href.into()],
        )
        .await?;
    let file = file.as_str().unwrap_or_default().to_string();
    ensure!(file.lines().filter(|l| *l == backup).count() == 1, "{file}");
    ensure!(
        file.lines().count() == 11,
        "a title and the ten codes: {file}"
    );
    b.click("#copy-codes").await?;
    let said = b.text("#copy-codes").await?;
    let copied = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             setTimeout(() => done(null), 2000);
             navigator.clipboard.readText().then(done, () => done(null));",
            vec![],
        )
        .await?;
    match copied.as_str() {
        Some(text) => ensure!(said == "Copied" && text == file, "{said}: {text:?}"),
        // A browser that will not be read from: the codes are selected for Ctrl+C instead.
        None => {
            let selected = b
                .client
                .execute("return window.getSelection().toString()", vec![])
                .await?;
            ensure!(
                said == "Copied" || selected.as_str().unwrap_or_default().contains(&backup),
                "{said}: {selected}"
            );
        }
    }
    b.screenshot("accounts-backup-codes-390").await?;
    b.click("#codes-saved").await?;
    b.wait_for("#home").await?;

    // Sign out, then in with the next code from the app.
    sign_out(b).await?;
    sign_in(b, &app).await?;
    b.wait_for("#second-factor").await?;
    b.fill("#code", "000000").await?;
    b.click("#second-factor button[type=submit]").await?;
    let error = b.wait_for("#code-error").await?;
    ensure!(error.text().await?.starts_with("That code is not right"));
    b.screenshot("accounts-wrong-code-390").await?;
    b.fill("#code", &totp_code(&secret, 1)).await?;
    b.click("#second-factor button[type=submit]").await?;
    b.wait_for("#home").await?;
    ensure!(b.text("#home h1").await? == "Welcome, Ada Admin");

    // And once more with a backup code instead of the app.
    sign_out(b).await?;
    sign_in(b, &app).await?;
    b.wait_for("#second-factor").await?;
    b.fill("#code", &backup).await?;
    b.click("#second-factor button[type=submit]").await?;
    b.wait_for("#home").await?;
    b.client.goto(&app.url("/account")).await?;
    let status = b.wait_for("#totp-status").await?.text().await?;
    ensure!(status.contains("9 unused backup codes"), "{status}");
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the account page fits a phone"
    );
    b.screenshot("accounts-account-390").await?;

    // An API token, made on a phone: shown once in a field to copy from.
    b.fill("#token_name", "phone script").await?;
    b.fill("#token_current", ADMIN_PASSWORD).await?;
    b.click("#new-token-form button[type=submit]").await?;
    b.wait_for("#new-token").await?;
    let token = b.value("#new-token-value").await?;
    ensure!(token.starts_with("gh_") && token.len() == 68, "{token}");
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the new token fits a phone"
    );
    b.screenshot("accounts-new-token-390").await?;

    b.viewport(1280, 800).await?;
    b.client.goto(&app.url("/users")).await?;
    b.wait_for("#user-table").await?;
    b.screenshot("accounts-users-1280").await?;
    Ok(())
}

pub async fn users_page_fits_a_phone(b: &Browser) -> anyhow::Result<()> {
    let (app, secret) = app_with_admin().await;
    for i in 0..3 {
        app.add_user(
            &format!("person{i}@a-rather-long-domain-name.example.com"),
            gatehouse::domain::Role::User,
        )
        .await;
    }
    b.viewport(390, 844).await?;
    b.sign_in_as_admin(&app, &secret).await?;
    b.client.goto(&app.url("/users")).await?;
    b.wait_for("#user-table").await?;
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the users page scrolls sideways at 390px"
    );
    b.screenshot("accounts-users-390").await?;
    b.client.goto(&app.url("/audit")).await?;
    b.wait_for("#audit-table").await?;
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the audit page scrolls sideways at 390px"
    );
    b.screenshot("accounts-audit-390").await?;
    Ok(())
}
