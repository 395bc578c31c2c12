//! The templates' tests: the catalog's consistency, each generator's output and every
//! value rule.

use super::catalog::*;
use super::generate::*;
use super::values::*;
use crate::domain::caddyfile::{BodyPolicy, CaddyfileBody};
use std::collections::BTreeMap;
use std::collections::HashSet;

fn admin() -> GenerateContext {
    GenerateContext {
        admin: true,
        user_root_base: "/srv/www".into(),
    }
}

fn user() -> GenerateContext {
    GenerateContext {
        admin: false,
        ..admin()
    }
}

fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn body(template: Template, pairs: &[(&str, &str)], ctx: &GenerateContext) -> String {
    let body = template
        .generate(&values(pairs), ctx)
        .unwrap_or_else(|e| panic!("{template:?} {pairs:?}: {e:?}"));
    if template != Template::Raw {
        let parsed = CaddyfileBody::parse(&body, &BodyPolicy::admin())
            .unwrap_or_else(|e| panic!("{body:?}: {e}"));
        assert_eq!(parsed.as_str(), body, "already normalized");
    }
    body
}

/// The error for each field, in the order they were found.
fn errors(
    template: Template,
    pairs: &[(&str, &str)],
    ctx: &GenerateContext,
) -> Vec<(&'static str, String)> {
    match template.generate(&values(pairs), ctx) {
        Ok(body) => panic!("{template:?} {pairs:?} should be refused, got {body:?}"),
        Err(errors) => errors.into_iter().map(|(f, e)| (f, e.0)).collect(),
    }
}

fn error_for(
    template: Template,
    pairs: &[(&str, &str)],
    ctx: &GenerateContext,
    field: &str,
) -> String {
    let all = errors(template, pairs, ctx);
    all.iter()
        .find(|(f, _)| *f == field)
        .map(|(_, e)| e.clone())
        .unwrap_or_else(|| panic!("no error for {field}: {all:?}"))
}

#[test]
fn slugs_labels_and_lookup_agree() {
    let slugs: Vec<_> = Template::ALL.iter().map(|t| t.slug()).collect();
    assert_eq!(
        slugs,
        [
            "reverse_proxy",
            "load_balancer",
            "static_files",
            "redirect",
            "php_fastcgi",
            "raw"
        ]
    );
    let labels: Vec<_> = Template::ALL.iter().map(|t| t.label()).collect();
    assert_eq!(
        labels,
        [
            "Reverse proxy",
            "Load-balanced proxy",
            "Static files",
            "Redirect",
            "PHP (FastCGI)",
            "Raw Caddyfile"
        ]
    );
    for template in Template::ALL {
        assert_eq!(Template::from_slug(template.slug()), Some(template));
        assert!(template.summary().ends_with('.'));
    }
    assert_eq!(Template::from_slug("Reverse_proxy"), None);
    assert_eq!(Template::from_slug(""), None);
}

#[test]
fn field_names_are_unique_across_all_templates() {
    let mut seen = HashSet::new();
    for template in Template::ALL {
        for field in template.fields() {
            assert!(seen.insert(field.name), "{} appears twice", field.name);
        }
    }
}

#[test]
fn field_specs_are_consistent() {
    for template in Template::ALL {
        assert!(!template.fields().is_empty());
        for field in template.fields() {
            assert!(
                !field.label.is_empty() && !field.hint.is_empty(),
                "{}",
                field.name
            );
            match field.kind {
                FieldKind::Select(options) => {
                    assert!(
                        options.iter().any(|(v, _)| *v == field.default),
                        "{}",
                        field.name
                    );
                }
                FieldKind::Checkbox => {
                    assert!(["", "on"].contains(&field.default), "{}", field.name);
                    assert!(!field.required);
                }
                FieldKind::Text | FieldKind::Textarea => {}
            }
        }
    }
}

#[test]
fn every_template_has_a_doc_page_starting_with_a_heading() {
    for template in Template::ALL {
        let doc = template.doc();
        assert!(doc.starts_with("# "), "{}", template.slug());
        assert!(doc.trim().lines().count() > 5, "{}", template.slug());
        assert!(
            doc.contains("```caddyfile"),
            "{} has an example",
            template.slug()
        );
    }
}

