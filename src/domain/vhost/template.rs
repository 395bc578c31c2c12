//! The six site templates: what each asks for, and how its answers become a site-block body.
//!
//! Every body built here is already in the normal form that `CaddyfileBody` produces (tab
//! indentation, single spaces, one directive per line, ending in a newline), so that what the
//! person previews is byte for byte what is stored and rendered. User text only ever reaches
//! the body as a single token: either it was parsed into a type whose canonical form is plain
//! ASCII, or it goes through `encode_arg`.

use std::collections::BTreeMap;

use super::address::{normalize_host, parse_port};
use super::upstream::{Upstream, Upstreams};
use crate::domain::FieldError;
use crate::domain::caddyfile::{BodyPolicy, CaddyfileBody, encode_arg};

fn refuse<T>(why: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError(why.into()))
}

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

/// Who is asking, which decides how far some fields may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerateContext {
    /// `false` for the `user` role: document roots must then lie inside `user_root_base`.
    /// Where upstreams may point is not decided here but by the tenant policy, on what Caddy
    /// makes of the whole site (`crate::domain::tenant`), for every template alike.
    pub admin: bool,
    /// The folder user-role sites live under, e.g. `/srv/www`.
    pub user_root_base: String,
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

const UPSTREAM: &str = "upstream";
const UPSTREAM_HOST_HEADER: &str = "upstream_host_header";
const UPSTREAMS: &str = "upstreams";
const LB_POLICY: &str = "lb_policy";
const HEALTH_URI: &str = "health_uri";
const HEALTH_INTERVAL: &str = "health_interval";
const ROOT: &str = "root";
const BROWSE: &str = "browse";
const TARGET: &str = "target";
const REDIRECT_KIND: &str = "redirect_kind";
const KEEP_PATH: &str = "keep_path";
const PHP_ROOT: &str = "php_root";
const PHP_UPSTREAM: &str = "php_upstream";
const CONFIG: &str = "config";

const LB_POLICIES: &[(&str, &str)] = &[
    ("round_robin", "Round robin: take turns"),
    ("least_conn", "Least busy: fewest open requests"),
    ("random", "Random"),
    ("ip_hash", "Sticky: same client address, same upstream"),
    ("first", "First available: the others are standby"),
];

const REDIRECT_KINDS: &[(&str, &str)] = &[
    ("permanent", "Permanent (301)"),
    ("temporary", "Temporary (302)"),
];

