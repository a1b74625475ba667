-- The worker registry: every worker process writes its row at start, refreshes `last_seen`
-- once per lease period and deletes it on a graceful stop. Readers call a worker live while
-- last_seen is within three of its lease periods; runs of a (workflow, version) that no live
-- worker serves are flagged instead of waiting silently (a deploy that dropped a version).
CREATE TABLE workers (
    owner         text PRIMARY KEY,
    name          text NOT NULL,
    host          text NOT NULL,
    pid           integer NOT NULL,
    started_at    double precision NOT NULL,
    last_seen     double precision NOT NULL,
    lease_seconds double precision NOT NULL,
    workflows     text NOT NULL    -- JSON list of [name, version] pairs the worker serves
);
