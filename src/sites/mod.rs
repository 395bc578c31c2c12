//! The site use cases, written once for every front end: create, update, toggle, delete,
//! revert, preview and import. Each checks that the person may touch the site (a `user`
//! only their own, checked again inside the change's transaction), judges a `user`'s site by
//! the tenant policy, checks the claim on its name, and deploys through the fleet. Each
//! returns one flat [`SiteError`]; the portal and the API map it once each.

pub mod changes;
mod draft;
mod error;
pub mod import;
mod patch;
mod quarantine;

pub(crate) use draft::{
    ALLOW_OVERLAP, Agents, CheckedSite, Known, Owner, SiteDraft, is_template_field,
};
pub(crate) use error::{SiteError, rejection, rolled_back};
pub(crate) use patch::{ShapeErrors, SitePatch};

use crate::config::Config;
use crate::db::Db;
use crate::db::changelog::Author;
use crate::db::users::{self, User};
use crate::db::vhosts::{self, Snapshot, Vhost};
use crate::domain::FieldErrors;
use crate::domain::tenant::About;
use crate::domain::vhost::Template;
use crate::fleet::Fleet;
use crate::fleet::client::Validation;
pub(crate) use crate::fleet::deploy::AgentPlan;
use crate::fleet::deploy::{Change, DeployError, deploy_detached};
use crate::fleet::site_config::{self, Site};
use crate::tenancy::{self, Verdict};
use changes::ChangeError;
use std::collections::BTreeMap;
use std::sync::Arc;

type Result<T, E = SiteError> = std::result::Result<T, E>;

/// What the site use cases need: the database, the fleet to deploy to, and the settings.
#[derive(Clone)]
pub(crate) struct Sites {
    db: Db,
    fleet: Arc<Fleet>,
    config: Arc<Config>,
}

/// Which sites a list shows; a `user` sees only their own whatever it says.
#[derive(Debug, Clone, Default)]
pub(crate) struct Search {
    pub(crate) text: String,
    pub(crate) enabled: Option<bool>,
    /// Only this owner's (admins only).
    pub(crate) owner: Option<i64>,
}

/// The live preview of a draft that passed every check.
pub(crate) struct Previewed {
    /// Exactly the block the site would add to the Caddyfile.
    pub(crate) block: String,
    /// What a real Caddy said of it, and which agent's: None when none could be asked.
    pub(crate) caddy: Option<(String, Validation)>,
}

impl Sites {
    pub(crate) fn new(db: Db, fleet: Arc<Fleet>, config: Arc<Config>) -> Self {
        Self { db, fleet, config }
    }

    /// The site `id` if `user` may see and change it; another user's site is not found.
    pub(crate) async fn owned(&self, user: &User, id: i64) -> Result<Vhost> {
        let vhost = self
            .db
            .run(move |c| vhosts::find(c, id))
            .await?
            .ok_or(SiteError::NotFound)?;
        if !user.is_admin() && vhost.owner_id != Some(user.id) {
            return Err(SiteError::NotFound);
        }
        Ok(vhost)
    }

    /// The sites `user` may see that match `search`.
    pub(crate) async fn list(&self, user: &User, search: &Search) -> Result<Vec<Vhost>> {
        let filter = vhosts::Filter {
            owner_id: if user.is_admin() {
                search.owner
            } else {
                Some(user.id)
            },
            enabled: search.enabled,
            search: Some(search.text.trim().to_lowercase()).filter(|s| !s.is_empty()),
        };
        Ok(self.db.run(move |c| vhosts::list(c, &filter)).await?)
    }

    /// Checks `draft` as `user` would save it, against the agents and users that exist.
    pub(crate) async fn check(&self, user: &User, draft: &SiteDraft) -> Result<CheckedSite> {
        let admin = user.is_admin();
        let known = self
            .db
            .run(move |c| {
                // Every agent serves sites of every owner: a `user` may choose any of them,
                // by id or by label.
                let agents = crate::db::agents::list(c)?;
                let mut labels: Vec<String> =
                    agents.iter().flat_map(|a| a.labels.clone()).collect();
                labels.sort();
                labels.dedup();
                Ok(Known {
                    agents: agents.iter().map(|a| a.id).collect(),
                    labels,
                    users: if admin {
                        users::list(c)?.iter().map(|u| u.id).collect()
                    } else {
                        Vec::new()
                    },
                })
            })
            .await?;
        draft
            .check(user, &known, &self.config.vhosts)
            .map_err(SiteError::Invalid)
    }

