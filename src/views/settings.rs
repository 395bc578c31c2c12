//! The settings page (admin): the tenant policy, i.e. where users' sites may make Caddy
//! connect, and the rollout policy, with the forms' own types beside their markup.

use super::forms::Field;
use super::{Ctx, csrf_field};
use crate::domain::FieldErrors;
use crate::domain::tenant::{Reserved, ReservedHost};
use crate::domain::words::count;
use crate::fleet::rollout::Policy;
use crate::tenancy::Review;
use maud::{Markup, html};

/// The tenant policy form as typed: one entry per line.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct PolicyForm {
    pub networks: String,
    pub upstream_hosts: String,
    pub unix_sockets: String,
}

/// The rollout policy form as typed.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct RolloutForm {
    /// `all_at_once` or `canary_first`.
    pub policy: String,
    pub slow_factor: String,
    pub slow_floor_ms: String,
}

/// What the page shows.
pub struct Page<'a> {
    /// The rollout policy as typed (or as stored), and why it was refused.
    pub rollout: &'a RolloutForm,
    pub rollout_errors: &'a FieldErrors,
    pub rollout_saved: bool,
    pub form: &'a PolicyForm,
    pub errors: &'a FieldErrors,
    /// The lists come from this page (else from the config file).
    pub from_settings: bool,
    pub saved: bool,
    /// Closed whatever the lists say.
    pub reserved: &'a [Reserved],
    /// Users' sites that break the policy now, once an admin asked.
    pub review: Option<&'a Review>,
}

struct ListField {
    name: &'static str,
    label: &'static str,
    hint: &'static str,
    placeholder: &'static str,
}

const FIELDS: [ListField; 3] = [
    ListField {
        name: "networks",
        label: "Networks users' sites may reach",
        hint: "Addresses or CIDRs, one per line. Proxy upstreams, load-balancer members, health \
               checks and FastCGI of users' sites must lie inside one. Loopback (this server) is \
               reachable only if you list it.",
        placeholder: "10.0.20.0/24\n192.168.1.50",
    },
    ListField {
        name: "upstream_hosts",
        label: "Host names users' sites may reach",
        hint: "Exact names, or *.suffix for every name below it, one per line. DNS can point a \
               name anywhere, this server included, at any time: list only names whose DNS you \
               control.",
        placeholder: "*.apps.internal.example",
    },
    ListField {
        name: "unix_sockets",
        label: "Unix sockets users' sites may reach",
        hint: "Absolute paths, one per line, e.g. PHP-FPM's socket for the PHP template.",
        placeholder: "/run/php/php8.2-fpm.sock",
    },
];

fn value<'a>(form: &'a PolicyForm, name: &str) -> &'a str {
    match name {
        "networks" => &form.networks,
        "upstream_hosts" => &form.upstream_hosts,
        _ => &form.unix_sockets,
    }
}

fn shown(r: &Reserved) -> String {
    match &r.host {
        ReservedHost::Loopback => format!("loopback:{}", r.port),
        ReservedHost::Ip(ip) if ip.is_ipv6() => format!("[{ip}]:{}", r.port),
        ReservedHost::Ip(ip) => format!("{ip}:{}", r.port),
        ReservedHost::Name(name) => format!("{name}:{}", r.port),
    }
}

