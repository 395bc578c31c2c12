-- Virtual hosts and the changelog of every change made to them.
CREATE TABLE vhosts (
    id         INTEGER PRIMARY KEY,
    -- Canonical site address (lower-case ASCII, punycode for IDN), as written to Caddy.
    domain     TEXT    NOT NULL UNIQUE,
    template   TEXT    NOT NULL,
    -- The template's form values as JSON, so the form can be opened again as it was.
    params     TEXT    NOT NULL DEFAULT '{}',
    -- The site block body (normalised Caddyfile text): what goes inside `domain { … }`.
    config     TEXT    NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 1,
    owner_id   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL DEFAULT (unixepoch()),
    updated_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;
CREATE INDEX vhosts_owner ON vhosts(owner_id);

-- One row per change, written in the same transaction as the change. `old` and `new` are
-- JSON snapshots of the vhost (NULL before a create and after a delete). The owners are
-- copied out so a user sees the history of their own vhosts, even deleted ones.
CREATE TABLE changelog (
    id             INTEGER PRIMARY KEY,
    user_id        INTEGER REFERENCES users(id) ON DELETE SET NULL,
    user_email     TEXT    NOT NULL,
    vhost_id       INTEGER,
    owner_id       INTEGER,
    prev_owner_id  INTEGER,
    action         TEXT    NOT NULL CHECK (action IN ('create', 'update', 'delete', 'toggle', 'revert')),
    domain         TEXT    NOT NULL,
    old            TEXT,
    new            TEXT,
    created_at     INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;
CREATE INDEX changelog_domain ON changelog(domain);
CREATE INDEX changelog_owner ON changelog(owner_id);
