-- Trust layer: every gated tool call (auto, denied, or sent for review) and every change of a
-- category's ring, with the evidence that caused it.
CREATE TABLE trust_actions (
    id            TEXT PRIMARY KEY,   -- the approval id: "<run id>-<seq of the gate step>"
    run_id        TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    workflow      TEXT NOT NULL,
    agent         TEXT NOT NULL,
    tool          TEXT NOT NULL,
    category      TEXT NOT NULL,
    ring          TEXT NOT NULL,      -- the ring in force when the call was gated
    status        TEXT NOT NULL,      -- auto | denied | pending | approved | rejected | expired
    args          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    args_schema   TEXT,
    checks        TEXT,
    context       TEXT,
    reviewers     TEXT,               -- who may decide (NULL: any named reviewer)
    started_by    TEXT,
    call_id       TEXT,
    reason        TEXT,
    created_at    REAL NOT NULL,
    expires_at    REAL,
    decided_by    TEXT,
    decided_at    REAL,
    final_args    TEXT,
    final_digest  TEXT,
    edited        INTEGER NOT NULL DEFAULT 0,
    outcome       TEXT                -- NULL until known: ok | failed | not_run
);
CREATE INDEX trust_actions_pending ON trust_actions (status, created_at);
CREATE INDEX trust_actions_category ON trust_actions (agent, category, created_at);
-- A promoted category is re-checked before every call: any rejection, any failure since?
CREATE INDEX trust_actions_verdicts ON trust_actions (agent, category, status, created_at);
CREATE INDEX trust_actions_outcomes ON trust_actions (agent, category, status, outcome, created_at);
CREATE INDEX trust_actions_run ON trust_actions (run_id);

CREATE TABLE trust_ring_changes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent       TEXT NOT NULL,
    category    TEXT NOT NULL,
    from_ring   TEXT NOT NULL,
    to_ring     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    evidence    TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX trust_ring_changes_category ON trust_ring_changes (agent, category, id);
