-- Alerts: one row per occurrence (its key), recorded by whichever worker saw it first and
-- delivered to the webhook by whichever worker claims it (a short lease per attempt).
CREATE TABLE alerts (
    id               TEXT PRIMARY KEY,   -- derived from key: the idempotency key receivers see
    key              TEXT NOT NULL UNIQUE,
    series           TEXT NOT NULL,      -- occurrences of one condition (quiet-period dedupe)
    kind             TEXT NOT NULL,      -- stuck | change | spend | unserved | test
    subject          TEXT NOT NULL,
    summary          TEXT NOT NULL,
    details          TEXT,
    created_at       REAL NOT NULL,
    state            TEXT NOT NULL,      -- pending | delivered | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    lease_owner      TEXT,
    lease_expires    REAL,
    last_error       TEXT,
    delivered_at     REAL
);
CREATE INDEX alerts_due ON alerts (state, next_attempt_at);
CREATE INDEX alerts_series ON alerts (series, created_at);
CREATE INDEX alerts_created ON alerts (created_at);
