-- Personal API tokens. The token itself is never stored: `lookup` is its public middle part
-- (gh_<lookup>_<secret>), unique so verification is one indexed lookup, and `token_hash` is
-- the SHA-256 of the whole token, compared in constant time. Revoking deletes the row; a
-- deleted user takes their tokens along.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    lookup       TEXT    NOT NULL UNIQUE,
    token_hash   TEXT    NOT NULL,
    scope        TEXT    NOT NULL CHECK (scope IN ('read', 'write')),
    expires_at   INTEGER,
    last_used_at INTEGER,
    last_used_ip TEXT,
    created_at   INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;
CREATE INDEX api_tokens_user ON api_tokens(user_id);
