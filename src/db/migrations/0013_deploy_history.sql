-- Every deploy that reached the agents: who asked, when, and whether it was committed
-- (`committed`), or nothing changed anywhere (`rejected`, `failed`).
CREATE TABLE deploys (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER REFERENCES users(id) ON DELETE SET NULL,
    user_email TEXT    NOT NULL,
    result     TEXT    NOT NULL,
    created_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

-- The sites a deploy changed, with the changelog entry it committed (NULL when it was not
-- committed). Owners are copied out, as in the changelog, so a user sees only their own.
CREATE TABLE deploy_sites (
    deploy_id     INTEGER NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    changelog_id  INTEGER REFERENCES changelog(id) ON DELETE SET NULL,
    vhost_id      INTEGER NOT NULL,
    domain        TEXT    NOT NULL,
    action        TEXT    NOT NULL,
    owner_id      INTEGER,
    prev_owner_id INTEGER
) STRICT;
CREATE INDEX deploy_sites_deploy ON deploy_sites(deploy_id);
CREATE INDEX deploy_sites_changelog ON deploy_sites(changelog_id);

-- What a deploy did on each agent: applied, unchanged, rejected, pending, unreached,
-- rolled_back or quarantined, with Caddy's or the network's words.
CREATE TABLE deploy_agents (
    deploy_id  INTEGER NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    agent_id   INTEGER REFERENCES agents(id) ON DELETE SET NULL,
    agent_name TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    message    TEXT
) STRICT;
CREATE INDEX deploy_agents_deploy ON deploy_agents(deploy_id);
CREATE INDEX deploy_agents_agent ON deploy_agents(agent_id, deploy_id);

-- Committed changes to a site that have not reached an agent yet (it was offline). `base`
-- is the site as that agent last had it (a changelog snapshot; NULL: it had none), so a
-- later change that puts the site back the way the agent has it clears the row. Rows go
-- when the agent takes the database's config, and with the agent.
CREATE TABLE pending_changes (
    agent_id  INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    vhost_id  INTEGER NOT NULL,
    domain    TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    owner_id  INTEGER,
    base      TEXT,
    deploy_id INTEGER REFERENCES deploys(id) ON DELETE SET NULL,
    since     INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (agent_id, vhost_id)
) STRICT;
CREATE INDEX pending_changes_vhost ON pending_changes(vhost_id);