    /// The live preview: the exact block `draft` would add and what a Caddy says of it, or
    /// every reason it would be refused (the claim on its name, the tenant policy). `editing`
    /// is the site the draft would replace; only one `user` may change counts.
    pub(crate) async fn preview(
        &self,
        user: &User,
        draft: &SiteDraft,
        editing: Option<i64>,
    ) -> Result<Previewed> {
        let checked = self.check(user, draft).await?;
        let id = match editing {
            Some(id) => Some(self.owned(user, id).await?.id),
            None => None,
        };
        self.vet(user, &checked, id).await?;
        let caddy = self.caddy_check(&checked.snapshot).await?;
        Ok(Previewed {
            block: checked.block,
            caddy,
        })
    }

    /// Creates a site from `draft` for `user`, through the whole deploy pipeline.
    pub(crate) async fn create(&self, user: &User, draft: &SiteDraft) -> Result<Vhost> {
        let change = self.creation(user, draft).await?;
        self.deploy(user, change)
            .await
            .map_err(|e| SiteError::of_deploy(e, SiteError::of_change))
    }

    /// Replaces site `id` with `draft`, through the whole deploy pipeline.
    pub(crate) async fn update(&self, user: &User, id: i64, draft: &SiteDraft) -> Result<Vhost> {
        let change = self.replacement(user, id, draft).await?;
        self.deploy(user, change)
            .await
            .map_err(|e| SiteError::of_deploy(e, SiteError::of_change))
    }

    /// Switches site `id` on or off, whichever it is not; the site as it now is.
    pub(crate) async fn toggle(&self, user: &User, id: i64) -> Result<Vhost> {
        let change = self.owned_change(user, id, changes::toggle).await?;
        self.deploy(user, change)
            .await
            .map_err(|e| SiteError::of_deploy(e, SiteError::of_refusal))
    }

    /// Deletes site `id`; what it was.
    pub(crate) async fn delete(&self, user: &User, id: i64) -> Result<Snapshot> {
        let change = self.owned_change(user, id, changes::delete).await?;
        self.deploy(user, change)
            .await
            .map_err(|e| SiteError::of_deploy(e, SiteError::of_refusal))
    }

    /// What [`Sites::create`] would do on each agent, with every check it makes; nothing is
    /// stored or pushed.
    pub(crate) async fn plan_create(
        &self,
        user: &User,
        draft: &SiteDraft,
    ) -> Result<Vec<AgentPlan>> {
        let change = self.creation(user, draft).await?;
        self.plan(user, change, SiteError::of_change).await
    }

    /// What [`Sites::update`] would do on each agent; nothing is stored or pushed.
    pub(crate) async fn plan_update(
        &self,
        user: &User,
        id: i64,
        draft: &SiteDraft,
    ) -> Result<Vec<AgentPlan>> {
        let change = self.replacement(user, id, draft).await?;
        self.plan(user, change, SiteError::of_change).await
    }

    /// What [`Sites::toggle`] would do on each agent; nothing is stored or pushed.
    pub(crate) async fn plan_toggle(&self, user: &User, id: i64) -> Result<Vec<AgentPlan>> {
        let change = self.owned_change(user, id, changes::toggle).await?;
        self.plan(user, change, SiteError::of_refusal).await
    }

    /// What [`Sites::delete`] would do on each agent; nothing is stored or pushed.
    pub(crate) async fn plan_delete(&self, user: &User, id: i64) -> Result<Vec<AgentPlan>> {
        let change = self.owned_change(user, id, changes::delete).await?;
        self.plan(user, change, SiteError::of_refusal).await
    }