#[test]
fn every_template_slug_has_a_doc_file_on_disk() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates-docs");
    for template in Template::ALL {
        let path = dir.join(format!("{}.md", template.slug()));
        assert!(path.is_file(), "missing {}", path.display());
    }
}

#[test]
fn each_doc_page_mentions_every_field_label_of_its_template() {
    for template in Template::ALL {
        for field in template.fields() {
            assert!(
                template.doc().contains(field.label),
                "{} doc lacks {:?}",
                template.slug(),
                field.label
            );
        }
    }
}

#[test]
fn a_reverse_proxy_forwards_to_one_upstream() {
    assert_eq!(
        body(
            Template::ReverseProxy,
            &[("upstream", " 127.0.0.1:3000 ")],
            &user()
        ),
        "reverse_proxy 127.0.0.1:3000\n"
    );
}

#[test]
fn a_reverse_proxy_can_send_the_upstreams_host_name() {
    assert_eq!(
        body(
            Template::ReverseProxy,
            &[
                ("upstream", "https://Backend.example"),
                ("upstream_host_header", "on")
            ],
            &user()
        ),
        "reverse_proxy https://backend.example {\n\theader_up Host {upstream_hostport}\n}\n"
    );
}

#[test]
fn a_reverse_proxy_refuses_bad_or_several_upstreams() {
    let t = Template::ReverseProxy;
    assert_eq!(
        error_for(t, &[], &admin(), "upstream"),
        "Enter an upstream, e.g. 127.0.0.1:8080."
    );
    assert_eq!(
        error_for(t, &[("upstream", "app")], &admin(), "upstream"),
        "Add a port, e.g. app:8080."
    );
    assert!(error_for(t, &[("upstream", "a:1 b:2")], &admin(), "upstream").contains("single"));
    assert!(
        error_for(
            t,
            &[("upstream", "a:1"), ("upstream_host_header", "maybe")],
            &admin(),
            "upstream_host_header"
        )
        .contains("Tick")
    );
}

#[test]
fn a_load_balancer_lists_its_upstreams_and_policy() {
    assert_eq!(
        body(
            Template::LoadBalancer,
            &[(
                "upstreams",
                "10.0.0.2:8080\n10.0.0.3:8080,\r\n10.0.0.4:8080"
            )],
            &user()
        ),
        "reverse_proxy 10.0.0.2:8080 10.0.0.3:8080 10.0.0.4:8080 {\n\tlb_policy round_robin\n}\n"
    );
}

#[test]
fn a_load_balancer_adds_health_checks_when_given_a_path() {
    assert_eq!(
        body(
            Template::LoadBalancer,
            &[
                ("upstreams", "app1:80 app2:80"),
                ("lb_policy", "least_conn"),
                ("health_uri", " /health?full=1 "),
                ("health_interval", "1M30s"),
            ],
            &user()
        ),
        "reverse_proxy app1:80 app2:80 {\n\tlb_policy least_conn\n\thealth_uri /health?full=1\n\thealth_interval 1m30s\n}\n"
    );
    let defaulted = body(
        Template::LoadBalancer,
        &[
            ("upstreams", "a:1 b:1"),
            ("health_uri", "/up"),
            ("health_interval", ""),
        ],
        &user(),
    );
    assert!(defaulted.contains("\thealth_interval 10s\n"));
}

#[test]
fn every_load_balancing_policy_is_accepted() {
    for (policy, _) in LB_POLICIES {
        let b = body(
            Template::LoadBalancer,
            &[("upstreams", "a:1 b:1"), ("lb_policy", policy)],
            &user(),
        );
        assert!(b.contains(&format!("\tlb_policy {policy}\n")));
    }
    assert!(
        error_for(
            Template::LoadBalancer,
            &[("upstreams", "a:1 b:1"), ("lb_policy", "cookie")],
            &user(),
            "lb_policy"
        )
        .contains("Choose one")
    );
}

