//! A change to some of a site's members, as the API's JSON body asks for it ([`SitePatch`]),
//! read with every member checked for shape first, then laid over a draft. Members not
//! given stay as they are; the rules of a site are [`super::SiteDraft::check`]'s.

use super::draft::{Agents, Owner, SiteDraft, is_template_field};
use crate::db::users::User;
use crate::domain::vhost::Template;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Reasons members of a body cannot be taken at all, by their key in the body (a member
/// inside `fields` as `fields.<name>`).
pub type ShapeErrors = BTreeMap<String, String>;

/// The members a body gives; None: not given, left as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SitePatch {
    pub address: Option<String>,
    pub template: Option<String>,
    /// Template field values by name; a value of None clears the field (false or null).
    pub fields: BTreeMap<String, Option<String>>,
    pub enabled: Option<bool>,
    pub owner: Option<Owner>,
    pub agents: Option<Agents>,
    pub allow_overlap: Option<bool>,
}

/// Top-level members besides the templates' own fields.
const SITE_KEYS: &[&str] = &["domain", "template", "enabled", "owner_id"];

/// A JSON value as a form value: None clears the field (false, null), as an unticked box.
fn scalar(v: &Value) -> Result<Option<String>, &'static str> {
    match v {
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(true) => Ok(Some("on".into())),
        Value::Bool(false) | Value::Null => Ok(None),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err("Give text, a number, true or false."),
    }
}

