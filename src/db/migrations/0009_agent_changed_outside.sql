-- When an agent first reported that its Caddy runs a config loaded outside Gatehouse (a
-- direct POST /load to Caddy's admin API), for the episode still open; NULL once a push has
-- put the database's config back. One audit entry is written when it goes from NULL to set.
ALTER TABLE agents ADD COLUMN changed_outside_at INTEGER;