    /// The checked change that creates a site from `draft`.
    async fn creation(
        &self,
        user: &User,
        draft: &SiteDraft,
    ) -> Result<impl Change<Vhost, ChangeError> + use<>> {
        let checked = self.check(user, draft).await?;
        self.vet(user, &checked, None).await?;
        let CheckedSite {
            snapshot, claim, ..
        } = checked;
        Ok(move |tx: &rusqlite::Connection, author: &Author<'_>| {
            changes::create(tx, author, &snapshot, &claim)
        })
    }

    /// The checked change that replaces site `id` with `draft`.
    async fn replacement(
        &self,
        user: &User,
        id: i64,
        draft: &SiteDraft,
    ) -> Result<impl Change<Vhost, ChangeError> + use<>> {
        let id = self.owned(user, id).await?.id;
        let checked = self.check(user, draft).await?;
        self.vet(user, &checked, Some(id)).await?;
        let CheckedSite {
            snapshot, claim, ..
        } = checked;
        self.owned_change(user, id, move |tx, author, id| {
            changes::update(tx, author, id, &snapshot, &claim)
        })
        .await
    }

    /// Puts a site back the way it was before changelog entry `entry` (admins), as a new
    /// change; the site as it now is (None when undoing a create removed it).
    pub(crate) async fn revert(&self, user: &User, entry: i64) -> Result<Option<Vhost>> {
        self.deploy(user, move |tx, author| changes::revert(tx, author, entry))
            .await
            .map_err(|e| SiteError::of_deploy(e, revert_refusal))
    }

    /// What [`Sites::revert`] would do on each agent; nothing is stored or pushed.
    pub(crate) async fn plan_revert(&self, user: &User, entry: i64) -> Result<Vec<AgentPlan>> {
        self.plan(
            user,
            move |tx: &rusqlite::Connection, author: &Author<'_>| {
                changes::revert(tx, author, entry)
            },
            revert_refusal,
        )
        .await
    }

    /// The site `id` as stored now, whoever owns it.
    pub(crate) async fn find(&self, id: i64) -> Result<Option<Vhost>> {
        Ok(self.db.run(move |c| vhosts::find(c, id)).await?)
    }

    /// What only the database and a Caddy can find about a checked site: a claim on a name
    /// that is not the author's (beside the domain field, before anything slower runs; it
    /// is judged for good inside the change's transaction), then what the site would make
    /// Caddy do (a `user`'s only).
    async fn vet(&self, user: &User, checked: &CheckedSite, id: Option<i64>) -> Result<()> {
        let mut errors = FieldErrors::default();
        let (claim, snapshot) = (checked.claim.clone(), checked.snapshot.clone());
        let refusal = self
            .db
            .run(move |c| crate::claims::precheck(c, &claim, id, &snapshot))
            .await?;
        match &refusal {
            Some(refusal) => draft::claim_errors(refusal, &mut errors),
            None => self.judge(user, checked, &mut errors).await?,
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SiteError::Invalid(errors))
        }
    }

    /// Judges a `user`'s site by what Caddy would run (see [`crate::tenancy`]); admins are
    /// not judged. Every refusal is put beside the field it is about.
    async fn judge(
        &self,
        user: &User,
        checked: &CheckedSite,
        errors: &mut FieldErrors,
    ) -> Result<()> {
        if user.is_admin() {
            return Ok(());
        }
        let verdict = tenancy::judge(
            &self.db,
            &self.fleet,
            &self.config,
            &checked.judged,
            &checked.host,
        )
        .await?;
        match verdict {
            Verdict::Allowed => {}
            Verdict::Refused(refusals) => {
                let mut by_field: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
                for r in refusals {
                    by_field
                        .entry(field_for(checked.template, r.about))
                        .or_default()
                        .push(r.message);
                }
                for (field, messages) in by_field {
                    errors.add(field, messages.join(" "));
                }
            }
            Verdict::Invalid(error) => errors.add(
                field_for(checked.template, About::Site),
                format!("Caddy refuses this site: {error}"),
            ),
            Verdict::Unavailable(why) => errors.add("", why),
        }
        Ok(())
    }

    /// Asks the first reachable agent's Caddy whether it accepts this site (with that
    /// agent's global options). None when no agent can be asked.
    async fn caddy_check(&self, snapshot: &Snapshot) -> Result<Option<(String, Validation)>> {
        let agents = self.db.run(|c| crate::db::agents::list(c)).await?;
        let Some(agent) = agents
            .into_iter()
            .find(|a| a.online && a.caddy_reachable && a.caddy_admin.is_some())
        else {
            return Ok(None);
        };
        let site = Site::everywhere(&snapshot.domain, &snapshot.config);
        let (text, _) = site_config::for_agent(&self.config.caddy, &agent, [site]);
        let timeout = std::time::Duration::from_secs(10);
        let outcome = crate::fleet::client::validate(&self.fleet, &agent, &text, timeout).await;
        Ok(Some((agent.name, outcome)))
    }

    /// Runs `change` through the deploy pipeline for `user`.
    async fn deploy<T, F>(&self, user: &User, change: F) -> Result<T, DeployError<ChangeError>>
    where
        F: Change<T, ChangeError>,
        T: Send + 'static,
    {
        deploy_detached(
            self.db.clone(),
            self.fleet.clone(),
            self.config.caddy.clone(),
            user.clone(),
            change,
        )
        .await
    }

    /// What `change` would do on every agent (see [`crate::fleet::deploy::plan`]).
    pub(super) async fn plan<T, F>(
        &self,
        user: &User,
        change: F,
        refused: fn(ChangeError) -> SiteError,
    ) -> Result<Vec<AgentPlan>>
    where
        F: Change<T, ChangeError>,
        T: Send + 'static,
    {
        crate::fleet::deploy::plan(&self.db, &self.config.caddy, user, change)
            .await
            .map_err(|e| SiteError::of_deploy(e, refused))
    }

    /// `change` to site `id`, for a site `user` may see now, checking again inside the
    /// change's transaction that `user` may still change it (an admin may have given it to
    /// someone else since the request was checked).
    async fn owned_change<T, F>(
        &self,
        user: &User,
        id: i64,
        change: F,
    ) -> Result<impl Change<T, ChangeError> + use<T, F>>
    where
        F: Fn(&rusqlite::Connection, &Author<'_>, i64) -> Result<T, ChangeError>
            + Clone
            + Send
            + Sync
            + 'static,
        T: Send + 'static,
    {
        let id = self.owned(user, id).await?.id;
        // Whose sites `user` may change: only their own, or (an admin) any.
        let only = (!user.is_admin()).then_some(user.id);
        Ok(move |tx: &rusqlite::Connection, author: &Author<'_>| {
            changes::ensure_owned(tx, id, only)?;
            change(tx, author, id)
        })
    }
}

