-- The event stream of every run (step started/completed, model text deltas, approvals,
-- suspended/resumed/finished), read by `handle.events()` and the SSE endpoint. `id` is the
-- order events were appended in (the SSE event id); `key` makes an event that is emitted
-- again (a replay after a takeover re-emits what it replays) a no-op, so a takeover neither
-- loses nor duplicates completed events. Live-only events (text deltas) have no key.
CREATE TABLE run_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL,
    kind    TEXT NOT NULL,
    at      REAL NOT NULL,
    seq     INTEGER,
    data    TEXT,
    key     TEXT
);
CREATE UNIQUE INDEX run_events_key ON run_events (key);
CREATE INDEX run_events_run ON run_events (run_id, id);
