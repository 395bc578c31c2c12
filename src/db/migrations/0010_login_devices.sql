-- Browsers that completed a sign-in, remembered by the SHA-256 of a random value kept in a
-- cookie of theirs. Sign-in attempts from such a browser count against its own limit
-- instead of the account's, so someone guessing from elsewhere cannot keep the account's
-- owner locked out (see web/login.rs). A deleted user takes their browsers along.
CREATE TABLE login_devices (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL DEFAULT (unixepoch()),
    last_used_at INTEGER NOT NULL DEFAULT (unixepoch())
) STRICT;
CREATE INDEX login_devices_user ON login_devices(user_id);