/// Why a revert was refused, in words for the person who asked.
fn revert_refusal(e: ChangeError) -> SiteError {
    match e {
        ChangeError::DomainTaken => SiteError::Conflict(
            "Another site now uses that domain, so this change cannot be reverted.".into(),
        ),
        ChangeError::Claim(r) => {
            SiteError::Conflict(format!("This change cannot be reverted: {}", r.reason))
        }
        e => SiteError::of_refusal(e),
    }
}

/// A person for the unit tests of the use cases: user 7, an admin or not.
#[cfg(test)]
fn test_user(admin: bool) -> User {
    User {
        id: 7,
        name: "U".into(),
        email: "u@example.com".into(),
        role: if admin {
            crate::domain::Role::Admin
        } else {
            crate::domain::Role::User
        },
        banned_at: None,
        ban_reason: None,
        totp_enabled: true,
        must_change_password: false,
        created_at: 0,
    }
}

/// The field a refusal of the tenant policy belongs beside, in this template's form.
fn field_for(template: Template, about: About) -> &'static str {
    match (template, about) {
        (Template::Raw, _) => "config",
        (Template::ReverseProxy, About::Dial) => "upstream",
        (Template::LoadBalancer, About::Dial) => "upstreams",
        (Template::PhpFastcgi, About::Dial) => "php_upstream",
        (Template::StaticFiles, About::Path) => "root",
        (Template::PhpFastcgi, About::Path) => "php_root",
        _ => "",
    }
}

