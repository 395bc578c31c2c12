-- A password Gatehouse generated for someone (a new account, or a reset) is one-time: it
-- signs in once ('fresh' becomes 'used'), and every page then asks for a password of the
-- person's own; setting one clears the mark. A used one-time password signs in no more.
ALTER TABLE users ADD COLUMN password_one_time TEXT
    CHECK (password_one_time IN ('fresh', 'used'));