impl SitePatch {
    /// Reads a JSON body from `user` meant for `current`. Members that cannot be taken at
    /// all (unknown, wrong shape, a field of another template than the site will have, an
    /// owner a `user` may not choose) are refused, all of them at once.
    pub fn from_json(
        body: &Map<String, Value>,
        user: &User,
        current: &SiteDraft,
    ) -> Result<Self, ShapeErrors> {
        let mut patch = SitePatch::default();
        let mut errors = ShapeErrors::new();
        // The template the site will have: a field of another one would be dropped unseen,
        // so it is refused instead. (An unknown template is reported by the site's check.)
        let chosen = body
            .get("template")
            .and_then(Value::as_str)
            .unwrap_or(&current.template);
        let chosen = Template::from_slug(chosen);
        let foreign = |name: &str| -> Option<String> {
            let t = chosen?;
            (!t.fields().iter().any(|f| f.name == name))
                .then(|| format!("Not a field of the {} template.", t.slug()))
        };
        for (key, value) in body {
            match key.as_str() {
                "fields" => match value {
                    Value::Object(fields) => {
                        for (name, value) in fields {
                            let at = format!("fields.{name}");
                            if !is_template_field(name) {
                                errors.insert(at, "Unknown field.".into());
                            } else if let Some(why) = foreign(name) {
                                errors.insert(at, why);
                            } else {
                                match scalar(value) {
                                    Ok(v) => {
                                        patch.fields.insert(name.clone(), v);
                                    }
                                    Err(why) => {
                                        errors.insert(at, why.into());
                                    }
                                }
                            }
                        }
                    }
                    _ => {
                        errors.insert("fields".into(), "Give an object of field values.".into());
                    }
                },
                "agent_ids" | "all_agents" | "labels" => {}
                // An admin's knowing override of the overlap rule, for this request only.
                "allow_overlap" => match value {
                    Value::Bool(true) if user.is_admin() => patch.allow_overlap = Some(true),
                    Value::Bool(true) => {
                        errors.insert(
                            "allow_overlap".into(),
                            "Only an admin can override the overlap rule.".into(),
                        );
                    }
                    Value::Bool(false) => patch.allow_overlap = Some(false),
                    _ => {
                        errors.insert("allow_overlap".into(), "Give true or false.".into());
                    }
                },
                // The form's checkbox is "present or not"; here only a real boolean is clear.
                "enabled" => match value {
                    Value::Bool(on) => patch.enabled = Some(*on),
                    _ => {
                        errors.insert("enabled".into(), "Give true or false.".into());
                    }
                },
                "owner_id" if !user.is_admin() => {
                    if value.as_i64() != Some(user.id) {
                        errors.insert(
                            "owner_id".into(),
                            "Only an admin can choose who owns a site.".into(),
                        );
                    }
                }
                // An admin's null means "nobody owns it", never "me".
                "owner_id" => match value {
                    Value::Null => patch.owner = Some(Owner::Nobody),
                    Value::Number(n) if n.is_i64() => {
                        patch.owner = n.as_i64().map(Owner::User);
                    }
                    _ => {
                        errors.insert(
                            "owner_id".into(),
                            "Give a user id, or null for a site nobody owns.".into(),
                        );
                    }
                },
                k if is_template_field(k) && !SITE_KEYS.contains(&k) && foreign(k).is_some() => {
                    errors.insert(k.into(), foreign(k).unwrap_or_default());
                }
                k if SITE_KEYS.contains(&k) || is_template_field(k) => match scalar(value) {
                    Ok(v) => match k {
                        "domain" => patch.address = Some(v.unwrap_or_default()),
                        "template" => patch.template = Some(v.unwrap_or_default()),
                        _ => {
                            patch.fields.insert(k.to_string(), v);
                        }
                    },
                    Err(why) => {
                        errors.insert(k.into(), why.into());
                    }
                },
                k => {
                    errors.insert(k.into(), "Unknown field.".into());
                }
            }
        }
        // Which agents serve it: `all_agents: true`, `agent_ids: [..]` to choose, or
        // `labels: [..]` for the agents carrying any of them.
        let all = body.get("all_agents");
        let ids = body.get("agent_ids").filter(|v| !v.is_null());
        let labels = body.get("labels").filter(|v| !v.is_null());
        if labels.is_some() && (ids.is_some() || all == Some(&Value::Bool(true))) {
            errors.insert(
                "labels".into(),
                "Give labels, agent_ids or all_agents: true, only one of them.".into(),
            );
        }
        match (all, ids, labels) {
            (_, _, Some(Value::Array(list))) => {
                let given: Option<Vec<&str>> = list.iter().map(Value::as_str).collect();
                match given {
                    Some(given) => patch.agents = Some(Agents::Labels(given.join(" "))),
                    None => {
                        errors.insert("labels".into(), "Give a list of labels.".into());
                    }
                }
            }
            (_, _, Some(_)) => {
                errors.insert("labels".into(), "Give a list of labels.".into());
            }
            (Some(Value::Bool(true)), Some(_), _) => {
                errors.insert(
                    "agent_ids".into(),
                    "Give agent_ids or all_agents: true, not both.".into(),
                );
            }
            (Some(v), _, _) if !v.is_boolean() => {
                errors.insert("all_agents".into(), "Give true or false.".into());
            }
            (_, Some(Value::Array(list)), _) => {
                let chosen: Option<Vec<i64>> = list.iter().map(Value::as_i64).collect();
                match chosen {
                    Some(ids) => patch.agents = Some(Agents::Only(ids)),
                    None => {
                        errors.insert("agent_ids".into(), "Give a list of agent ids.".into());
                    }
                }
            }
            (_, Some(_), _) => {
                errors.insert("agent_ids".into(), "Give a list of agent ids.".into());
            }
            (Some(Value::Bool(false)), None, None) => patch.agents = Some(Agents::Only(Vec::new())),
            (Some(_), None, None) => patch.agents = Some(Agents::All),
            (None, None, None) => {}
        }
        if errors.is_empty() {
            Ok(patch)
        } else {
            Err(errors)
        }
    }

