-- Poison runs by evidence: the journal position (highest seq) when the run was last claimed,
-- and how many holders in a row lost it at that position (taken over without progress).
ALTER TABLE runs ADD COLUMN claim_mark integer NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN stalls integer NOT NULL DEFAULT 0;
