-- Agent labels (`canary`, `eu`, …) and sites served by label. Each is a space-separated
-- list of lowercase slugs, checked before it is stored. A vhost with labels (and
-- `all_agents` off) is served by every agent that carries at least one of them.
ALTER TABLE agents ADD COLUMN labels TEXT NOT NULL DEFAULT '';
ALTER TABLE vhosts ADD COLUMN labels TEXT NOT NULL DEFAULT '';
