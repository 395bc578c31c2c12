-- Sites set aside on one agent because its Caddy refuses them: that agent's Caddyfile is
-- rendered without them until the site is saved again (which clears its rows). One row per
-- (site, agent): a site refused by one agent's Caddy only is still served by the others.
CREATE TABLE quarantine (
    vhost_id   INTEGER NOT NULL REFERENCES vhosts(id) ON DELETE CASCADE,
    agent_id   INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    -- Caddy's own message, its `Caddyfile:N` replaced by the line within the site's body.
    error      TEXT    NOT NULL,
    -- That line of the site's body (1 = its first line), when Caddy named one inside it.
    body_line  INTEGER,
    -- Whether Caddy refused the site on its own (`alone`: the message concerns only its
    -- lines) or only together with the rest of the agent's config (`together`: found by
    -- bisecting, the message may name other sites and is shown to admins only).
    found      TEXT    NOT NULL CHECK (found IN ('alone', 'together')),
    created_at INTEGER NOT NULL DEFAULT (unixepoch()),
    PRIMARY KEY (vhost_id, agent_id)
) STRICT;
CREATE INDEX quarantine_agent ON quarantine(agent_id);