const REVERSE_PROXY_FIELDS: &[FieldSpec] = &[
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

const LOAD_BALANCER_FIELDS: &[FieldSpec] = &[
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

const STATIC_FILES_FIELDS: &[FieldSpec] = &[
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

const REDIRECT_FIELDS: &[FieldSpec] = &[
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

const PHP_FASTCGI_FIELDS: &[FieldSpec] = &[
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

const RAW_FIELDS: &[FieldSpec] = &[FieldSpec {
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

    /// Builds the site-block body from the submitted form values (by field name). Values of
    /// fields that belong to other templates are ignored. Every field is checked, so the
    /// person sees all problems at once.
    ///
    /// For every template but `Raw` the result is accepted by `CaddyfileBody::parse` with the
    /// admin policy and is already in its normalized form. `Raw` returns the trimmed text
    /// unchecked: the caller validates it with the policy of the person's role.
    pub fn generate(
        self,
        values: &BTreeMap<String, String>,
        ctx: &GenerateContext,
    ) -> Result<String, Vec<(&'static str, FieldError)>> {
        let mut form = Form {
            template: self,
            values,
            errors: Vec::new(),
        };
        let body = match self {
            Template::ReverseProxy => reverse_proxy(&mut form),
            Template::LoadBalancer => load_balancer(&mut form),
            Template::StaticFiles => static_files(&mut form, ctx),
            Template::Redirect => redirect(&mut form),
            Template::PhpFastcgi => php_fastcgi(&mut form, ctx),
            Template::Raw => raw(&mut form),
        };
        let body = match body {
            Some(body) if form.errors.is_empty() => body,
            _ => return Err(form.errors),
        };
        if self == Template::Raw {
            return Ok(body);
        }
        // Backstop: a generator bug must surface as a refusal, never as a broken Caddyfile.
        match CaddyfileBody::parse(&body, &BodyPolicy::admin()) {
            Ok(parsed) if parsed.as_str() == body => Ok(body),
            _ => Err(vec![(
                self.fields()[0].name,
                FieldError("These values cannot be written safely into the Caddyfile.".into()),
            )]),
        }
    }
}

/// The submitted values and the errors found so far.
struct Form<'a> {
    template: Template,
    values: &'a BTreeMap<String, String>,
    errors: Vec<(&'static str, FieldError)>,
}

impl<'a> Form<'a> {
    fn raw(&self, name: &str) -> &'a str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// Records the error under `name`, if any, and hands on the value.
    fn check<T>(&mut self, name: &'static str, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push((name, error));
                None
            }
        }
    }

    fn checkbox(&mut self, name: &'static str) -> Option<bool> {
        let value = self.raw(name).trim().to_ascii_lowercase();
        let result = match value.as_str() {
            "" | "off" | "false" | "0" | "no" => Ok(false),
            "on" | "true" | "1" | "yes" | "checked" => Ok(true),
            _ => refuse("Tick the box or leave it empty."),
        };
        self.check(name, result)
    }

    /// The chosen option's value, or the field's default when nothing was chosen.
    fn select(&mut self, name: &'static str) -> Option<&'static str> {
        let spec = self
            .template
            .fields()
            .iter()
            .find(|f| f.name == name)
            .expect("a select field of this template");
        let FieldKind::Select(options) = spec.kind else {
            unreachable!("{name} is a select field");
        };
        let value = self.raw(name).trim();
        let value = if value.is_empty() {
            spec.default
        } else {
            value
        };
        let result = options
            .iter()
            .find(|(option, _)| *option == value)
            .map(|(option, _)| *option)
            .ok_or_else(|| FieldError("Choose one of the listed options.".into()));
        self.check(name, result)
    }
}

fn reverse_proxy(form: &mut Form<'_>) -> Option<String> {
    let upstream = Upstream::parse(form.raw(UPSTREAM));
    let upstream = form.check(UPSTREAM, upstream);
    let host_header = form.checkbox(UPSTREAM_HOST_HEADER);
    let (upstream, host_header) = (upstream?, host_header?);
    Some(if host_header {
        format!(
            "reverse_proxy {} {{\n\theader_up Host {{upstream_hostport}}\n}}\n",
            upstream.as_str()
        )
    } else {
        format!("reverse_proxy {}\n", upstream.as_str())
    })
}

fn load_balancer(form: &mut Form<'_>) -> Option<String> {
    let upstreams = Upstreams::parse(form.raw(UPSTREAMS)).and_then(|list| {
        if list.as_slice().len() < 2 {
            return refuse(
                "A load balancer needs at least two upstreams; for one, use the Reverse proxy \
                 template.",
            );
        }
        Ok(list)
    });
    let upstreams = form.check(UPSTREAMS, upstreams);
    let policy = form.select(LB_POLICY);
    let uri = form.raw(HEALTH_URI).trim();
    let health = if uri.is_empty() {
        Some(None)
    } else {
        let uri = health_uri(uri);
        let uri = form.check(HEALTH_URI, uri);
        let interval = health_interval(form.raw(HEALTH_INTERVAL));
        let interval = form.check(HEALTH_INTERVAL, interval);
        uri.zip(interval).map(Some)
    };
    let (upstreams, policy, health) = (upstreams?, policy?, health?);
    let mut body = format!(
        "reverse_proxy {} {{\n\tlb_policy {policy}\n",
        upstreams.joined()
    );
    if let Some((uri, interval)) = health {
        body.push_str(&format!(
            "\thealth_uri {uri}\n\thealth_interval {interval}\n"
        ));
    }
    body.push_str("}\n");
    Some(body)
}

fn static_files(form: &mut Form<'_>, ctx: &GenerateContext) -> Option<String> {
    let root = site_root(
        form.raw(ROOT),
        ctx,
        "Enter the folder to serve, e.g. /srv/www/example.",
    );
    let root = form.check(ROOT, root);
    let browse = form.checkbox(BROWSE);
    let (root, browse) = (root?, browse?);
    let browse = if browse { " browse" } else { "" };
    Some(format!(
        "root * {}\nfile_server{browse}\n",
        encode_arg(&root)
    ))
}

fn redirect(form: &mut Form<'_>) -> Option<String> {
    let kind = form.select(REDIRECT_KIND);
    let keep_path = form.checkbox(KEEP_PATH);
    let target = redirect_target(form.raw(TARGET), keep_path.unwrap_or(false));
    let target = form.check(TARGET, target);
    let (kind, keep_path, target) = (kind?, keep_path?, target?);
    let uri = if keep_path { "{uri}" } else { "" };
    Some(format!("redir {target}{uri} {kind}\n"))
}

fn php_fastcgi(form: &mut Form<'_>, ctx: &GenerateContext) -> Option<String> {
    let root = site_root(
        form.raw(PHP_ROOT),
        ctx,
        "Enter the folder of the PHP application, e.g. /srv/www/blog.",
    );
    let root = form.check(PHP_ROOT, root);
    let upstream = php_upstream(form.raw(PHP_UPSTREAM));
    let upstream = form.check(PHP_UPSTREAM, upstream);
    let (root, upstream) = (root?, upstream?);
    Some(format!(
        "root * {}\nphp_fastcgi {upstream}\nfile_server\n",
        encode_arg(&root)
    ))
}

fn raw(form: &mut Form<'_>) -> Option<String> {
    let text = form.raw(CONFIG).trim();
    if text.is_empty() {
        form.check::<()>(
            CONFIG,
            refuse("Enter the directives for this site, e.g. respond \"Hello\" 200."),
        );
        return None;
    }
    Some(text.to_string())
}

/// Longest document root accepted; far more than any real one, far less than PATH_MAX.
const MAX_PATH_BYTES: usize = 1024;

/// A document root: absolute, without `.` or `..` parts, written with single slashes and no
/// trailing one. For the user role it must be `user_root_base` or a folder below it, compared
/// part by part so that `/srv/www2` is not inside `/srv/www`. Symbolic links are not (and
/// cannot be, here) resolved.
fn site_root(value: &str, ctx: &GenerateContext, empty: &str) -> Result<String, FieldError> {
    let path = value.trim();
    if path.is_empty() {
        return refuse(empty);
    }
    let segments = path_segments(path)?;
    let canonical = format!("/{}", segments.join("/"));
    if !ctx.admin {
        let base = path_segments(ctx.user_root_base.trim()).map_err(|_| {
            FieldError(
                "No folder for sites is set up for your account, so it cannot serve files; \
                 ask an admin."
                    .into(),
            )
        })?;
        if !segments.starts_with(&base) {
            let base = format!("/{}", base.join("/"));
            let example = format!("{}/example", base.trim_end_matches('/'));
            return refuse(format!("Choose a folder inside {base}, e.g. {example}."));
        }
    }
    Ok(canonical)
}

fn path_segments(path: &str) -> Result<Vec<&str>, FieldError> {
    if path.len() > MAX_PATH_BYTES {
        return refuse("That path is too long.");
    }
    if path.chars().any(char::is_control) {
        return refuse("The path contains an invisible control character; retype it.");
    }
    if !path.starts_with('/') {
        return refuse("Enter an absolute path that starts with /, e.g. /srv/www/example.");
    }
    if path.contains(['{', '}']) {
        return refuse("Braces are not allowed in a path; Caddy would read them as placeholders.");
    }
    if path.contains(['"', '`', '\\']) {
        return refuse("Quotes and backslashes are not allowed in a path.");
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.contains(&"..") {
        return refuse("A path cannot contain \"..\"; write the folder out in full.");
    }
    if segments.contains(&".") {
        return refuse("A path cannot contain \".\" parts; write the folder out in full.");
    }
    Ok(segments)
}

/// The PHP-FPM address: `host:port`, or for admins a unix socket written as Caddy wants it,
/// `unix//run/php/php-fpm.sock`.
fn php_upstream(value: &str) -> Result<String, FieldError> {
    let text = value.trim();
    if text.is_empty() {
        return refuse("Enter the PHP-FPM address, e.g. 127.0.0.1:9000.");
    }
    if let Some(prefix) = text.get(..5)
        && prefix.eq_ignore_ascii_case("unix/")
    {
        return unix_socket(&text[5..]);
    }
    let upstream = Upstream::parse(text)?;
    if upstream.scheme().is_some() {
        return refuse(
            "Enter host:port without http:// or https://; PHP-FPM speaks FastCGI, not HTTP.",
        );
    }
    Ok(upstream.as_str().to_string())
}

/// The kernel limits a socket path to 108 bytes including the terminating NUL.
const MAX_SOCKET_PATH_BYTES: usize = 107;

fn unix_socket(path: &str) -> Result<String, FieldError> {
    if !path.starts_with('/') {
        return refuse(
            "Write the socket's absolute path after unix/, e.g. unix//run/php/php-fpm.sock.",
        );
    }
    if let Some(c) = path
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "/._-@+".contains(c)))
    {
        return refuse(format!(
            "The character {c:?} is not allowed in a socket path."
        ));
    }
    let segments = path_segments(path)?;
    let canonical = format!("/{}", segments.join("/"));
    if canonical.len() > MAX_SOCKET_PATH_BYTES || segments.is_empty() {
        return refuse("That is not a usable socket path.");
    }
    Ok(format!("unix/{canonical}"))
}

/// Longest redirect target accepted; longer URLs break in some browsers anyway.
const MAX_URL_BYTES: usize = 2048;

/// An absolute http(s) URL with a host. The scheme and host are normalized (international
/// names become punycode, which every browser accepts in `Location`); the rest is kept as
/// typed but must be ASCII and free of anything Caddy or a browser would read specially.
/// With `keep_path` the request's `{uri}` is appended, so the target may not end in `/` and
/// cannot carry its own query or fragment.
fn redirect_target(value: &str, keep_path: bool) -> Result<String, FieldError> {
    let text = value.trim();
    if text.is_empty() {
        return refuse("Enter the address to redirect to, e.g. https://www.example.com.");
    }
    if text.len() > MAX_URL_BYTES {
        return refuse("That address is too long.");
    }
    for c in text.chars() {
        if c.is_whitespace() {
            return refuse("An address cannot contain spaces; write them as %20.");
        }
        if c.is_control() {
            return refuse("The address contains an invisible control character; retype it.");
        }
        match c {
            '{' | '}' => {
                return refuse(
                    "Braces are not allowed in the address; Caddy would read them as \
                     placeholders.",
                );
            }
            '"' | '\'' | '`' => return refuse("Quotes are not allowed in the address."),
            '\\' => return refuse("Backslashes are not allowed in the address."),
            '<' | '>' | '^' | '|' => {
                return refuse(format!(
                    "The character {c:?} is not allowed in an address; percent-encode it."
                ));
            }
            _ => {}
        }
    }
    let full_url = "Enter a full address starting with https:// or http://.";
    let Some((scheme, rest)) = text.split_once("://") else {
        return refuse(full_url);
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return refuse(full_url);
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return refuse("The address cannot contain a user name or password (user@…).");
    }
    if authority.contains(['[', ']']) {
        return refuse("IPv6 addresses are not supported in redirects yet; use a domain name.");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return refuse("The address needs a host name, e.g. https://www.example.com.");
    }
    if host.contains(['*', ':']) {
        return refuse("That host name is not valid in a redirect.");
    }
    let (host, _) = normalize_host(host, false)?;

    if !tail.is_ascii() {
        return refuse("Percent-encode non-ASCII characters in the path, e.g. %C3%BC for ü.");
    }
    check_percent_escapes(tail)?;
    let tail = if keep_path {
        if tail.contains(['?', '#']) {
            return refuse(
                "To keep the visitor's path, the address cannot have its own query (?…) or \
                 fragment (#…); remove them or untick Keep the path.",
            );
        }
        tail.trim_end_matches('/')
    } else {
        tail
    };
    let port = port.map(|p| format!(":{p}")).unwrap_or_default();
    Ok(format!("{scheme}://{host}{port}{tail}"))
}

fn check_percent_escapes(text: &str) -> Result<(), FieldError> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return refuse("Each % must start an escape such as %20.");
        }
    }
    Ok(())
}

/// A health check path such as `/health` or `/status?full=1`, limited to characters that need
/// no quoting in a URL or a Caddyfile.
fn health_uri(text: &str) -> Result<String, FieldError> {
    if text.len() > 256 {
        return refuse("That path is too long.");
    }
    if !text.starts_with('/') {
        return refuse("Enter a path that starts with /, e.g. /health.");
    }
    if text.starts_with("//") {
        return refuse("The path cannot start with //.");
    }
    if let Some(c) = text
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "-._~/?=&%+,;:@!*()".contains(c)))
    {
        return refuse(if c.is_whitespace() {
            "The path cannot contain spaces; write them as %20.".to_string()
        } else {
            format!("The character {c:?} is not allowed in the health check path.")
        });
    }
    check_percent_escapes(text)?;
    Ok(text.to_string())
}