#[test]
fn a_load_balancer_needs_two_distinct_upstreams() {
    let t = Template::LoadBalancer;
    assert!(error_for(t, &[("upstreams", "a:1")], &user(), "upstreams").contains("at least two"));
    assert!(error_for(t, &[("upstreams", "a:1 A:1")], &user(), "upstreams").contains("twice"));
    assert!(error_for(t, &[("upstreams", "")], &user(), "upstreams").contains("at least one"));
}

#[test]
fn the_health_interval_is_ignored_without_a_health_path() {
    let b = body(
        Template::LoadBalancer,
        &[("upstreams", "a:1 b:1"), ("health_interval", "soon")],
        &user(),
    );
    assert!(!b.contains("health"));
}

#[test]
fn health_check_paths_and_intervals_are_checked() {
    let t = Template::LoadBalancer;
    let with = |uri: &'static str, interval: &'static str| {
        [
            ("upstreams", "a:1 b:1"),
            ("health_uri", uri),
            ("health_interval", interval),
        ]
    };
    assert!(error_for(t, &with("health", "10s"), &user(), "health_uri").contains("starts with /"));
    assert!(error_for(t, &with("//evil/x", "10s"), &user(), "health_uri").contains("//"));
    assert!(error_for(t, &with("/a b", "10s"), &user(), "health_uri").contains("spaces"));
    assert!(error_for(t, &with("/{path}", "10s"), &user(), "health_uri").contains("'{'"));
    assert!(error_for(t, &with("/a\"", "10s"), &user(), "health_uri").contains("'\"'"));
    assert!(error_for(t, &with("/a%zz", "10s"), &user(), "health_uri").contains("escape"));
    for bad in ["10", "s", "1.5s", "10 s", "-5s", "1d", "10sec", "{x}"] {
        assert!(
            error_for(t, &with("/h", bad), &user(), "health_interval").contains("duration"),
            "{bad}"
        );
    }
    for out_of_range in ["500ms", "0s", "2h", "61m"] {
        assert!(
            error_for(t, &with("/h", out_of_range), &user(), "health_interval")
                .contains("1s to 1h")
        );
    }
    for ok in ["1s", "1000ms", "5s", "1m", "1h", "59m60s"] {
        body(t, &with("/h", ok), &user());
    }
}

#[test]
fn all_field_errors_are_reported_at_once() {
    let found = errors(
        Template::LoadBalancer,
        &[
            ("upstreams", "x"),
            ("lb_policy", "nope"),
            ("health_uri", "bad"),
            ("health_interval", "later"),
        ],
        &user(),
    );
    let fields: Vec<_> = found.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        fields,
        ["upstreams", "lb_policy", "health_uri", "health_interval"]
    );
    for (_, message) in &found {
        assert!(message.ends_with('.'), "{message}");
    }
}

#[test]
fn static_files_serve_a_folder_optionally_with_listings() {
    assert_eq!(
        body(
            Template::StaticFiles,
            &[("root", "/srv/www/site/")],
            &user()
        ),
        "root * /srv/www/site\nfile_server\n"
    );
    assert_eq!(
        body(
            Template::StaticFiles,
            &[("root", "//srv//www/site"), ("browse", "on")],
            &user()
        ),
        "root * /srv/www/site\nfile_server browse\n"
    );
}

#[test]
fn paths_with_spaces_and_hashes_are_quoted_as_one_token() {
    assert_eq!(
        body(
            Template::StaticFiles,
            &[("root", "/srv/www/my site")],
            &user()
        ),
        "root * \"/srv/www/my site\"\nfile_server\n"
    );
    assert_eq!(
        body(Template::StaticFiles, &[("root", "/srv/www/#1 ü")], &user()),
        "root * \"/srv/www/#1 ü\"\nfile_server\n"
    );
}

#[test]
fn users_may_only_serve_folders_inside_their_base() {
    let t = Template::StaticFiles;
    body(t, &[("root", "/srv/www")], &user());
    body(t, &[("root", "/srv/www/a/b")], &user());
    for outside in [
        "/srv/www2",
        "/srv/www2/x",
        "/srv",
        "/",
        "/etc",
        "/var/lib/caddy",
    ] {
        assert_eq!(
            error_for(t, &[("root", outside)], &user(), "root"),
            "Choose a folder inside /srv/www, e.g. /srv/www/example.",
            "{outside}"
        );
    }
    body(t, &[("root", "/etc/caddy")], &admin());
    body(t, &[("root", "/")], &admin());
}

