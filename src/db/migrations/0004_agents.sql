-- Agents (one beside each Caddy) and which of them serve each vhost.
CREATE TABLE agents (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    url           TEXT    NOT NULL,
    -- A secret: never shown back, never logged.
    token         TEXT    NOT NULL,
    -- Declared in the hub's config file: kept in step with it at start-up, read-only here.
    from_config   INTEGER NOT NULL DEFAULT 0,
    -- What the agent last told us about itself and its Caddy.
    online        INTEGER NOT NULL DEFAULT 0,
    caddy_reachable INTEGER NOT NULL DEFAULT 0,
    caddy_version TEXT,
    caddy_admin   TEXT,
    access_log    TEXT,
    applied_hash  TEXT,
    last_seen_at  INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL DEFAULT (unixepoch()),
    updated_at    INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;

-- A vhost with `all_agents` set is served by every agent; otherwise by the agents listed
-- here.
ALTER TABLE vhosts ADD COLUMN all_agents INTEGER NOT NULL DEFAULT 1;
CREATE TABLE vhost_agents (
    vhost_id INTEGER NOT NULL REFERENCES vhosts(id) ON DELETE CASCADE,
    agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    PRIMARY KEY (vhost_id, agent_id)
) STRICT;
