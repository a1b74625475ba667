-- Alerts: one row per occurrence (its key), recorded by whichever worker saw it first and
-- delivered to the webhook by whichever worker claims it (a short lease per attempt).
CREATE TABLE alerts (
    id               text PRIMARY KEY,   -- derived from key: the idempotency key receivers see
    key              text NOT NULL UNIQUE,
    series           text NOT NULL,      -- occurrences of one condition (quiet-period dedupe)
    kind             text NOT NULL,      -- stuck | change | spend | unserved | test
    subject          text NOT NULL,
    summary          text NOT NULL,
    details          jsonb,
    created_at       double precision NOT NULL,
    state            text NOT NULL,      -- pending | delivered | failed
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  double precision NOT NULL,
    lease_owner      text,
    lease_expires    double precision,
    last_error       text,
    delivered_at     double precision
);
CREATE INDEX alerts_due ON alerts (state, next_attempt_at);
CREATE INDEX alerts_series ON alerts (series, created_at);
CREATE INDEX alerts_created ON alerts (created_at);