/// Bounds for the health check interval: more often than every second hammers the
/// upstreams, less often than hourly is not a health check.
const MIN_INTERVAL_MS: u64 = 1_000;
const MAX_INTERVAL_MS: u64 = 3_600_000;

fn health_interval(value: &str) -> Result<String, FieldError> {
    let text = value.trim().to_ascii_lowercase();
    let text = if text.is_empty() {
        "10s".to_string()
    } else {
        text
    };
    match duration_ms(&text) {
        None => refuse("Enter a duration such as 10s, 1m or 1m30s."),
        Some(ms) if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&ms) => {
            refuse("Choose an interval from 1s to 1h.")
        }
        Some(_) => Ok(text),
    }
}

/// A Go-style duration made of whole numbers with `ms`, `s`, `m` or `h` (`1m30s`), in
/// milliseconds. A subset of what Caddy reads, so whatever passes here Caddy accepts.
fn duration_ms(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 32 {
        return None;
    }
    let mut rest = text;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 || digits > 9 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        total = total.checked_add(number.checked_mul(unit)?)?;
        rest = &rest[len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert!(
            error_for(t, &[("upstreams", "a:1")], &user(), "upstreams").contains("at least two")
        );
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
        assert!(
            error_for(t, &with("health", "10s"), &user(), "health_uri").contains("starts with /")
        );
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
}
