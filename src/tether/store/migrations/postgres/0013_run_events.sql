-- The event stream of every run (see the SQLite migration of the same number): `id` is the
-- append order, `key` dedupes events re-emitted by a replay after a takeover.
CREATE TABLE run_events (
    id      bigserial PRIMARY KEY,
    run_id  text NOT NULL,
    kind    text NOT NULL,
    at      double precision NOT NULL,
    seq     integer,
    data    text,
    key     text
);
CREATE UNIQUE INDEX run_events_key ON run_events (key);
CREATE INDEX run_events_run ON run_events (run_id, id);