/// The use cases against a real database and a fleet without agents: the deploy commits
/// with nothing to push, so everything but a Caddy's judgement runs as in production.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::changelog;

    struct World {
        sites: Sites,
        _dir: tempfile::TempDir,
    }

    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_and_migrate(&dir.path().join("gh.db")).unwrap();
        db.run(|c| {
            for (id, email, role) in [
                (7, "u@example.com", "admin"),
                (2, "bob@example.com", "user"),
                (3, "alice@example.com", "user"),
            ] {
                c.execute(
                    "INSERT INTO users (id, name, email, password_hash, role) VALUES (?1, 'U', ?2, 'h', ?3)",
                    rusqlite::params![id, email, role],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
        let fleet = Arc::new(Fleet::new(std::time::Duration::from_secs(1)));
        World {
            sites: Sites::new(db, fleet, Arc::new(Config::default())),
            _dir: dir,
        }
    }

    fn person(id: i64) -> User {
        User {
            id,
            role: crate::domain::Role::User,
            ..test_user(false)
        }
    }

    fn raw(address: &str, owner: Owner) -> SiteDraft {
        SiteDraft {
            address: address.into(),
            template: "raw".into(),
            fields: BTreeMap::from([("config".to_string(), "respond ok".to_string())]),
            owner,
            ..SiteDraft::default()
        }
    }

    #[tokio::test]
    async fn another_users_site_is_not_found_for_every_use_case() {
        let w = world().await;
        let admin = test_user(true);
        let bobs = w
            .sites
            .create(&admin, &raw("bob.example.com", Owner::User(2)))
            .await
            .unwrap();
        let (bob, alice) = (person(2), person(3));
        assert_eq!(w.sites.owned(&bob, bobs.id).await.unwrap().id, bobs.id);
        assert!(matches!(
            w.sites.owned(&alice, bobs.id).await,
            Err(SiteError::NotFound)
        ));
        assert!(matches!(
            w.sites.toggle(&alice, bobs.id).await,
            Err(SiteError::NotFound)
        ));
        assert!(matches!(
            w.sites.delete(&alice, bobs.id).await,
            Err(SiteError::NotFound)
        ));
        assert!(matches!(
            w.sites
                .update(&alice, bobs.id, &raw("x.example.com", Owner::Me))
                .await,
            Err(SiteError::NotFound)
        ));
        let hers = w.sites.list(&alice, &Search::default()).await.unwrap();
        assert!(hers.is_empty(), "a user lists only their own sites");
        let toggled = w.sites.toggle(&bob, bobs.id).await.unwrap();
        assert!(!toggled.enabled, "bob may switch his own site off");
    }

    #[tokio::test]
    async fn a_taken_domain_and_a_bad_value_are_reasons_beside_their_fields() {
        let w = world().await;
        let admin = test_user(true);
        w.sites
            .create(&admin, &raw("a.example.com", Owner::Me))
            .await
            .unwrap();
        match w
            .sites
            .create(&admin, &raw("a.example.com", Owner::Me))
            .await
        {
            Err(SiteError::Invalid(errors)) => assert_eq!(
                errors.get("domain"),
                Some("Another site already uses this domain.")
            ),
            other => panic!("expected a taken domain, got {other:?}"),
        }
        let mut bad = raw("b.example.com", Owner::User(999));
        bad.template = "nope".into();
        match w.sites.create(&admin, &bad).await {
            Err(SiteError::Invalid(errors)) => {
                assert!(errors.get("template").is_some() && errors.get("owner_id").is_some())
            }
            other => panic!("expected invalid values, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_revert_is_a_new_change_and_a_missing_entry_is_not_found() {
        let w = world().await;
        let admin = test_user(true);
        let v = w
            .sites
            .create(&admin, &raw("a.example.com", Owner::Me))
            .await
            .unwrap();
        w.sites.toggle(&admin, v.id).await.unwrap();
        let entries = w
            .sites
            .db
            .run(|c| {
                changelog::list(
                    c,
                    &changelog::Filter {
                        limit: 10,
                        ..Default::default()
                    },
                )
            })
            .await
            .unwrap();
        let back = w.sites.revert(&admin, entries[0].id).await.unwrap();
        assert!(back.unwrap().enabled, "the toggle is undone");
        assert!(matches!(
            w.sites.revert(&admin, 9999).await,
            Err(SiteError::NotFound)
        ));
        let gone = w.sites.delete(&admin, v.id).await.unwrap();
        assert_eq!(gone.domain, "a.example.com");
        assert!(w.sites.find(v.id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_import_whose_plan_changed_since_its_preview_writes_nothing() {
        let w = world().await;
        let admin = test_user(true);
        let parsed = import::parse("a.example.com {\n\trespond a\n}\n").unwrap();
        let target = import::Target {
            owner_id: Some(admin.id),
            agent_id: None,
        };
        let plan = w.sites.import_plan(&parsed, target).await.unwrap();
        match w.sites.import(&admin, &parsed, target, "stale").await {
            Err(SiteError::Conflict(why)) => assert!(why.contains("changed since"), "{why}"),
            other => panic!("expected a conflict, got {other:?}"),
        }
        assert!(w.sites.find(1).await.unwrap().is_none(), "nothing written");
        let (applied, _) = w
            .sites
            .import(&admin, &parsed, target, &plan.fingerprint)
            .await
            .unwrap();
        assert_eq!((applied.created, applied.updated), (1, 0));
    }
}
