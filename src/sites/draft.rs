//! A site as someone asks for it ([`SiteDraft`]), before any rule has looked at it, and the
//! one check that turns it into a site Gatehouse can store and serve ([`CheckedSite`]) or
//! into the reasons it cannot be one, each by the field it belongs to. The portal builds a
//! draft from its form, the API from JSON (through [`super::SitePatch`]); both meet the same
//! rules here.

use crate::claims::{Claim, Refusal};
use crate::config::VhostsConfig;
use crate::db::users::User;
use crate::db::vhosts::{Snapshot, Vhost};
use crate::domain::caddyfile::{BodyPolicy, CaddyfileBody};
use crate::domain::labels;
use crate::domain::vhost::{GenerateContext, SiteAddress, Template};
use crate::domain::{FieldError, FieldErrors};
use crate::fleet::site_config;
use std::collections::BTreeMap;

/// The field key of an admin's knowing override of the overlap rule.
pub const ALLOW_OVERLAP: &str = "allow_overlap";

/// Whether `name` is a field of some template (a form keeps every value it saw).
pub fn is_template_field(name: &str) -> bool {
    Template::ALL
        .iter()
        .any(|t| t.fields().iter().any(|f| f.name == name))
}

/// Who a site is for, as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The person saving it (always so for a `user`).
    Me,
    /// Nobody: only admins see it (an admin's choice).
    Nobody,
    /// This user (an admin's choice).
    User(i64),
}

/// Which agents serve a site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Agents {
    All,
    Only(Vec<i64>),
    /// The agents carrying any of these labels, as typed (checked by [`SiteDraft::check`]).
    Labels(String),
}

/// A site as asked for: nothing in it has been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDraft {
    /// The address as typed.
    pub address: String,
    /// The template's slug as given ("" when none was).
    pub template: String,
    /// Template field values by field name; a field of another template is kept but unused.
    pub fields: BTreeMap<String, String>,
    pub enabled: bool,
    pub owner: Owner,
    pub agents: Agents,
    /// An admin's knowing override of the overlap rule, for this save only.
    pub allow_overlap: bool,
}

impl Default for SiteDraft {
    /// A new site: enabled, the saver's own, served by every agent.
    fn default() -> Self {
        Self {
            address: String::new(),
            template: String::new(),
            fields: BTreeMap::new(),
            enabled: true,
            owner: Owner::Me,
            agents: Agents::All,
            allow_overlap: false,
        }
    }
}

impl SiteDraft {
    /// A stored site as a draft, to change some of it.
    pub fn of(v: &Vhost) -> Self {
        let mut fields: BTreeMap<String, String> =
            serde_json::from_str(&v.params).unwrap_or_default();
        fields.retain(|_, value| !value.is_empty());
        Self {
            address: SiteAddress::parse(&v.domain)
                .map(|a| a.display())
                .unwrap_or_else(|_| v.domain.clone()),
            template: v.template.clone(),
            fields,
            enabled: v.enabled,
            owner: v.owner_id.map_or(Owner::Nobody, Owner::User),
            agents: if v.all_agents {
                Agents::All
            } else if !v.labels.is_empty() {
                Agents::Labels(labels::join(&v.labels))
            } else {
                Agents::Only(v.agent_ids.clone())
            },
            allow_overlap: false,
        }
    }

    /// Sets the defaults a new form shows for `template`'s fields, where nothing is set.
    pub fn add_defaults(&mut self, template: &str) {
        if let Some(t) = Template::from_slug(template) {
            for f in t.fields() {
                if !f.default.is_empty() && !self.fields.contains_key(f.name) {
                    self.fields
                        .insert(f.name.to_string(), f.default.to_string());
                }
            }
        }
    }