#[test]
fn a_trailing_slash_on_the_base_does_not_matter() {
    let ctx = GenerateContext {
        admin: false,
        user_root_base: "/srv/www/".into(),
    };
    body(Template::StaticFiles, &[("root", "/srv/www/x")], &ctx);
    assert!(
        error_for(
            Template::StaticFiles,
            &[("root", "/srv/wwwx")],
            &ctx,
            "root"
        )
        .contains("inside /srv/www,")
    );
}

#[test]
fn users_without_a_valid_base_cannot_serve_files() {
    for base in ["", "srv/www", "/srv/../etc"] {
        let ctx = GenerateContext {
            admin: false,
            user_root_base: base.into(),
        };
        assert!(
            error_for(
                Template::StaticFiles,
                &[("root", "/srv/www/x")],
                &ctx,
                "root"
            )
            .contains("ask an admin")
        );
    }
}

#[test]
fn document_roots_must_be_clean_absolute_paths() {
    let t = Template::StaticFiles;
    let reason = |root: &str| error_for(t, &[("root", root)], &admin(), "root");
    assert!(reason("").contains("Enter the folder"));
    assert!(reason("srv/www").contains("absolute"));
    assert!(reason("~/www").contains("absolute"));
    assert!(reason("/srv/www/../../etc").contains(".."));
    assert!(reason("/srv/www/..").contains(".."));
    assert!(reason("/srv/./www").contains("\".\""));
    assert!(reason("/srv/{host}").contains("Braces"));
    assert!(reason("/srv/{$HOME}").contains("Braces"));
    assert!(reason("/srv/\"x\"").contains("Quotes"));
    assert!(reason("/srv/a\\b").contains("backslashes"));
    assert!(reason("/srv/a`b").contains("Quotes"));
    assert!(reason("/srv/a\nb").contains("control character"));
    assert!(reason(&format!("/{}", "a".repeat(1100))).contains("too long"));
    // `..` inside a name is just a name.
    body(t, &[("root", "/srv/www/a..b")], &user());
}

#[test]
fn a_redirect_can_keep_the_visitors_path() {
    assert_eq!(
        body(
            Template::Redirect,
            &[
                ("target", "HTTPS://New.Example/"),
                ("redirect_kind", "permanent"),
                ("keep_path", "on")
            ],
            &user()
        ),
        "redir https://new.example{uri} permanent\n"
    );
}

#[test]
fn a_redirect_can_go_to_one_fixed_address_temporarily() {
    assert_eq!(
        body(
            Template::Redirect,
            &[
                ("target", "https://example.com/landing?utm=x#top"),
                ("redirect_kind", "temporary")
            ],
            &user()
        ),
        "redir https://example.com/landing?utm=x#top temporary\n"
    );
}

#[test]
fn a_redirect_into_a_sub_path_keeps_one_slash() {
    assert_eq!(
        body(
            Template::Redirect,
            &[("target", "https://example.com/blog/"), ("keep_path", "on")],
            &user()
        ),
        "redir https://example.com/blog{uri} permanent\n"
    );
}

#[test]
fn redirect_targets_are_normalized_to_punycode_and_keep_their_port() {
    assert_eq!(
        body(
            Template::Redirect,
            &[
                ("target", "http://Bücher.example:8080/x%20y"),
                ("keep_path", "")
            ],
            &user()
        ),
        "redir http://xn--bcher-kva.example:8080/x%20y permanent\n"
    );
}

