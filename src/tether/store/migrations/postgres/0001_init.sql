-- Runs, their journals and their signal mailboxes (mirrors sqlite/0001_init.sql).
-- JSON payloads are stored as text (encoded once by the store, never parsed by the server);
-- labels are jsonb so runs can be filtered and grouped by label.
CREATE TABLE runs (
    id               text PRIMARY KEY,
    workflow         text NOT NULL,
    version          text,
    status           text NOT NULL,
    input            text,
    output           text,
    error            text,
    labels           jsonb NOT NULL DEFAULT '{}',
    budget           text,
    parent_id        text,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    wake_at          double precision,
    waiting_for      text,
    lease_owner      text,
    lease_expires    double precision,
    fencing          bigint NOT NULL DEFAULT 0,
    recoveries       integer NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false
);
-- Claims scan runnable runs by due time and expired leases by expiry; partial indexes keep
-- both small however many finished runs the table holds.
CREATE INDEX runs_due ON runs (wake_at) WHERE status IN ('queued', 'waiting');
CREATE INDEX runs_lease ON runs (lease_expires) WHERE status = 'running';
CREATE INDEX runs_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_status_created ON runs (status, created_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE steps (
    run_id      text NOT NULL,
    seq         integer NOT NULL,
    name        text NOT NULL,
    kind        text NOT NULL,
    status      text NOT NULL,
    input       text,
    output      text,
    error       text,
    attempts    integer NOT NULL DEFAULT 1,
    started_at  double precision,
    finished_at double precision,
    wake_at     double precision,
    usage       text,
    meta        text,
    PRIMARY KEY (run_id, seq)
);

CREATE TABLE signals (
    id           bigserial PRIMARY KEY,
    run_id       text NOT NULL,
    name         text NOT NULL,
    payload      text,
    created_at   double precision NOT NULL,
    consumed_seq integer
);
CREATE INDEX signals_pending ON signals (run_id, name, id) WHERE consumed_seq IS NULL;
CREATE INDEX signals_run ON signals (run_id);
