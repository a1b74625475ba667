-- Named queues: a global concurrency limit, a per-key limit and a start rate, enforced by the
-- claim of every worker. A run in a queue carries its queue, key and priority.
ALTER TABLE runs ADD COLUMN queue TEXT;
ALTER TABLE runs ADD COLUMN queue_key TEXT;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_queue ON runs (queue, queue_key, status) WHERE queue IS NOT NULL;
CREATE TABLE queues (
    name          TEXT PRIMARY KEY,
    concurrency   INTEGER,            -- running runs of the queue at most (NULL: no limit)
    per_key       INTEGER,            -- running runs of one key at most (NULL: no limit)
    rate_count    INTEGER,            -- at most rate_count starts ...
    rate_seconds  REAL,               -- ... in any rate_seconds
    updated_at    REAL NOT NULL
);
