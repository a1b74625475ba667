-- Runs, their journals and their signal mailboxes.
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          TEXT,
    status           TEXT NOT NULL,
    input            TEXT,
    output           TEXT,
    error            TEXT,
    labels           TEXT NOT NULL DEFAULT '{}',
    budget           TEXT,
    parent_id        TEXT,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    wake_at          REAL,
    waiting_for      TEXT,
    lease_owner      TEXT,
    lease_expires    REAL,
    fencing          INTEGER NOT NULL DEFAULT 0,
    recoveries       INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
-- Claims scan runnable runs by due time, and expired leases by expiry.
CREATE INDEX runs_due ON runs (status, wake_at);
CREATE INDEX runs_lease ON runs (status, lease_expires);
CREATE INDEX runs_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at);
CREATE INDEX runs_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE steps (
    run_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    status      TEXT NOT NULL,
    input       TEXT,
    output      TEXT,
    error       TEXT,
    attempts    INTEGER NOT NULL DEFAULT 1,
    started_at  REAL,
    finished_at REAL,
    wake_at     REAL,
    usage       TEXT,
    meta        TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TABLE signals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id       TEXT NOT NULL,
    name         TEXT NOT NULL,
    payload      TEXT,
    created_at   REAL NOT NULL,
    consumed_seq INTEGER
);
CREATE INDEX signals_pending ON signals (run_id, name, id) WHERE consumed_seq IS NULL;
CREATE INDEX signals_run ON signals (run_id);
