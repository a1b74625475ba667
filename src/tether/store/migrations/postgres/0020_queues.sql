-- Named queues: a global concurrency limit, a per-key limit and a start rate, enforced by the
-- claim of every worker. A run in a queue carries its queue, key and priority.
ALTER TABLE runs ADD COLUMN queue text;
ALTER TABLE runs ADD COLUMN queue_key text;
ALTER TABLE runs ADD COLUMN priority integer NOT NULL DEFAULT 0;
CREATE INDEX runs_queue ON runs (queue, queue_key, status) WHERE queue IS NOT NULL;
CREATE TABLE queues (
    name          text PRIMARY KEY,
    concurrency   integer,
    per_key       integer,
    rate_count    integer,
    rate_seconds  double precision,
    updated_at    double precision NOT NULL
);