#[test]
fn bad_redirect_targets_are_refused_with_reasons() {
    let reason = |target: &str, keep: &str| {
        error_for(
            Template::Redirect,
            &[("target", target), ("keep_path", keep)],
            &user(),
            "target",
        )
    };
    assert!(reason("", "on").contains("Enter the address"));
    assert!(reason("example.com", "on").contains("full address"));
    assert!(reason("ftp://example.com", "on").contains("full address"));
    assert!(reason("javascript://alert(1)", "on").contains("full address"));
    assert!(reason("https://", "on").contains("host name"));
    assert!(reason("https:///path", "on").contains("host name"));
    assert!(reason("https://a b.com", "on").contains("spaces"));
    assert!(reason("https://example.com/{path}", "on").contains("Braces"));
    assert!(reason("https://example.com/\"x", "on").contains("Quotes"));
    assert!(reason("https://example.com/'x", "on").contains("Quotes"));
    assert!(reason("https://example.com/a\\b", "on").contains("Backslashes"));
    assert!(reason("https://example.com/<x>", "on").contains("percent-encode"));
    assert!(reason("https://user@example.com", "on").contains("user name"));
    assert!(reason("https://[::1]/", "on").contains("IPv6"));
    assert!(reason("https://ex_ample.com", "on").contains("Underscores"));
    assert!(reason("https://example.com:0", "on").contains("1 to 65535"));
    assert!(reason("https://example.com/ü", "off").contains("non-ASCII"));
    assert!(reason("https://example.com/%2", "off").contains("escape"));
    assert!(reason("https://example.com/?a=1", "on").contains("query"));
    assert!(reason("https://example.com/#x", "on").contains("fragment"));
}

#[test]
fn redirect_kinds_map_to_caddys_words() {
    let temporary = body(
        Template::Redirect,
        &[
            ("target", "https://a.example"),
            ("redirect_kind", "temporary"),
        ],
        &user(),
    );
    assert!(temporary.ends_with(" temporary\n"));
    assert!(
        error_for(
            Template::Redirect,
            &[("target", "https://a.example"), ("redirect_kind", "308")],
            &user(),
            "redirect_kind"
        )
        .contains("Choose one")
    );
}

#[test]
fn php_sites_get_a_root_fastcgi_and_file_server() {
    assert_eq!(
        body(
            Template::PhpFastcgi,
            &[
                ("php_root", "/srv/www/blog"),
                ("php_upstream", "127.0.0.1:9000")
            ],
            &user()
        ),
        "root * /srv/www/blog\nphp_fastcgi 127.0.0.1:9000\nfile_server\n"
    );
}

#[test]
fn admins_may_give_php_a_unix_socket() {
    assert_eq!(
        body(
            Template::PhpFastcgi,
            &[
                ("php_root", "/var/www/wordpress"),
                ("php_upstream", "unix//run/php/php8.2-fpm.sock")
            ],
            &admin()
        ),
        "root * /var/www/wordpress\nphp_fastcgi unix//run/php/php8.2-fpm.sock\nfile_server\n"
    );
}

#[test]
fn php_upstreams_are_checked() {
    let t = Template::PhpFastcgi;
    let reason = |up: &str, ctx: &GenerateContext| {
        error_for(
            t,
            &[("php_root", "/srv/www/x"), ("php_upstream", up)],
            ctx,
            "php_upstream",
        )
    };
    // Where an upstream may point is the tenant policy's to judge, for every template.
    body(
        t,
        &[
            ("php_root", "/srv/www/x"),
            ("php_upstream", "unix//run/php/php-fpm.sock"),
        ],
        &user(),
    );
    assert!(reason("unix/run/php.sock", &admin()).contains("absolute path"));
    assert!(reason("unix//run/php fpm.sock", &admin()).contains("' '"));
    assert!(reason("unix//run/../etc/x.sock", &admin()).contains(".."));
    assert!(reason("unix//", &admin()).contains("usable"));
    assert!(reason(&format!("unix//{}", "a".repeat(120)), &admin()).contains("usable"));
    assert!(reason("http://php:9000", &admin()).contains("FastCGI"));
    assert!(reason("php", &admin()).contains("Add a port"));
    assert!(reason("", &admin()).contains("PHP-FPM address"));
    let both = errors(t, &[("php_root", "/etc"), ("php_upstream", "php")], &user());
    assert_eq!(both.len(), 2);
}

#[test]
fn raw_config_is_returned_trimmed_and_required() {
    assert_eq!(
        body(
            Template::Raw,
            &[("config", "\n  respond \"hi\" 200\n\n")],
            &user()
        ),
        "respond \"hi\" 200"
    );
    assert!(
        error_for(Template::Raw, &[("config", " \n ")], &admin(), "config")
            .contains("Enter the directives")
    );
}

