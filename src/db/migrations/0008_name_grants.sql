-- Names an admin delegates to a `user`: an exact name (`app.example.com`) or a pattern for
-- every name below one (`*.team.example.com`), in the canonical form of a site address
-- (lowercase ASCII, punycode), without scheme or port. A user may create or rename sites
-- only inside their grants; admins need none. A deleted user takes their grants along.
CREATE TABLE name_grants (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    pattern    TEXT    NOT NULL,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL DEFAULT (unixepoch()),
    UNIQUE (user_id, pattern)
) STRICT;