    /// Validates the whole draft for `author`: address, template fields, the generated body
    /// under the author's policy, the owner and the agents. Every reason is keyed by the
    /// field it belongs to.
    pub fn check(
        &self,
        author: &User,
        known: &Known,
        rules: &VhostsConfig,
    ) -> Result<CheckedSite, FieldErrors> {
        let mut errors = FieldErrors::default();
        let admin = author.is_admin();
        let address = errors.check("domain", SiteAddress::parse(&self.address));
        let template = match Template::from_slug(&self.template) {
            Some(t) => Some(t),
            None => {
                errors.add("template", "Choose a template.");
                None
            }
        };
        let ctx = GenerateContext {
            admin,
            user_root_base: rules.user_root_base.clone(),
        };
        let generated = template.and_then(|t| match t.generate(&self.fields, &ctx) {
            Ok(text) => Some((t, text)),
            Err(reasons) => {
                for (field, why) in reasons {
                    errors.add(field, why.0);
                }
                None
            }
        });
        let body = generated.as_ref().and_then(|(t, text)| {
            // Free text from a `user` meets the allowlist; template output is built from
            // typed, validated fields and is checked for structure only.
            let policy = if admin || *t != Template::Raw {
                BodyPolicy::admin()
            } else {
                BodyPolicy::restricted(&rules.user_directives)
            };
            match CaddyfileBody::parse(text, &policy) {
                Ok(body) => Some(body),
                Err(e) => {
                    let field = if *t == Template::Raw { "config" } else { "" };
                    errors.add(field, e.to_string());
                    None
                }
            }
        });
        // Some(owner) when valid, where owner None is a site nobody owns (admins only).
        let owner_id = match self.owner {
            _ if !admin => Some(Some(author.id)),
            Owner::Me => Some(Some(author.id)),
            Owner::Nobody => Some(None),
            Owner::User(id) if known.users.contains(&id) => Some(Some(id)),
            Owner::User(id) => {
                errors.add("owner_id", format!("There is no user with the id {id}."));
                None
            }
        };
        let (all_agents, agent_ids, labels) = match &self.agents {
            Agents::All => (true, Vec::new(), Vec::new()),
            Agents::Only(ids) => (false, ids.clone(), Vec::new()),
            Agents::Labels(typed) => (
                false,
                Vec::new(),
                errors
                    .check("labels", labels_served(typed, known))
                    .unwrap_or_default(),
            ),
        };
        let unknown: Vec<String> = agent_ids
            .iter()
            .filter(|id| !known.agents.contains(id))
            .map(i64::to_string)
            .collect();
        // A choice by label has its own reasons, beside the labels field.
        if matches!(self.agents, Agents::Only(_)) && agent_ids.is_empty() {
            errors.add(
                "serve_on",
                "Choose at least one agent, or serve it on all of them.",
            );
        } else if !unknown.is_empty() {
            // Refused rather than ignored: a site no server serves is not what was asked for.
            errors.add(
                "serve_on",
                format!(
                    "There is no agent with the id {}; choose among the agents listed.",
                    unknown.join(", ")
                ),
            );
        }
        let (Some(address), Some((template, _)), Some(body), Some(owner_id)) =
            (address, generated, body, owner_id)
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let get = |k: &str| self.fields.get(k).map(String::as_str).unwrap_or("");
        let params: BTreeMap<&str, &str> = template
            .fields()
            .iter()
            .map(|f| (f.name, get(f.name)))
            .collect();
        Ok(CheckedSite {
            template,
            block: site_config::site_block(address.as_str(), &body),
            judged: site_config::judged_block(address.as_str(), &body),
            host: address.host().to_string(),
            claim: Claim::of(author, self.allow_overlap, &rules.user_ports),
            snapshot: Snapshot {
                domain: address.as_str().to_string(),
                template: template.slug().to_string(),
                params: serde_json::to_string(&params).unwrap_or_else(|_| "{}".into()),
                config: body.as_str().to_string(),
                enabled: self.enabled,
                owner_id,
                all_agents,
                agent_ids,
                labels,
            },
        })
    }
}

/// The labels a site is served by, as typed: at least one, each carried by an agent the
/// author may serve sites on (so a site by label is never served by nobody).
fn labels_served(typed: &str, known: &Known) -> Result<Vec<String>, FieldError> {
    let chosen = labels::parse(typed)?;
    if chosen.is_empty() {
        return Err(FieldError(
            "Give at least one label, e.g. eu, or serve it on all agents.".into(),
        ));
    }
    let unknown: Vec<&str> = chosen
        .iter()
        .filter(|l| !known.labels.contains(l))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(FieldError(format!(
            "No agent carries the label {}; choose among: {}.",
            unknown.join(", "),
            if known.labels.is_empty() {
                "(no agent has labels yet)".to_string()
            } else {
                known.labels.join(", ")
            }
        )));
    }
    Ok(chosen)
}

