//! Sites through real HTTP against a real hub and SQLite file: create from every template,
//! refusals that keep the input, hostile bodies, ownership, toggles, the live preview, the
//! changelog with revert.

use crate::common;
use crate::common::location;

use crate::common::{TestApp, Visitor, signed_in_user, signed_in_user_with_grants};
use gatehouse::db::{changelog, vhosts};
use reqwest::StatusCode;

/// Users' sites here proxy to loopback upstreams, which an admin opens to them.
async fn app_with_admin() -> TestApp {
    let (app, _) = common::app_with_admin_and(|c| {
        c.vhosts.user_networks = vec!["127.0.0.1/32".into()];
    })
    .await;
    app
}

async fn create(v: &Visitor, fields: &[(&str, &str)]) -> common::Page {
    let mut all = fields.to_vec();
    all.push(("enabled", "on"));
    v.post_form("/vhosts", &all).await
}

async fn proxy(v: &Visitor, domain: &str) -> i64 {
    let page = create(
        v,
        &[
            ("domain", domain),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:3000"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    location(&page).split('=').nth(1).unwrap().parse().unwrap()
}

async fn stored(app: &TestApp, domain: &str) -> Option<vhosts::Vhost> {
    let d = domain.to_string();
    app.state
        .db
        .run(move |c| vhosts::find_by_domain(c, &d))
        .await
        .unwrap()
}

async fn changes(app: &TestApp) -> Vec<changelog::Entry> {
    app.state
        .db
        .run(|c| {
            changelog::list(
                c,
                &changelog::Filter {
                    limit: 1000,
                    ..Default::default()
                },
            )
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_site_is_created_from_every_template_and_recorded() {
    let app = app_with_admin().await;
    let cases: &[&[(&str, &str)]] = &[
        &[
            ("domain", "proxy.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:3000"),
        ],
        &[
            ("domain", "lb.example.com"),
            ("template", "load_balancer"),
            ("upstreams", "10.0.0.1:80\n10.0.0.2:80"),
            ("lb_policy", "least_conn"),
            ("health_uri", "/health"),
            ("health_interval", "10s"),
        ],
        &[
            ("domain", "static.example.com"),
            ("template", "static_files"),
            ("root", "/srv/www/static"),
            ("browse", "on"),
        ],
        &[
            ("domain", "old.example.com"),
            ("template", "redirect"),
            ("target", "https://new.example.com"),
            ("redirect_kind", "permanent"),
            ("keep_path", "on"),
        ],
        &[
            ("domain", "php.example.com"),
            ("template", "php_fastcgi"),
            ("php_root", "/srv/www/php"),
            ("php_upstream", "127.0.0.1:9000"),
        ],
        &[
            ("domain", "raw.example.com"),
            ("template", "raw"),
            ("config", "respond \"hello\" 200"),
        ],
    ];
    for fields in cases {
        let page = create(&app, fields).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{fields:?}: {}",
            page.body
        );
    }
    let list = app.get("/vhosts").await;
    let domains = list.texts("#vhost-rows .vhost-domain");
    assert_eq!(domains.len(), 6);
    let mut sorted = domains.clone();
    sorted.sort();
    assert_eq!(domains, sorted, "sites are listed by domain");
    let lb = stored(&app, "lb.example.com").await.unwrap();
    assert!(
        lb.config.contains("lb_policy least_conn") && lb.config.contains("10.0.0.1:80 10.0.0.2:80"),
        "{}",
        lb.config
    );
    assert!(
        stored(&app, "old.example.com")
            .await
            .unwrap()
            .config
            .contains("redir https://new.example.com{uri}")
    );
    assert_eq!(
        changes(&app)
            .await
            .iter()
            .filter(|e| e.action == "create")
            .count(),
        6
    );
}

#[tokio::test]
async fn a_refused_form_keeps_every_field_and_says_why_beside_each() {
    let app = app_with_admin().await;
    let page = create(
        &app,
        &[
            ("domain", "not a domain/"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:notaport"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!page.text("#domain-error").is_empty());
    assert!(!page.text("#upstream-error").is_empty());
    assert_eq!(
        page.attr("#domain", "value").as_deref(),
        Some("not a domain/")
    );
    assert_eq!(
        page.attr("#upstream", "value").as_deref(),
        Some("127.0.0.1:notaport")
    );
    assert_eq!(
        page.attr("#template option[selected]", "value").as_deref(),
        Some("reverse_proxy")
    );
    assert_eq!(page.count("#preview-errors li"), 2);
    assert!(changes(&app).await.is_empty(), "nothing is saved");
}

#[tokio::test]
async fn a_domain_can_belong_to_one_site_only() {
    let app = app_with_admin().await;
    proxy(&app, "taken.example.com").await;
    let again = create(
        &app,
        &[
            ("domain", "TAKEN.example.com"),
            ("template", "raw"),
            ("config", "respond ok"),
        ],
    )
    .await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        again.text("#domain-error"),
        "Another site already uses this domain."
    );
    assert_eq!(again.text("#config"), "respond ok", "the body is kept");
}

#[tokio::test]
async fn international_domains_are_stored_as_punycode_and_shown_in_unicode() {
    let app = app_with_admin().await;
    proxy(&app, "Bücher.example").await;
    assert!(stored(&app, "xn--bcher-kva.example").await.is_some());
    assert_eq!(
        app.get("/vhosts").await.text(".vhost-domain"),
        "bücher.example"
    );
}

#[tokio::test]
async fn hostile_bodies_are_refused_with_line_and_column() {
    let app = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    for (body, why) in [
        (
            "respond ok\n}\nevil.example.com {\n\trespond pwned",
            "escapes",
        ),
        ("import /etc/caddy/secrets", "import"),
        ("root * /\nfile_server", "root"),
        ("respond {file./etc/passwd}", "file"),
        ("respond ok {", "unbalanced"),
    ] {
        let page = create(
            &bob,
            &[
                ("domain", "bob.example.com"),
                ("template", "raw"),
                ("config", body),
            ],
        )
        .await;
        assert_eq!(
            page.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{why}: {body}"
        );
        let error = page.text("#config-error");
        assert!(error.starts_with("line "), "{why}: {error}");
        assert_eq!(
            page.text("#config"),
            body.replace('\t', " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            "{why}: the body is kept"
        );
    }
    assert!(stored(&app, "bob.example.com").await.is_none());
    // An admin may serve files from anywhere.
    let admin = create(
        &app,
        &[
            ("domain", "files.example.com"),
            ("template", "raw"),
            ("config", "root * /var/www\nfile_server"),
        ],
    )
    .await;
    assert_eq!(admin.status, StatusCode::SEE_OTHER, "{}", admin.body);
}

#[tokio::test]
async fn a_users_static_root_must_stay_inside_the_allowed_base() {
    let app = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let outside = create(
        &bob,
        &[
            ("domain", "s.example.com"),
            ("template", "static_files"),
            ("root", "/etc"),
        ],
    )
    .await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!outside.text("#root-error").is_empty());
    let inside = create(
        &bob,
        &[
            ("domain", "s.example.com"),
            ("template", "static_files"),
            ("root", "/srv/www/bob"),
        ],
    )
    .await;
    assert_eq!(inside.status, StatusCode::SEE_OTHER, "{}", inside.body);
}

#[tokio::test]
async fn a_user_cannot_read_edit_toggle_delete_or_see_the_history_of_another_users_site() {
    let app = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let (eve, _) = signed_in_user(&app, "eve@example.com").await;
    let id = proxy(&bob, "bob.example.com").await;
    let entry = changes(&app).await[0].id;

    assert_eq!(
        eve.get("/vhosts").await.count(".vhost-row"),
        0,
        "not in her list"
    );
    assert_eq!(eve.get("/vhosts?q=bob").await.count(".vhost-row"), 0);
    assert_eq!(
        eve.get(&format!("/vhosts/{id}/edit")).await.status,
        StatusCode::NOT_FOUND
    );
    let update = eve
        .post_form(
            &format!("/vhosts/{id}"),
            &[
                ("domain", "eve.example.com"),
                ("template", "raw"),
                ("config", "respond hi"),
            ],
        )
        .await;
    assert_eq!(update.status, StatusCode::NOT_FOUND);
    assert_eq!(
        eve.post_form(&format!("/vhosts/{id}/toggle"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        eve.post_form(&format!("/vhosts/{id}/delete"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        eve.get(&format!("/changelog/{entry}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(eve.get("/changelog").await.count("article.change"), 0);
    assert_eq!(
        eve.post_form(&format!("/changelog/{entry}/revert"), &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    let untouched = stored(&app, "bob.example.com").await.unwrap();
    assert!(untouched.enabled);
    assert_eq!(changes(&app).await.len(), 1);
    assert_eq!(
        bob.get(&format!("/changelog/{entry}")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/vhosts").await.count(".vhost-row"),
        1,
        "an admin sees every site"
    );
}

#[tokio::test]
async fn a_toggle_swaps_only_its_row_and_is_recorded() {
    let app = app_with_admin().await;
    let id = proxy(&app, "t.example.com").await;
    let row = app.post_htmx(&format!("/vhosts/{id}/toggle"), &[]).await;
    assert_eq!(row.status, StatusCode::OK);
    assert_eq!(row.count("header.topbar"), 0, "only the row comes back");
    assert_eq!(
        row.count(&format!("article#vhost-{id}.vhost-row.disabled")),
        1
    );
    assert_eq!(
        row.attr("button.switch", "aria-checked").as_deref(),
        Some("false")
    );
    assert!(!stored(&app, "t.example.com").await.unwrap().enabled);
    let plain = app.post_form(&format!("/vhosts/{id}/toggle"), &[]).await;
    assert_eq!(
        location(&plain),
        "/vhosts",
        "without htmx the list is shown again"
    );
    assert!(stored(&app, "t.example.com").await.unwrap().enabled);
    assert_eq!(
        changes(&app)
            .await
            .iter()
            .filter(|e| e.action == "toggle")
            .count(),
        2
    );
}

#[tokio::test]
async fn the_live_preview_shows_the_exact_block_or_the_reasons() {
    let app = app_with_admin().await;
    let ok = app
        .post_form(
            "/vhosts/preview",
            &[
                ("domain", "p.example.com"),
                ("template", "reverse_proxy"),
                ("upstream", "127.0.0.1:8080"),
            ],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let block = ok.text("#preview-block");
    assert!(block.starts_with("p.example.com {"), "{block}");
    assert!(block.contains("reverse_proxy 127.0.0.1:8080"));
    assert!(
        block.ends_with("reverse_proxy 127.0.0.1:8080 log }"),
        "the access-log switch is part of the block: {block}"
    );
    let bad = app
        .post_form(
            "/vhosts/preview",
            &[
                ("domain", "p.example.com"),
                ("template", "reverse_proxy"),
                ("upstream", "nope"),
            ],
        )
        .await;
    assert_eq!(bad.count("#preview-block"), 0);
    assert_eq!(bad.count("#preview-errors li[data-field=upstream]"), 1);
    // Reasons name the field as its label does, never by its internal name.
    assert_eq!(
        bad.text("#preview-errors li[data-field=upstream] strong"),
        "Upstream"
    );
    // A form nobody has typed into yet is not told it is invalid.
    let pristine = app.get("/vhosts/new").await;
    assert_eq!(pristine.count("#preview-errors"), 0, "{}", pristine.body);
    assert_eq!(
        pristine.text("#preview #preview-status"),
        "Fill in the form: the block Caddy will get shows here."
    );
}

#[tokio::test]
async fn switching_template_swaps_the_fields_and_keeps_the_domain() {
    let app = app_with_admin().await;
    let page = app
        .get_htmx("/vhosts/fields?template=redirect&domain=x.example.com")
        .await;
    assert_eq!(
        page.attr("#template-fields", "data-template").as_deref(),
        Some("redirect")
    );
    assert_eq!(page.count("#template-fields #target"), 1);
    assert_eq!(page.count("#template-fields #upstream"), 0);
    assert!(
        page.count("#template-fields .template-doc .doc h1") == 1,
        "the template's doc is inline help"
    );
}

#[tokio::test]
async fn editing_keeps_the_saved_values_and_updates_are_recorded() {
    let app = app_with_admin().await;
    let id = proxy(&app, "e.example.com").await;
    let form = app.get(&format!("/vhosts/{id}/edit")).await;
    assert_eq!(
        form.attr("#domain", "value").as_deref(),
        Some("e.example.com")
    );
    assert_eq!(
        form.attr("#upstream", "value").as_deref(),
        Some("127.0.0.1:3000")
    );
    let saved = app
        .post_form(
            &format!("/vhosts/{id}"),
            &[
                ("domain", "e.example.com"),
                ("template", "reverse_proxy"),
                ("upstream", "127.0.0.1:4000"),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert!(
        stored(&app, "e.example.com")
            .await
            .unwrap()
            .config
            .contains("127.0.0.1:4000")
    );
    let history = app.get("/changelog?domain=e.example").await;
    assert_eq!(
        history.texts("article.change .action"),
        ["update", "create"]
    );
    assert!(
        history
            .texts("pre.diff span.del")
            .iter()
            .any(|l| l.contains("127.0.0.1:3000"))
    );
    assert!(
        history
            .texts("pre.diff span.add")
            .iter()
            .any(|l| l.contains("127.0.0.1:4000"))
    );
}

#[tokio::test]
async fn an_admin_reverts_a_change_from_the_changelog() {
    let app = app_with_admin().await;
    let id = proxy(&app, "r.example.com").await;
    app.post_form(&format!("/vhosts/{id}/delete"), &[]).await;
    assert!(stored(&app, "r.example.com").await.is_none());
    let delete = changes(&app).await[0].id;
    let reverted = app
        .post_form(&format!("/changelog/{delete}/revert"), &[])
        .await;
    assert_eq!(location(&reverted), "/changelog?reverted=1");
    let back = stored(&app, "r.example.com").await.unwrap();
    assert!(back.config.contains("127.0.0.1:3000"));
    assert_eq!(changes(&app).await[0].action, "revert");
}

#[tokio::test]
async fn an_admin_can_give_a_site_to_someone_else() {
    let app = app_with_admin().await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    let id = proxy(&app, "gift.example.com").await;
    let page = app
        .post_form(
            &format!("/vhosts/{id}"),
            &[
                ("domain", "gift.example.com"),
                ("template", "reverse_proxy"),
                ("upstream", "127.0.0.1:3000"),
                ("owner_id", &bob_id.to_string()),
                ("enabled", "on"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(
        bob.get("/vhosts").await.texts(".vhost-domain"),
        ["gift.example.com"]
    );
    // A user cannot hand a site over: the owner field is ignored for them.
    let mine = proxy(&bob, "mine.example.com").await;
    bob.post_form(
        &format!("/vhosts/{mine}"),
        &[
            ("domain", "mine.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:3000"),
            ("owner_id", "1"),
        ],
    )
    .await;
    assert_eq!(
        stored(&app, "mine.example.com").await.unwrap().owner_id,
        Some(bob_id)
    );
}

#[tokio::test]
async fn search_and_filters_narrow_the_list() {
    let app = app_with_admin().await;
    let a = proxy(&app, "alpha.example.com").await;
    proxy(&app, "beta.example.com").await;
    app.post_form(&format!("/vhosts/{a}/toggle"), &[]).await;
    assert_eq!(
        app.get("/vhosts?q=ALPHA").await.texts(".vhost-domain"),
        ["alpha.example.com"]
    );
    assert_eq!(
        app.get("/vhosts?status=off").await.texts(".vhost-domain"),
        ["alpha.example.com"]
    );
    assert_eq!(
        app.get("/vhosts?status=on").await.texts(".vhost-domain"),
        ["beta.example.com"]
    );
}

#[tokio::test]
async fn deleting_is_recorded_with_the_state_before() {
    let app = app_with_admin().await;
    let id = proxy(&app, "d.example.com").await;
    let page = app.post_form(&format!("/vhosts/{id}/delete"), &[]).await;
    assert_eq!(location(&page), "/vhosts?deleted=1");
    let entry = &changes(&app).await[0];
    assert_eq!(entry.action, "delete");
    assert_eq!(entry.old.as_ref().unwrap().domain, "d.example.com");
    assert!(entry.new.is_none());
}

#[tokio::test]
async fn a_new_account_that_reuses_a_deleted_ones_id_does_not_inherit_its_history() {
    let app = app_with_admin().await;
    let (bob, bob_id) = signed_in_user(&app, "bob@example.com").await;
    proxy(&bob, "bob.example.com").await;
    let entry = changes(&app).await[0].id;
    let deleted = app.post_form(&format!("/users/{bob_id}/delete"), &[]).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    // SQLite hands the highest id out again.
    let (carol, carol_id) = signed_in_user(&app, "carol@example.com").await;
    assert_eq!(
        carol_id, bob_id,
        "the id was reused, which is what this test is about"
    );
    assert_eq!(carol.get("/changelog").await.count("article.change"), 0);
    assert_eq!(
        carol.get(&format!("/changelog/{entry}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(carol.get("/vhosts").await.count(".vhost-row"), 0);
    assert_eq!(
        app.get(&format!("/changelog/{entry}")).await.status,
        StatusCode::OK,
        "admins still see it"
    );
}

#[tokio::test]
async fn the_form_refuses_an_owner_or_agent_that_does_not_exist_next_to_the_field() {
    let app = app_with_admin().await;
    let page = create(
        &app,
        &[
            ("domain", "ghost.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:3000"),
            ("owner_id", "999"),
            ("serve_on", "chosen"),
            ("agent_999", "on"),
        ],
    )
    .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert_eq!(
        page.text("#owner_id-error"),
        "There is no user with the id 999."
    );
    assert_eq!(
        page.text("#serve_on-error"),
        "There is no agent with the id 999; choose among the agents listed."
    );
    assert_eq!(
        page.attr("#domain", "value").as_deref(),
        Some("ghost.example.com"),
        "the input is kept"
    );
    assert!(stored(&app, "ghost.example.com").await.is_none());

    // A site nobody owns can be chosen, and the editor shows it as such.
    let page = create(
        &app,
        &[
            ("domain", "orphan.example.com"),
            ("template", "reverse_proxy"),
            ("upstream", "127.0.0.1:3000"),
            ("owner_id", "none"),
        ],
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let site = stored(&app, "orphan.example.com").await.unwrap();
    assert_eq!(site.owner_id, None);
    let edit = app.get(&format!("/vhosts/{}/edit", site.id)).await;
    assert_eq!(
        edit.attr("#owner_id option[selected]", "value").as_deref(),
        Some("none")
    );
}

// ---------------------------------------------------------------------------------------
// Delegated names, ports and overlap (issue 13)

async fn raw_site(v: &Visitor, domain: &str, extra: &[(&str, &str)]) -> common::Page {
    let mut fields = vec![
        ("domain", domain),
        ("template", "raw"),
        ("config", "respond ok"),
    ];
    fields.extend_from_slice(extra);
    create(v, &fields).await
}

#[tokio::test]
async fn a_user_creates_sites_only_inside_the_names_delegated_to_them() {
    let app = app_with_admin().await;
    let (alice, _) = signed_in_user_with_grants(
        &app,
        "alice@example.com",
        &["app.example.com", "*.team.example.com"],
    )
    .await;
    for inside in [
        "app.example.com",
        "http://a.team.example.com",
        "x.y.team.example.com",
        "*.team.example.com",
    ] {
        let page = raw_site(&alice, inside, &[]).await;
        assert_eq!(
            page.status,
            StatusCode::SEE_OTHER,
            "{inside}: {}",
            page.body
        );
    }
    for outside in [
        "team.example.com",
        "www.app.example.com",
        "evilteam.example.com",
        "other.example.org",
    ] {
        let page = raw_site(&alice, outside, &[]).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{outside}");
        assert_eq!(
            page.text("#domain-error"),
            "You may serve only the names delegated to you: *.team.example.com, \
             app.example.com. Ask an admin for more."
        );
        assert_eq!(page.attr("#domain", "value").as_deref(), Some(outside));
        assert_eq!(page.text("#config"), "respond ok", "the body is kept");
    }
    let (nobody, _) = signed_in_user_with_grants(&app, "nobody@example.com", &[]).await;
    let page = raw_site(&nobody, "n.example.com", &[]).await;
    assert!(
        page.text("#domain-error")
            .contains("No names have been delegated")
    );
}

#[tokio::test]
async fn a_user_keeps_a_site_an_admin_gave_them_outside_their_grants_but_cannot_rename_it_outside()
{
    let app = app_with_admin().await;
    let (alice, alice_id) =
        signed_in_user_with_grants(&app, "alice@example.com", &["*.team.example.com"]).await;
    let given = raw_site(
        &app,
        "legacy.example.org",
        &[("owner_id", &alice_id.to_string())],
    )
    .await;
    assert_eq!(
        given.status,
        StatusCode::SEE_OTHER,
        "an admin may assign anything"
    );
    let id = stored(&app, "legacy.example.org").await.unwrap().id;
    let edit = |domain: &'static str| {
        let alice = alice.clone();
        async move {
            alice
                .post_form(
                    &format!("/vhosts/{id}"),
                    &[
                        ("domain", domain),
                        ("template", "raw"),
                        ("config", "respond edited"),
                        ("enabled", "on"),
                    ],
                )
                .await
        }
    };
    // The live preview judges the name too, knowing which site the edit form is for.
    let preview = |with_id: bool, domain: &'static str| {
        let alice = alice.clone();
        async move {
            let id = id.to_string();
            let mut fields = vec![
                ("domain", domain),
                ("template", "raw"),
                ("config", "respond x"),
            ];
            if with_id {
                fields.push(("vhost_id", id.as_str()));
            }
            alice.post_form("/vhosts/preview", &fields).await
        }
    };
    let kept = preview(true, "legacy.example.org").await;
    assert_eq!(kept.count("#preview-block"), 1, "{}", kept.body);
    let as_new = preview(false, "legacy.example.org").await;
    assert_eq!(as_new.count("#preview-block"), 0);
    assert!(
        as_new
            .texts("#preview-errors li")
            .iter()
            .any(|e| e.contains("delegated to you")),
        "{}",
        as_new.body
    );
    let edit_page = alice.get(&format!("/vhosts/{id}/edit")).await;
    assert_eq!(
        edit_page.attr("#vhost-form input[name=vhost_id]", "value"),
        Some(id.to_string())
    );
    assert_eq!(
        edit("legacy.example.org").await.status,
        StatusCode::SEE_OTHER
    );
    let outside = edit("other.example.org").await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(outside.text("#domain-error").contains("delegated to you"));
    assert_eq!(
        edit("b.team.example.com").await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn alice_cannot_take_bobs_name_with_another_scheme_a_port_or_a_wildcard() {
    let app = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let (alice, _) = signed_in_user(&app, "alice@example.com").await;
    proxy(&bob, "bob.example.com").await;
    for domain in [
        "http://bob.example.com",
        "bob.example.com:443",
        "bob.example.com:80",
        "*.example.com",
    ] {
        // Ticking the override box does nothing for a user.
        let page = raw_site(&alice, domain, &[("allow_overlap", "on")]).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{domain}");
        assert_eq!(
            page.text("#domain-error"),
            "This name overlaps a site that belongs to someone else (the same name with any \
             scheme or port, or a wildcard over it).",
            "{domain}"
        );
        assert_eq!(page.count("#allow_overlap"), 0, "no override for a user");
        assert_eq!(page.attr("#domain", "value").as_deref(), Some(domain));
    }
    assert_eq!(changes(&app).await.len(), 1, "only bob's site was made");
}

#[tokio::test]
async fn a_name_under_bobs_wildcard_is_refused_to_alice_but_a_deeper_one_is_not() {
    let app = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    let (alice, _) = signed_in_user(&app, "alice@example.com").await;
    proxy(&bob, "*.example.com").await;
    let page = raw_site(&alice, "a.example.com", &[]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.text("#domain-error").contains("someone else"));
    // Caddy's *.example.com matches one label: a.b.example.com is not Bob's.
    let deeper = raw_site(&alice, "a.b.example.com", &[]).await;
    assert_eq!(deeper.status, StatusCode::SEE_OTHER, "{}", deeper.body);
}

#[tokio::test]
async fn an_admin_is_warned_of_an_overlap_and_may_save_it_only_knowingly() {
    let app = app_with_admin().await;
    let (bob, _) = signed_in_user(&app, "bob@example.com").await;
    proxy(&bob, "bob.example.com").await;
    let warned = raw_site(&app, "http://bob.example.com", &[]).await;
    assert_eq!(warned.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        warned.text("#domain-error"),
        "This overlaps bob.example.com (owner: bob@example.com)."
    );
    assert!(
        warned
            .text("#overlap-override .overlap-warning")
            .contains("Saved anyway, Caddy serves"),
        "{}",
        warned.body
    );
    assert_eq!(
        warned.count("#overlap-override input#allow_overlap[type=checkbox]"),
        1
    );
    assert_eq!(
        warned.count("input#allow_overlap[checked]"),
        0,
        "not ticked for them"
    );
    assert_eq!(
        warned.attr("#domain", "value").as_deref(),
        Some("http://bob.example.com")
    );
    assert!(stored(&app, "http://bob.example.com").await.is_none());
    // Another site of Bob's own, made by the admin, overlaps nobody else's.
    let bobs = bob_id(&app).await;
    let for_bob = raw_site(&app, "bob.example.com:8443", &[("owner_id", &bobs)]).await;
    assert_eq!(for_bob.status, StatusCode::SEE_OTHER, "{}", for_bob.body);

    let knowingly = raw_site(&app, "http://bob.example.com", &[("allow_overlap", "on")]).await;
    assert_eq!(
        knowingly.status,
        StatusCode::SEE_OTHER,
        "{}",
        knowingly.body
    );
    assert!(stored(&app, "http://bob.example.com").await.is_some());
    assert!(
        app.audit_actions()
            .await
            .contains(&"overlap_allowed".to_string())
    );
}

async fn bob_id(app: &TestApp) -> String {
    app.state
        .db
        .run(|c| gatehouse::db::users::find_by_email(c, "bob@example.com"))
        .await
        .unwrap()
        .unwrap()
        .id
        .to_string()
}

#[tokio::test]
async fn a_users_ports_are_80_and_443_unless_an_admin_allows_more() {
    let app = app_with_admin().await;
    let (alice, _) = signed_in_user(&app, "alice@example.com").await;
    let page = raw_site(&alice, "http://x.example.com:2019", &[]).await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        page.text("#domain-error"),
        "Your sites may use only the ports 80, 443 (or none); an admin can allow more."
    );
    for fine in [
        "http://y.example.com:80",
        "z.example.com:443",
        "w.example.com",
    ] {
        let page = raw_site(&alice, fine, &[]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{fine}");
    }
    let admins = raw_site(&app, "http://admins.example.com:2019", &[]).await;
    assert_eq!(
        admins.status,
        StatusCode::SEE_OTHER,
        "an admin may use any port"
    );

    let wider = TestApp::spawn_with(|c| {
        c.security.login_attempts_per_minute = 1000;
        c.vhosts.user_ports = vec![80, 443, 8443];
    })
    .await;
    let (carol, _) = signed_in_user(&wider, "carol@example.com").await;
    let allowed = raw_site(&carol, "x.example.com:8443", &[]).await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER, "{}", allowed.body);
    let still = raw_site(&carol, "http://y.example.com:2019", &[]).await;
    assert!(still.text("#domain-error").contains("80, 443, 8443"));
}

#[tokio::test]
async fn an_admin_grants_and_takes_back_names_on_the_users_page() {
    let app = app_with_admin().await;
    let (alice, id) = signed_in_user_with_grants(&app, "alice@example.com", &[]).await;
    let path = format!("/users/{id}/grants");
    let users = app.get("/users").await;
    assert_eq!(
        users.attr("tr[data-user='alice@example.com'] a.grants-link", "href"),
        Some(path.clone())
    );
    assert_eq!(app.get(&path).await.count("#no-grants"), 1);

    let bad = app
        .post_form(&path, &[("pattern", "http://x.example.com")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text("#pattern-error").contains("name alone"));
    assert_eq!(
        bad.attr("#pattern", "value").as_deref(),
        Some("http://x.example.com")
    );
    let bad = app.post_form(&path, &[("pattern", "*.com")]).await;
    assert!(bad.text("#pattern-error").contains("top-level"));

    let added = app
        .post_form(&path, &[("pattern", "*.Team.example.com")])
        .await;
    assert_eq!(added.status, StatusCode::OK);
    assert_eq!(
        added.texts("#grant-table .grant-pattern"),
        ["*.team.example.com"]
    );
    let twice = app
        .post_form(&path, &[("pattern", "*.team.example.com")])
        .await;
    assert_eq!(
        twice.text("#pattern-error"),
        "This name is already granted."
    );
    let csrf = app
        .post_form_without_csrf(&path, &[("pattern", "evil.example.com")])
        .await;
    assert_eq!(csrf.status, StatusCode::FORBIDDEN);
    assert_eq!(
        alice.get(&path).await.status,
        StatusCode::FORBIDDEN,
        "admins only"
    );

    assert_eq!(
        raw_site(&alice, "a.team.example.com", &[]).await.status,
        StatusCode::SEE_OTHER
    );
    let grant = app
        .get(&path)
        .await
        .attr("#grant-table form", "action")
        .unwrap();
    let taken = app.post_form(&grant, &[]).await;
    assert_eq!(taken.count("#no-grants"), 1);
    assert!(taken.text("#notice").contains("keep working"));
    assert_eq!(
        raw_site(&alice, "b.team.example.com", &[]).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let actions = app.audit_actions().await;
    assert!(actions.contains(&"grant_added".to_string()));
    assert!(actions.contains(&"grant_removed".to_string()));
}

#[tokio::test]
async fn a_domain_with_a_space_is_told_about_the_space_and_several_domains_about_one_per_site() {
    let app = app_with_admin().await;
    for (domain, why) in [
        (
            "my shop.example.com",
            "A site address cannot contain spaces.",
        ),
        (
            "a.example.com b.example.com",
            "Enter one address per site; add another site for more.",
        ),
    ] {
        let page = raw_site(&app, domain, &[]).await;
        assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY, "{domain}");
        assert_eq!(page.text("#domain-error"), why, "{domain}");
        assert_eq!(page.attr("#domain", "value").as_deref(), Some(domain));
    }
}

#[tokio::test]
async fn the_page_after_a_create_a_save_a_delete_or_a_revert_says_what_happened() {
    let app = app_with_admin().await;
    let made = raw_site(&app, "notice.example.com", &[]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let list = app.get(common::location(&made)).await;
    assert_eq!(
        list.text("#vhosts #notice"),
        "Created notice.example.com. It is being sent to its agents."
    );
    let id = app
        .state
        .db
        .run(|c| gatehouse::db::vhosts::find_by_domain(c, "notice.example.com"))
        .await
        .unwrap()
        .expect("created")
        .id;
    // Ids travel in the address, never text: an unknown one says nothing it was told.
    let forged = app.get("/vhosts?created=999999").await;
    assert_eq!(forged.text("#vhosts #notice"), "The site was created.");
    assert_eq!(app.get("/vhosts").await.count("#notice"), 0);

    let saved = app
        .post_form(
            &format!("/vhosts/{id}"),
            &[
                ("domain", "notice.example.com"),
                ("template", "raw"),
                ("config", "respond changed"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let list = app.get(common::location(&saved)).await;
    assert_eq!(list.text("#vhosts #notice"), "Saved notice.example.com.");

    let entry = app
        .state
        .db
        .run(|c| gatehouse::db::changelog::list(c, &Default::default()))
        .await
        .unwrap()[0]
        .id;
    let reverted = app
        .post_form(&format!("/changelog/{entry}/revert"), &[])
        .await;
    assert_eq!(reverted.status, StatusCode::SEE_OTHER, "{}", reverted.body);
    let log = app.get(common::location(&reverted)).await;
    assert!(
        log.text("#changelog #notice").starts_with("Reverted:"),
        "{}",
        log.body
    );

    let deleted = app.post_form(&format!("/vhosts/{id}/delete"), &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let list = app.get(common::location(&deleted)).await;
    assert_eq!(list.text("#vhosts #notice"), "The site was deleted.");
}
