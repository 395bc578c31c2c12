-- From this version on, agents.token and users.totp_secret hold values sealed with
-- AES-256-GCM (`v1:<key id>:<base64>`), never plaintext. SQL cannot encrypt, so this only
-- lists the rows an earlier version left in plaintext; start-up seals exactly those with
-- the key (src/secrets.rs) and empties the list in the same transaction.
CREATE TABLE secrets_pending (
    field  TEXT    NOT NULL,
    row_id INTEGER NOT NULL,
    PRIMARY KEY (field, row_id)
) STRICT;
INSERT INTO secrets_pending (field, row_id)
    SELECT 'agents.token', id FROM agents;
INSERT INTO secrets_pending (field, row_id)
    SELECT 'users.totp_secret', id FROM users WHERE totp_secret IS NOT NULL;