pub fn page(ctx: &Ctx, p: &Page<'_>) -> Markup {
    html! {
        div .stack #settings {
            @if p.saved { p .notice .ok #notice role="status" { "Saved. Users' sites are judged by these lists from now on." } }
            section .card #tenant-policy {
                h1 { "Settings" }
                h2 { "What users' sites may reach" }
                p .muted {
                    "Every site of a user is checked by a Caddy before it is saved: Gatehouse reads what Caddy would run and refuses any address outside these lists, any file outside "
                    code { "vhosts.user_root_base" } ", and any handler, matcher or option it does not know to be safe. Admins' sites are not limited."
                }
                p .muted #policy-source {
                    @if p.from_settings { "These lists were saved on this page and replace the config file's." }
                    @else { "These lists come from the config file (" code { "[vhosts] user_networks" } ", " code { "user_upstream_hosts" } ", " code { "user_unix_sockets" } "); saving here replaces them." }
                }
                form method="post" action="/settings" {
                    (csrf_field(ctx))
                    @if let Some(why) = p.errors.get("") { p .notice .error role="alert" { (why) } }
                    @for f in &FIELDS {
                        @let error = p.errors.get(f.name);
                        div .field .has-error[error.is_some()] {
                            label for=(f.name) { (f.label) }
                            textarea .mono id=(f.name) name=(f.name) rows="4" spellcheck="false"
                                placeholder=(f.placeholder) aria-invalid=[error.map(|_| "true")] { (value(p.form, f.name)) }
                            p .hint { (f.hint) }
                            @if let Some(why) = error { p .field-error id=(format!("{}-error", f.name)) role="alert" { (why) } }
                        }
                    }
                    button .button .primary type="submit" { "Save" }
                }
                section #review {
                    h3 { "Users' sites against these lists" }
                    p .muted { "The lists apply when a site is saved: closing a network, or upgrading from a version without them, does not change sites already running. Check them here, then edit or switch off what breaks them." }
                    form method="post" action="/settings/review" {
                        (csrf_field(ctx))
                        button .button type="submit" { "Check every user's site now" }
                    }
                    @match p.review {
                        None => {}
                        Some(Review::Unavailable(why)) => { p .notice .error #review-result role="alert" { (why) } }
                        Some(Review::Breaches(list)) if list.is_empty() => {
                            p .notice .ok #review-result role="status" { "Every enabled site of a user keeps to these lists." }
                        }
                        Some(Review::Breaches(list)) => {
                            p .notice .warn #review-result role="status" { (count(list.len(), "enabled site", "enabled sites")) " of users break these lists:" }
                            div .table-wrap {
                                table .table #breaches {
                                    thead { tr { th { "Site" } th { "Owner" } th { "Why" } } }
                                    tbody {
                                        @for b in list {
                                            tr data-domain=(b.domain) {
                                                td { a href=(format!("/vhosts/{}/edit", b.id)) { (b.domain) } }
                                                td { (b.owner) }
                                                td { (b.why) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                h3 { "Always closed to users' sites" }
                p .muted { "Whatever the lists say: link-local addresses (such as the cloud metadata service), the unspecified address, and these addresses of Gatehouse and Caddy:" }
                ul #reserved {
                    @for r in p.reserved {
                        li { code { (shown(r)) } " — " (r.what) }
                    }
                }
            }
            (rollout_section(ctx, p))
        }
    }
}

/// The rollout policy: all agents at once, or the `canary` agents first, probed.
fn rollout_section(ctx: &Ctx, p: &Page<'_>) -> Markup {
    let (form, errors) = (p.rollout, p.rollout_errors);
    let canary = form.policy == "canary_first";
    html! {
        section .card #rollout {
            h2 { "How changes reach the agents" }
            @if p.rollout_saved { p .notice .ok #rollout-notice role="status" { "Saved. Changes reach the agents this way from now on." } }
            form method="post" action="/settings/rollout" {
                (csrf_field(ctx))
                fieldset .field .has-error[errors.get("policy").is_some()] {
                    legend { "Rollout policy" }
                    label .check-line { input type="radio" name="policy" value="all_at_once" checked[!canary]; " All agents at once" }
                    label .check-line { input type="radio" name="policy" value="canary_first" checked[canary];
                        " Canary first: the agents labelled " code { "canary" } ", then the rest" }
                    p .hint { "Between the two, Gatehouse checks each canary agent's health and asks its Caddy for every changed site, as a visitor would. If a site now fails (a 5xx or no answer where it answered before) or is much slower, every agent gets its previous configuration back and nothing is saved." }
                    @if let Some(why) = errors.get("policy") { p .field-error #policy-error role="alert" { (why) } }
                }
                (Field::new("slow_factor", "Slower means more than … times as long as before").value(&form.slow_factor).render(errors))
                (Field::new("slow_floor_ms", "… and more than (milliseconds)").value(&form.slow_floor_ms).render(errors))
                button .button .primary type="submit" { "Save rollout policy" }
            }
        }
    }
}

impl RolloutForm {
    /// The form showing `policy`.
    pub fn of(policy: &Policy) -> Self {
        Self {
            policy: if policy.canary_first {
                "canary_first"
            } else {
                "all_at_once"
            }
            .into(),
            slow_factor: policy.slow_factor.to_string(),
            slow_floor_ms: policy.slow_floor_ms.to_string(),
        }
    }

    /// The policy the form asks for, or the reasons by field.
    pub fn policy(&self) -> Result<Policy, FieldErrors> {
        let mut errors = FieldErrors::default();
        let canary_first = match self.policy.as_str() {
            "canary_first" => true,
            "all_at_once" | "" => false,
            _ => {
                errors.add("policy", "Choose a rollout policy.");
                false
            }
        };
        let slow_factor = match self.slow_factor.trim().parse::<f64>() {
            Ok(f) if (1.0..=100.0).contains(&f) => f,
            _ => {
                errors.add("slow_factor", "Give a number from 1 to 100, e.g. 3.");
                0.0
            }
        };
        let slow_floor_ms = match self.slow_floor_ms.trim().parse::<u64>() {
            Ok(ms) if ms <= 60_000 => ms,
            _ => {
                errors.add(
                    "slow_floor_ms",
                    "Give whole milliseconds from 0 to 60000, e.g. 1000.",
                );
                0
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Policy {
            canary_first,
            slow_factor,
            slow_floor_ms,
        })
    }
}
