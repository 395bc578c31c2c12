//! The catalog of site templates: each one's slug, label, summary, help page and the
//! fields of its form.

/// A way of configuring a site. The slug is stored in the database, so it never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Template {
    ReverseProxy,
    LoadBalancer,
    StaticFiles,
    Redirect,
    PhpFastcgi,
    Raw,
}

/// One input of a template's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    /// The form field's name, unique across all templates (the form keeps every value it saw).
    pub name: &'static str,
    pub label: &'static str,
    pub kind: FieldKind,
    pub hint: &'static str,
    pub required: bool,
    /// What a new form starts with. A checkbox is checked when this is `"on"`.
    pub default: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Textarea,
    /// `(value, label)` pairs, in display order.
    Select(&'static [(&'static str, &'static str)]),
    /// Checked when the submitted value is `on` (what browsers send); absent means unchecked.
    Checkbox,
}

pub(super) const UPSTREAM: &str = "upstream";
pub(super) const UPSTREAM_HOST_HEADER: &str = "upstream_host_header";
pub(super) const UPSTREAMS: &str = "upstreams";
pub(super) const LB_POLICY: &str = "lb_policy";
pub(super) const HEALTH_URI: &str = "health_uri";
pub(super) const HEALTH_INTERVAL: &str = "health_interval";
pub(super) const ROOT: &str = "root";
pub(super) const BROWSE: &str = "browse";
pub(super) const TARGET: &str = "target";
pub(super) const REDIRECT_KIND: &str = "redirect_kind";
pub(super) const KEEP_PATH: &str = "keep_path";
pub(super) const PHP_ROOT: &str = "php_root";
pub(super) const PHP_UPSTREAM: &str = "php_upstream";
pub(super) const CONFIG: &str = "config";

pub(super) const LB_POLICIES: &[(&str, &str)] = &[
    ("round_robin", "Round robin: take turns"),
    ("least_conn", "Least busy: fewest open requests"),
    ("random", "Random"),
    ("ip_hash", "Sticky: same client address, same upstream"),
    ("first", "First available: the others are standby"),
];

pub(super) const REDIRECT_KINDS: &[(&str, &str)] = &[
    ("permanent", "Permanent (301)"),
    ("temporary", "Temporary (302)"),
];

pub(super) const REVERSE_PROXY_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: UPSTREAM,
        label: "Upstream",
        kind: FieldKind::Text,
        hint: "Where requests go: host:port such as 127.0.0.1:3000 or app:8080, or a URL such \
               as https://backend.example.",
        required: true,
        default: "",
    },
    FieldSpec {
        name: UPSTREAM_HOST_HEADER,
        label: "Send the upstream's own host name",
        kind: FieldKind::Checkbox,
        hint: "Caddy normally passes on this site's name in the Host header. Tick this for \
               upstreams that expect their own name, such as most HTTPS services.",
        required: false,
        default: "",
    },
];

pub(super) const LOAD_BALANCER_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: UPSTREAMS,
        label: "Upstreams",
        kind: FieldKind::Textarea,
        hint: "Two or more backends, one per line, e.g. 10.0.0.2:8080. All plain HTTP or all \
               https://.",
        required: true,
        default: "",
    },
    FieldSpec {
        name: LB_POLICY,
        label: "How to choose an upstream",
        kind: FieldKind::Select(LB_POLICIES),
        hint: "Round robin suits most sites; sticky keeps each visitor on one upstream.",
        required: true,
        default: "round_robin",
    },
    FieldSpec {
        name: HEALTH_URI,
        label: "Health check path",
        kind: FieldKind::Text,
        hint: "A path Caddy requests on every upstream to see that it is up, e.g. /health. \
               Leave empty for no active health checks.",
        required: false,
        default: "",
    },
    FieldSpec {
        name: HEALTH_INTERVAL,
        label: "Health check interval",
        kind: FieldKind::Text,
        hint: "How often to check, from 1s to 1h, e.g. 10s or 1m. Used only with a health \
               check path.",
        required: false,
        default: "10s",
    },
];

pub(super) const STATIC_FILES_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: ROOT,
        label: "Folder",
        kind: FieldKind::Text,
        hint: "The absolute path of the folder to serve, e.g. /srv/www/example.",
        required: true,
        default: "",
    },
    FieldSpec {
        name: BROWSE,
        label: "List folder contents",
        kind: FieldKind::Checkbox,
        hint: "Show a file listing for folders without an index.html.",
        required: false,
        default: "",
    },
];

