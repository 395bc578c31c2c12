//! Which sites are set aside on which agents (see [`crate::fleet::quarantine`]), as one
//! person may see them: an admin every site's, a `user` only their own. A message Caddy gave
//! about a site only together with the rest of an agent's config may name other sites, so
//! a `user` reads that it was refused, not Caddy's words.

use super::{SiteError, Sites};
use crate::db::quarantine::{self, Entry, Found};
use crate::db::users::User;

/// What a `user` reads instead of a message that may name other owners' sites.
const TOGETHER: &str = "Caddy refused this site together with the rest of that agent's \
                        configuration; an admin can see Caddy's message";

/// `entries` as `user` may see them.
fn visible_to(user: &User, entries: Vec<Entry>) -> Vec<Entry> {
    if user.is_admin() {
        return entries;
    }
    entries
        .into_iter()
        .filter(|e| e.owner_id == Some(user.id))
        .map(|e| match e.found {
            Found::Alone => e,
            Found::Together => Entry {
                error: TOGETHER.into(),
                body_line: None,
                ..e
            },
        })
        .collect()
}

impl Sites {
    /// Every site set aside on an agent, that `user` may see.
    pub(crate) async fn quarantined(&self, user: &User) -> Result<Vec<Entry>, SiteError> {
        let all = self.db.run(|c| quarantine::list(c)).await?;
        Ok(visible_to(user, all))
    }

    /// Where site `id` is set aside, if `user` may see it.
    pub(crate) async fn quarantine_of(
        &self,
        user: &User,
        id: i64,
    ) -> Result<Vec<Entry>, SiteError> {
        let all = self.db.run(move |c| quarantine::for_site(c, id)).await?;
        Ok(visible_to(user, all))
    }
}
