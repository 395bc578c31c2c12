//! The generators: each template's form values, checked, become a site-block body in
//! normal form. A last parse of every generated body stops a generator bug from reaching
//! the Caddyfile.

use super::catalog::*;
use super::values::*;
use crate::domain::FieldError;
use crate::domain::caddyfile::{BodyPolicy, CaddyfileBody, encode_arg};
use crate::domain::vhost::upstream::{Upstream, Upstreams};
use std::collections::BTreeMap;

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

impl Template {
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
pub(super) struct Form<'a> {
    pub(super) template: Template,
    pub(super) values: &'a BTreeMap<String, String>,
    pub(super) errors: Vec<(&'static str, FieldError)>,
}

impl<'a> Form<'a> {
    pub(super) fn raw(&self, name: &str) -> &'a str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// Records the error under `name`, if any, and hands on the value.
    pub(super) fn check<T>(
        &mut self,
        name: &'static str,
        result: Result<T, FieldError>,
    ) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.errors.push((name, error));
                None
            }
        }
    }

    pub(super) fn checkbox(&mut self, name: &'static str) -> Option<bool> {
        let value = self.raw(name).trim().to_ascii_lowercase();
        let result = match value.as_str() {
            "" | "off" | "false" | "0" | "no" => Ok(false),
            "on" | "true" | "1" | "yes" | "checked" => Ok(true),
            _ => refuse("Tick the box or leave it empty."),
        };
        self.check(name, result)
    }

    /// The chosen option's value, or the field's default when nothing was chosen.
    pub(super) fn select(&mut self, name: &'static str) -> Option<&'static str> {
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

pub(super) fn reverse_proxy(form: &mut Form<'_>) -> Option<String> {
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

pub(super) fn load_balancer(form: &mut Form<'_>) -> Option<String> {
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

pub(super) fn static_files(form: &mut Form<'_>, ctx: &GenerateContext) -> Option<String> {
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

pub(super) fn redirect(form: &mut Form<'_>) -> Option<String> {
    let kind = form.select(REDIRECT_KIND);
    let keep_path = form.checkbox(KEEP_PATH);
    let target = redirect_target(form.raw(TARGET), keep_path.unwrap_or(false));
    let target = form.check(TARGET, target);
    let (kind, keep_path, target) = (kind?, keep_path?, target?);
    let uri = if keep_path { "{uri}" } else { "" };
    Some(format!("redir {target}{uri} {kind}\n"))
}

pub(super) fn php_fastcgi(form: &mut Form<'_>, ctx: &GenerateContext) -> Option<String> {
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

pub(super) fn raw(form: &mut Form<'_>) -> Option<String> {
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