    /// `draft` with the members given replaced. A template switched to starts with the
    /// defaults its new form shows, under the fields given.
    pub fn apply(self, mut draft: SiteDraft) -> SiteDraft {
        if let Some(t) = &self.template
            && *t != draft.template
        {
            draft.add_defaults(t);
        }
        if let Some(address) = self.address {
            draft.address = address;
        }
        if let Some(template) = self.template {
            draft.template = template;
        }
        for (name, value) in self.fields {
            match value {
                Some(v) => draft.fields.insert(name, v),
                None => draft.fields.remove(&name),
            };
        }
        if let Some(enabled) = self.enabled {
            draft.enabled = enabled;
        }
        if let Some(owner) = self.owner {
            draft.owner = owner;
        }
        if let Some(agents) = self.agents {
            draft.agents = agents;
        }
        if let Some(allow) = self.allow_overlap {
            draft.allow_overlap = allow;
        }
        draft
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sites::test_user as user;
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    /// The patch laid over `draft`, or the reasons it was refused.
    fn patched(draft: SiteDraft, v: Value, user: &User) -> Result<SiteDraft, ShapeErrors> {
        SitePatch::from_json(&body(v), user, &draft).map(|p| p.apply(draft))
    }

    #[test]
    fn json_members_become_the_drafts_values() {
        let draft = patched(
            SiteDraft::default(),
            json!({
                "domain": "app.example.com",
                "template": "redirect",
                "target": "https://example.org",
                "enabled": false,
                "agent_ids": [3, 4],
            }),
            &user(false),
        )
        .unwrap();
        assert!(!draft.enabled, "false unticks");
        assert_eq!(draft.fields["keep_path"], "on", "the template's default");
        assert_eq!(draft.fields["redirect_kind"], "permanent");
        assert_eq!(draft.fields["target"], "https://example.org");
        assert_eq!(draft.agents, Agents::Only(vec![3, 4]));
        assert_eq!(
            (draft.address.as_str(), draft.template.as_str()),
            ("app.example.com", "redirect")
        );
    }

    #[test]
    fn unknown_members_wrong_shapes_and_a_users_owner_are_refused() {
        let errors = patched(
            SiteDraft::default(),
            json!({
                "upstram": "x",
                "serve_on": "chosen",
                "agent_9": "on",
                "domain": ["a"],
                "owner_id": 1,
                "fields": {"nope": "1"},
            }),
            &user(false),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "agent_9",
                "domain",
                "fields.nope",
                "owner_id",
                "serve_on",
                "upstram"
            ]
        );

        let draft = patched(SiteDraft::default(), json!({"owner_id": 1}), &user(true)).unwrap();
        assert_eq!(draft.owner, Owner::User(1), "an admin chooses the owner");
    }

    #[test]
    fn another_templates_field_is_refused_and_an_admins_null_owner_means_nobody() {
        let proxy = SiteDraft {
            template: "reverse_proxy".into(),
            ..SiteDraft::default()
        };
        let errors = patched(
            proxy.clone(),
            json!({"root": "/srv", "fields": {"browse": true}, "upstream": "a:1"}),
            &user(true),
        )
        .unwrap_err();
        assert_eq!(
            errors.get("root").map(String::as_str),
            Some("Not a field of the reverse_proxy template.")
        );
        assert!(errors.contains_key("fields.browse"), "{errors:?}");
        assert!(!errors.contains_key("upstream"), "its own fields are taken");

        // Switching template in the same body: the new template's fields are its own.
        let draft = patched(
            proxy.clone(),
            json!({"template": "static_files", "root": "/srv"}),
            &user(true),
        )
        .unwrap();
        assert_eq!(draft.fields["root"], "/srv");

        let draft = patched(proxy.clone(), json!({"owner_id": null}), &user(true)).unwrap();
        assert_eq!(draft.owner, Owner::Nobody);
        let errors = patched(proxy, json!({"owner_id": null}), &user(false)).unwrap_err();
        assert!(
            errors.contains_key("owner_id"),
            "a user cannot disown a site"
        );
    }

    #[test]
    fn all_agents_clears_a_choice_and_conflicts_with_ids() {
        let chosen = SiteDraft {
            agents: Agents::Only(vec![2]),
            ..SiteDraft::default()
        };
        let draft = patched(chosen.clone(), json!({"all_agents": true}), &user(true)).unwrap();
        assert_eq!(draft.agents, Agents::All);
        let errors = patched(
            chosen,
            json!({"all_agents": true, "agent_ids": [1]}),
            &user(true),
        )
        .unwrap_err();
        assert!(errors.contains_key("agent_ids"));
    }

    #[test]
    fn labels_choose_the_agents_by_label_and_exclude_the_other_choices() {
        let draft = patched(
            SiteDraft::default(),
            json!({"labels": ["eu", "canary"]}),
            &user(false),
        )
        .unwrap();
        assert_eq!(draft.agents, Agents::Labels("eu canary".into()));
        for conflicting in [
            json!({"labels": ["eu"], "agent_ids": [1]}),
            json!({"labels": ["eu"], "all_agents": true}),
            json!({"labels": "eu"}),
            json!({"labels": [1]}),
        ] {
            let errors = patched(SiteDraft::default(), conflicting.clone(), &user(true));
            assert!(
                errors.is_err_and(|e| e.contains_key("labels")),
                "{conflicting}"
            );
        }
    }
}