pub(super) const REDIRECT_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: TARGET,
        label: "Redirect to",
        kind: FieldKind::Text,
        hint: "A full address starting with https:// or http://, e.g. https://www.example.com.",
        required: true,
        default: "",
    },
    FieldSpec {
        name: REDIRECT_KIND,
        label: "Kind",
        kind: FieldKind::Select(REDIRECT_KINDS),
        hint: "Permanent tells browsers and search engines to remember the new address; \
               temporary does not.",
        required: true,
        default: "permanent",
    },
    FieldSpec {
        name: KEEP_PATH,
        label: "Keep the path",
        kind: FieldKind::Checkbox,
        hint: "Send /about?x=1 to the same path and query on the new address, instead of to \
               the address itself.",
        required: false,
        default: "on",
    },
];

pub(super) const PHP_FASTCGI_FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: PHP_ROOT,
        label: "Folder",
        kind: FieldKind::Text,
        hint: "The absolute path of the PHP application, e.g. /srv/www/blog.",
        required: true,
        default: "",
    },
    FieldSpec {
        name: PHP_UPSTREAM,
        label: "PHP-FPM address",
        kind: FieldKind::Text,
        hint: "host:port where PHP-FPM listens, e.g. 127.0.0.1:9000. Admins may also give a \
               unix socket, e.g. unix//run/php/php-fpm.sock.",
        required: true,
        default: "",
    },
];

pub(super) const RAW_FIELDS: &[FieldSpec] = &[FieldSpec {
    name: CONFIG,
    label: "Caddyfile directives",
    kind: FieldKind::Textarea,
    hint: "What goes inside the site block, e.g. respond \"Hello\" 200.",
    required: true,
    default: "",
}];

impl Template {
    pub const ALL: [Template; 6] = [
        Template::ReverseProxy,
        Template::LoadBalancer,
        Template::StaticFiles,
        Template::Redirect,
        Template::PhpFastcgi,
        Template::Raw,
    ];

    /// Stable identifier, stored in the database and used as the docs file's stem.
    pub fn slug(self) -> &'static str {
        match self {
            Template::ReverseProxy => "reverse_proxy",
            Template::LoadBalancer => "load_balancer",
            Template::StaticFiles => "static_files",
            Template::Redirect => "redirect",
            Template::PhpFastcgi => "php_fastcgi",
            Template::Raw => "raw",
        }
    }

    pub fn from_slug(s: &str) -> Option<Self> {
        Template::ALL.into_iter().find(|t| t.slug() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Template::ReverseProxy => "Reverse proxy",
            Template::LoadBalancer => "Load-balanced proxy",
            Template::StaticFiles => "Static files",
            Template::Redirect => "Redirect",
            Template::PhpFastcgi => "PHP (FastCGI)",
            Template::Raw => "Raw Caddyfile",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Template::ReverseProxy => {
                "Pass every request on to one backend, such as an app listening on a port."
            }
            Template::LoadBalancer => {
                "Spread requests over several backends, with optional health checks."
            }
            Template::StaticFiles => "Serve the files in a folder on the server.",
            Template::Redirect => "Send visitors on to another address.",
            Template::PhpFastcgi => {
                "Run a PHP application through PHP-FPM and serve its other files directly."
            }
            Template::Raw => "Write the site's Caddyfile directives yourself.",
        }
    }

    /// The form fields, in display order.
    pub fn fields(self) -> &'static [FieldSpec] {
        match self {
            Template::ReverseProxy => REVERSE_PROXY_FIELDS,
            Template::LoadBalancer => LOAD_BALANCER_FIELDS,
            Template::StaticFiles => STATIC_FILES_FIELDS,
            Template::Redirect => REDIRECT_FIELDS,
            Template::PhpFastcgi => PHP_FASTCGI_FIELDS,
            Template::Raw => RAW_FIELDS,
        }
    }

    /// The template's help page, in Markdown.
    pub fn doc(self) -> &'static str {
        macro_rules! doc {
            ($slug:literal) => {
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/templates-docs/",
                    $slug,
                    ".md"
                ))
            };
        }
        match self {
            Template::ReverseProxy => doc!("reverse_proxy"),
            Template::LoadBalancer => doc!("load_balancer"),
            Template::StaticFiles => doc!("static_files"),
            Template::Redirect => doc!("redirect"),
            Template::PhpFastcgi => doc!("php_fastcgi"),
            Template::Raw => doc!("raw"),
        }
    }
}