/// What only the database knows when checking a draft: which agents and users exist.
#[derive(Debug, Default)]
pub struct Known {
    pub agents: Vec<i64>,
    /// Every label carried by an agent the author may serve sites on, sorted.
    pub labels: Vec<String>,
    /// Read for admins only: a `user` cannot choose an owner.
    pub users: Vec<i64>,
}

/// A draft that passed [`SiteDraft::check`]: what would be stored, and what is left to judge.
#[derive(Debug)]
pub struct CheckedSite {
    pub snapshot: Snapshot,
    /// Exactly the block the site adds to the Caddyfile: the preview.
    pub block: String,
    pub template: Template,
    /// The site alone, without Gatehouse's access-log switch, and its host as Caddy's host
    /// matcher holds it: what a `user`'s site is judged on.
    pub judged: String,
    pub host: String,
    /// Whose rules the name follows (see [`crate::claims`]).
    pub claim: Claim,
}

/// Puts a refused claim's reason beside the domain and, for an admin over another owner's
/// site, its warning beside the override.
pub fn claim_errors(refusal: &Refusal, errors: &mut FieldErrors) {
    errors.add("domain", refusal.reason.clone());
    if let Some(warning) = &refusal.warning {
        errors.add(ALLOW_OVERLAP, warning.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::test_user as user;

    fn rules() -> VhostsConfig {
        VhostsConfig {
            user_root_base: "/srv/www".into(),
            user_ports: vec![80, 443],
            ..VhostsConfig::default()
        }
    }

    fn known() -> Known {
        Known {
            agents: vec![1, 2],
            labels: vec!["canary".into(), "eu".into()],
            users: vec![7, 8],
        }
    }

    fn proxy(address: &str) -> SiteDraft {
        SiteDraft {
            address: address.into(),
            template: "reverse_proxy".into(),
            fields: BTreeMap::from([("upstream".to_string(), "localhost:8080".to_string())]),
            ..SiteDraft::default()
        }
    }

    #[test]
    fn a_valid_draft_becomes_the_site_to_store_with_its_block() {
        let site = proxy("App.Example.com").check(&user(true), &known(), &rules());
        let site = site.expect("valid");
        assert_eq!(site.snapshot.domain, "app.example.com");
        assert_eq!(site.snapshot.template, "reverse_proxy");
        assert_eq!(
            site.snapshot.owner_id,
            Some(7),
            "the saver's own by default"
        );
        assert!(site.snapshot.all_agents && site.snapshot.agent_ids.is_empty());
        assert!(
            site.block.starts_with("app.example.com {"),
            "{}",
            site.block
        );
        assert!(site.block.contains("reverse_proxy localhost:8080"));
        assert!(!site.judged.contains("log"), "{}", site.judged);
        assert_eq!(site.host, "app.example.com");
        assert_eq!(
            site.claim,
            Claim::Admin {
                allow_overlap: false
            }
        );
    }

    #[test]
    fn every_reason_is_keyed_by_its_field() {
        let draft = SiteDraft {
            address: "not a domain".into(),
            template: "nope".into(),
            owner: Owner::User(999),
            agents: Agents::Only(vec![]),
            ..SiteDraft::default()
        };
        let errors = draft.check(&user(true), &known(), &rules()).unwrap_err();
        for field in ["domain", "template", "owner_id", "serve_on"] {
            assert!(errors.get(field).is_some(), "{field}: {errors:?}");
        }
        assert_eq!(errors.get("template"), Some("Choose a template."));
        assert_eq!(
            errors.get("owner_id"),
            Some("There is no user with the id 999.")
        );
        assert_eq!(
            errors.get("serve_on"),
            Some("Choose at least one agent, or serve it on all of them.")
        );
        let draft = SiteDraft {
            agents: Agents::Only(vec![1, 999]),
            ..proxy("a.example.com")
        };
        let errors = draft.check(&user(true), &known(), &rules()).unwrap_err();
        assert_eq!(
            errors.get("serve_on"),
            Some("There is no agent with the id 999; choose among the agents listed.")
        );
    }

    #[test]
    fn a_user_owns_what_they_save_and_their_raw_text_meets_the_allowlist() {
        let draft = SiteDraft {
            owner: Owner::Nobody,
            ..proxy("a.example.com")
        };
        let site = draft.check(&user(false), &known(), &rules()).unwrap();
        assert_eq!(
            site.snapshot.owner_id,
            Some(7),
            "a user's owner choice counts for nothing"
        );
        assert!(matches!(site.claim, Claim::User { user_id: 7, .. }));
        let raw = SiteDraft {
            address: "a.example.com".into(),
            template: "raw".into(),
            fields: BTreeMap::from([("config".to_string(), "php_fastcgi x:9000".to_string())]),
            ..SiteDraft::default()
        };
        let errors = raw.check(&user(false), &known(), &rules()).unwrap_err();
        assert!(errors.get("config").is_some(), "{errors:?}");
        assert!(raw.check(&user(true), &known(), &rules()).is_ok());
    }

    #[test]
    fn an_admins_owner_choice_and_chosen_agents_are_kept() {
        let draft = SiteDraft {
            owner: Owner::User(8),
            agents: Agents::Only(vec![2]),
            enabled: false,
            ..proxy("a.example.com")
        };
        let s = draft
            .check(&user(true), &known(), &rules())
            .unwrap()
            .snapshot;
        assert_eq!(
            (s.owner_id, s.all_agents, s.agent_ids),
            (Some(8), false, vec![2])
        );
        assert!(!s.enabled);
        let nobody = SiteDraft {
            owner: Owner::Nobody,
            ..proxy("a.example.com")
        };
        let s = nobody
            .check(&user(true), &known(), &rules())
            .unwrap()
            .snapshot;
        assert_eq!(s.owner_id, None);
    }

    #[test]
    fn a_stored_site_is_its_own_draft_again() {
        let draft = SiteDraft {
            owner: Owner::User(8),
            agents: Agents::Only(vec![2]),
            ..proxy("xn--bcher-kva.example")
        };
        let s = draft
            .check(&user(true), &known(), &rules())
            .unwrap()
            .snapshot;
        let stored = Vhost {
            id: 3,
            domain: s.domain.clone(),
            template: s.template.clone(),
            params: s.params.clone(),
            config: s.config.clone(),
            enabled: s.enabled,
            owner_id: s.owner_id,
            all_agents: s.all_agents,
            agent_ids: s.agent_ids.clone(),
            labels: s.labels.clone(),
            created_at: 0,
            updated_at: 0,
        };
        let again = SiteDraft::of(&stored);
        assert_eq!(again.address, "bücher.example", "shown as people write it");
        assert_eq!(again.owner, Owner::User(8));
        assert_eq!(again.agents, Agents::Only(vec![2]));
        let s2 = again
            .check(&user(true), &known(), &rules())
            .unwrap()
            .snapshot;
        assert_eq!(s2, s);
    }

    #[test]
    fn labels_must_be_slugs_carried_by_some_agent_and_are_kept_as_typed() {
        let by = |labels: &str| SiteDraft {
            agents: Agents::Labels(labels.into()),
            ..proxy("a.example.com")
        };
        let s = by("eu, canary eu")
            .check(&user(false), &known(), &rules())
            .unwrap()
            .snapshot;
        assert_eq!(
            (s.all_agents, s.agent_ids.clone(), s.labels.clone()),
            (false, vec![], vec!["canary".to_string(), "eu".to_string()])
        );
        let errors = by("EU").check(&user(true), &known(), &rules()).unwrap_err();
        assert!(
            errors
                .get("labels")
                .unwrap()
                .contains("“EU” is not a label")
        );
        let errors = by("us")
            .check(&user(false), &known(), &rules())
            .unwrap_err();
        assert_eq!(
            errors.get("labels"),
            Some("No agent carries the label us; choose among: canary, eu.")
        );
        let errors = by(" ").check(&user(true), &known(), &rules()).unwrap_err();
        assert!(errors.get("labels").is_some() && errors.get("serve_on").is_none());
        // A stored site by label opens as its own draft again.
        let stored = Vhost {
            id: 1,
            domain: s.domain.clone(),
            template: s.template.clone(),
            params: s.params.clone(),
            config: s.config.clone(),
            enabled: true,
            owner_id: s.owner_id,
            all_agents: false,
            agent_ids: vec![],
            labels: s.labels.clone(),
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(
            SiteDraft::of(&stored).agents,
            Agents::Labels("canary eu".into())
        );
    }
}
