-- One row per signed-in browser. The tower-sessions cookie session holds `id`; deleting the
-- row (revoke, ban, password change) signs that browser out on its very next request.
CREATE TABLE auth_sessions (
    id           TEXT    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    last_seen_at INTEGER NOT NULL DEFAULT (unixepoch()),
    ip           TEXT,
    user_agent   TEXT
) STRICT;
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);
