-- The worker registry: every worker process writes its row at start, refreshes `last_seen`
-- once per lease period and deletes it on a graceful stop. Readers call a worker live while
-- last_seen is within three of its lease periods; runs of a (workflow, version) that no live
-- worker serves are flagged instead of waiting silently (a deploy that dropped a version).
CREATE TABLE workers (
    owner         TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    REAL NOT NULL,
    last_seen     REAL NOT NULL,
    lease_seconds REAL NOT NULL,
    workflows     TEXT NOT NULL    -- JSON list of [name, version] pairs the worker serves
);
