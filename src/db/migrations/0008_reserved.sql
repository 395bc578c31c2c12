-- Placeholder: migration 0008 is being written on another branch (issue 13). This empty
-- step only keeps the versions here without a gap; the real 0008 replaces it at merge.
SELECT 1;