#[test]
fn values_of_other_templates_fields_are_ignored() {
    assert_eq!(
        body(
            Template::ReverseProxy,
            &[
                ("upstream", "app:80"),
                ("root", "/etc"),
                ("target", "nonsense"),
                ("config", "}")
            ],
            &user()
        ),
        "reverse_proxy app:80\n"
    );
}

#[test]
fn duration_parsing_follows_go_units() {
    assert_eq!(duration_ms("1h2m3s4ms"), Some(3_723_004));
    assert_eq!(duration_ms("999999999h"), Some(999_999_999 * 3_600_000));
    assert_eq!(duration_ms("1000000000s"), None);
    assert_eq!(duration_ms("5"), None);
    assert_eq!(duration_ms(""), None);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Realistic values for a field, so that a good share of the forms is accepted.
    fn realistic(name: &str) -> Vec<&'static str> {
        match name {
            UPSTREAM => vec![
                "127.0.0.1:3000",
                "app:8080",
                "https://b.example",
                "localhost:2019",
                "[::1]:9000",
                "http://app",
            ],
            UPSTREAM_HOST_HEADER | BROWSE | KEEP_PATH => vec!["", "on", "off"],
            UPSTREAMS => vec![
                "a:1 b:2",
                "a:1\nb:2\nc:3",
                "app1:80, app2:80",
                "https://a https://b:8443",
                "127.0.0.1:2019 a:1",
            ],
            LB_POLICY => vec![
                "",
                "round_robin",
                "least_conn",
                "random",
                "ip_hash",
                "first",
            ],
            HEALTH_URI => vec!["", "/health", "/status?full=1", "/a%20b"],
            HEALTH_INTERVAL => vec!["", "10s", "1m30s", "1h", "500ms"],
            ROOT | PHP_ROOT => vec![
                "/srv/www/x",
                "/srv/www/a b",
                "/srv/www/#1",
                "/etc",
                "/srv/www/ü/x",
                "/",
            ],
            TARGET => vec![
                "https://new.example/",
                "https://x.example/p?q#f",
                "http://bücher.example:8080/a",
                "https://a.example/blog/",
            ],
            REDIRECT_KIND => vec!["", "permanent", "temporary"],
            PHP_UPSTREAM => vec!["127.0.0.1:9000", "php:9000", "unix//run/php/php-fpm.sock"],
            CONFIG => vec!["respond hi", "  handle {\n respond x\n}\n"],
            other => unreachable!("no realistic values for {other}"),
        }
    }

    /// A value for every field of every template: mostly realistic, sometimes hostile.
    fn form_values() -> impl Strategy<Value = BTreeMap<String, String>> {
        let per_field: Vec<BoxedStrategy<(String, String)>> = Template::ALL
            .iter()
            .flat_map(|t| t.fields())
            .map(|field| {
                let name = field.name.to_string();
                prop_oneof![
                    4 => prop::sample::select(realistic(field.name)).prop_map(str::to_string),
                    1 => "[a-z0-9:/. {}\"#\\\\$-]{0,24}",
                    1 => "\\PC{0,24}",
                ]
                .prop_map(move |value| (name.clone(), value))
                .boxed()
            })
            .collect();
        per_field.prop_map(|pairs| pairs.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn generated_bodies_are_always_valid_and_already_normalized(
            template in prop::sample::select(Template::ALL.to_vec()),
            admin_role in any::<bool>(),
            values in form_values(),
        ) {
            let ctx = GenerateContext { admin: admin_role, user_root_base: "/srv/www".into() };
            match template.generate(&values, &ctx) {
                Ok(body) if template != Template::Raw => {
                    let parsed = CaddyfileBody::parse(&body, &BodyPolicy::admin());
                    prop_assert_eq!(parsed.map(|p| p.as_str().to_string()), Ok(body));
                }
                Ok(_) => {}
                Err(errors) => {
                    prop_assert!(!errors.is_empty());
                    for (field, error) in errors {
                        prop_assert!(template.fields().iter().any(|f| f.name == field));
                        prop_assert!(error.0.ends_with('.'), "{}", error.0);
                    }
                }
            }
        }
    }
}
