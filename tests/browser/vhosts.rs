//! Journeys for sites: every template with the live preview, a one-tap toggle on a phone,
//! a refused form that keeps its input, and a revert from the changelog.

use crate::common::{TestApp, app_with_admin};
use crate::driver::Browser;
use anyhow::{bail, ensure};
use gatehouse::db::vhosts;
use std::time::Duration;

/// A hub with an enrolled admin, and the browser signed in as that admin.
pub async fn signed_in(b: &Browser) -> anyhow::Result<TestApp> {
    let (app, secret) = app_with_admin().await;
    b.sign_in_as_admin(&app, &secret).await?;
    Ok(app)
}

/// Waits (at most 5 s) until the preview contains `text`.
async fn preview_shows(b: &Browser, text: &str) -> anyhow::Result<()> {
    let script =
        "const p = document.querySelector('#preview-block'); return p ? p.textContent : ''";
    for _ in 0..50 {
        let now = b.client.execute(script, vec![]).await?;
        if now.as_str().is_some_and(|s| s.contains(text)) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the preview never showed {text:?}")
}

async fn choose_template(b: &Browser, slug: &str) -> anyhow::Result<()> {
    b.click(&format!("#template option[value={slug}]")).await?;
    b.wait_for(&format!("#template-fields[data-template={slug}]"))
        .await?;
    Ok(())
}

/// Template slug, domain, (field selector, value) pairs, text the preview must show.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

pub async fn every_template_with_the_live_preview(b: &Browser) -> anyhow::Result<()> {
    let app = signed_in(b).await?;
    let cases: &[Case] = &[
        (
            "reverse_proxy",
            "proxy.example.com",
            &[("#upstream", "127.0.0.1:3000")],
            "reverse_proxy 127.0.0.1:3000",
        ),
        (
            "load_balancer",
            "lb.example.com",
            &[("#upstreams", "10.0.0.1:80\n10.0.0.2:80")],
            "10.0.0.1:80 10.0.0.2:80",
        ),
        (
            "static_files",
            "static.example.com",
            &[("#root", "/srv/www/static")],
            "root * /srv/www/static",
        ),
        (
            "redirect",
            "old.example.com",
            &[("#target", "https://new.example.com")],
            "redir https://new.example.com",
        ),
        (
            "php_fastcgi",
            "php.example.com",
            &[
                ("#php_root", "/srv/www/php"),
                ("#php_upstream", "127.0.0.1:9000"),
            ],
            "php_fastcgi 127.0.0.1:9000",
        ),
        (
            "raw",
            "raw.example.com",
            &[("#config", "respond \"hello\" 200")],
            "respond \"hello\" 200",
        ),
    ];
    for (slug, domain, fields, expect) in cases {
        b.client.goto(&app.url("/vhosts/new")).await?;
        b.wait_for("#vhost-form").await?;
        choose_template(b, slug).await?;
        b.fill("#domain", domain).await?;
        for (css, value) in *fields {
            b.fill(css, value).await?;
        }
        // The preview follows the typing: first the domain, then the template's output.
        preview_shows(b, &format!("{domain} {{")).await?;
        preview_shows(b, expect).await?;
        if *slug == "load_balancer" || *slug == "reverse_proxy" {
            b.screenshot(&format!("vhosts-preview-{slug}")).await?;
        }
        if *slug == "raw" {
            // What a save would change on each agent, asked for before saving.
            b.click("#plan-button").await?;
            b.wait_for("#plan #plan-status").await?;
            let said = b.text("#plan-status").await?;
            ensure!(said.contains("no agents"), "the plan says: {said}");
        }
        b.click("#vhost-form button[type=submit]").await?;
        b.wait_for(&format!(".vhost-row[data-domain='{domain}']"))
            .await?;
    }
    let count = app
        .state
        .db
        .run(|c| vhosts::list(c, &vhosts::Filter::default()))
        .await?
        .len();
    ensure!(count == 6, "six sites saved, found {count}");
    b.screenshot("vhosts-list-1280").await?;
    Ok(())
}

pub async fn a_refused_form_keeps_its_input(b: &Browser) -> anyhow::Result<()> {
    let app = signed_in(b).await?;
    b.client.goto(&app.url("/vhosts/new")).await?;
    b.wait_for("#vhost-form").await?;
    b.fill("#domain", "bad domain!").await?;
    b.fill("#upstream", "127.0.0.1:notaport").await?;
    b.click("#vhost-form button[type=submit]").await?;
    b.wait_for("#domain-error").await?;
    b.wait_for("#upstream-error").await?;
    ensure!(b.value("#domain").await? == "bad domain!", "domain kept");
    ensure!(
        b.value("#upstream").await? == "127.0.0.1:notaport",
        "upstream kept"
    );
    b.screenshot("vhosts-refused").await?;
    Ok(())
}

pub async fn toggle_on_a_phone(b: &Browser) -> anyhow::Result<()> {
    let app = signed_in(b).await?;
    for name in ["alpha", "beta", "a-much-longer-name-for-a-phone-screen"] {
        let page = app
            .post_form(
                "/vhosts",
                &[
                    ("domain", &format!("{name}.example.com")),
                    ("template", "reverse_proxy"),
                    ("upstream", "127.0.0.1:3000"),
                    ("enabled", "on"),
                ],
            )
            .await;
        ensure!(page.status == 303, "{}", page.body);
    }
    b.viewport(390, 844).await?;
    b.client.goto(&app.url("/vhosts")).await?;
    let row = ".vhost-row[data-domain='beta.example.com']";
    b.wait_for(row).await?;
    ensure!(
        !b.has_horizontal_scroll().await?,
        "the list scrolls sideways at 390px"
    );
    let size = b
        .client
        .execute(&format!("const r = document.querySelector(\"{row} button.switch\").getBoundingClientRect(); return [r.width, r.height]"), vec![])
        .await?;
    ensure!(
        size[0].as_f64().unwrap_or(0.0) >= 44.0 && size[1].as_f64().unwrap_or(0.0) >= 44.0,
        "the switch is thumb-sized: {size}"
    );
    b.click(&format!("{row} button.switch")).await?;
    b.wait_for(&format!("{row}[data-enabled=false]")).await?;
    b.screenshot("vhosts-toggle-390x844").await?;
    let beta = app
        .state
        .db
        .run(|c| vhosts::find_by_domain(c, "beta.example.com"))
        .await?
        .unwrap();
    ensure!(!beta.enabled, "the toggle reached the database");
    let alpha = app
        .state
        .db
        .run(|c| vhosts::find_by_domain(c, "alpha.example.com"))
        .await?
        .unwrap();
    ensure!(alpha.enabled, "other rows are untouched");
    b.click(&format!("{row} button.switch")).await?;
    b.wait_for(&format!("{row}[data-enabled=true]")).await?;
    Ok(())
}

pub async fn revert_from_the_changelog(b: &Browser) -> anyhow::Result<()> {
    let app = signed_in(b).await?;
    app.post_form(
        "/vhosts",
        &[
            ("domain", "r.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:3000"),
            ("enabled", "on"),
        ],
    )
    .await;
    let id = app
        .state
        .db
        .run(|c| vhosts::find_by_domain(c, "r.example.com"))
        .await?
        .unwrap()
        .id;
    app.post_form(
        &format!("/vhosts/{id}"),
        &[
            ("domain", "r.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:4000"),
            ("enabled", "on"),
        ],
    )
    .await;
    b.client.goto(&app.url("/changelog")).await?;
    let update = "article.change[data-action=update]";
    b.wait_for(update).await?;
    b.screenshot("vhosts-changelog").await?;
    b.click(&format!("{update} form.revert button")).await?;
    b.client.accept_alert().await?;
    b.wait_for("article.change[data-action=revert]").await?;
    let now = app
        .state
        .db
        .run(|c| vhosts::find_by_domain(c, "r.example.com"))
        .await?
        .unwrap();
    ensure!(
        now.config.contains("127.0.0.1:3000"),
        "reverted to the old upstream: {}",
        now.config
    );
    b.screenshot("vhosts-reverted").await?;
    Ok(())
}

/// Bob owns a name; the admin's site over it is refused with a warning naming Bob, and saved
/// once the admin ticks "I understand" (issue 13).
pub async fn an_admin_overrides_an_overlap_only_knowingly(b: &Browser) -> anyhow::Result<()> {
    let app = signed_in(b).await?;
    let bob = app
        .add_user("bob@example.com", gatehouse::domain::Role::User)
        .await;
    let page = app
        .post_form(
            "/vhosts",
            &[
                ("domain", "bob.example.com"),
                ("template", "reverse_proxy"),
                ("upstream", "127.0.0.1:3000"),
                ("enabled", "on"),
                ("owner_id", &bob.to_string()),
            ],
        )
        .await;
    ensure!(page.status == 303, "{}", page.body);
    b.client.goto(&app.url("/vhosts/new")).await?;
    b.wait_for("#vhost-form").await?;
    b.fill("#domain", "http://bob.example.com").await?;
    b.fill("#upstream", "127.0.0.1:3001").await?;
    b.click("#vhost-form button[type=submit]").await?;
    b.wait_for("#overlap-override #allow_overlap-error").await?;
    let warning = b.text("#allow_overlap-error").await?;
    ensure!(warning.contains("bob@example.com"), "{warning}");
    ensure!(
        b.text("#domain-error").await? == "This overlaps bob.example.com (owner: bob@example.com).",
        "the reason is beside the domain"
    );
    ensure!(
        b.value("#domain").await? == "http://bob.example.com",
        "domain kept"
    );
    ensure!(
        b.value("#upstream").await? == "127.0.0.1:3001",
        "upstream kept"
    );
    // Clear of the sticky top bar, as a person scrolling to it would see it.
    let center = "document.querySelector('#allow_overlap').scrollIntoView({block: 'center'})";
    b.client.execute(center, vec![]).await?;
    b.screenshot("vhosts-overlap-warning").await?;
    b.click("#allow_overlap").await?;
    b.click("#vhost-form button[type=submit]").await?;
    b.wait_for(".vhost-row[data-domain='http://bob.example.com']")
        .await?;
    Ok(())
}
