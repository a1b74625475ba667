-- Trust layer (mirrors sqlite/0003_trust.sql): every gated tool call (auto, denied, or sent for
-- review) and every change of a category's ring, with the evidence that caused it.
CREATE TABLE trust_actions (
    id            text PRIMARY KEY,   -- the approval id: "<run id>-<seq of the gate step>"
    run_id        text NOT NULL,
    seq           integer NOT NULL,
    workflow      text NOT NULL,
    agent         text NOT NULL,
    tool          text NOT NULL,
    category      text NOT NULL,
    ring          text NOT NULL,      -- the ring in force when the call was gated
    status        text NOT NULL,      -- auto | denied | pending | approved | rejected | expired
    args          text NOT NULL,
    digest        text NOT NULL,
    created_at    double precision NOT NULL,
    args_schema   text,
    checks        text,
    context       text,
    reviewers     text,               -- who may decide (NULL: any named reviewer)
    started_by    text,
    call_id       text,
    reason        text,
    expires_at    double precision,
    decided_by    text,
    decided_at    double precision,
    final_args    text,
    final_digest  text,
    edited        boolean NOT NULL DEFAULT false,
    outcome       text                -- NULL until known: ok | failed | not_run
);
CREATE INDEX trust_actions_pending ON trust_actions (status, created_at);
CREATE INDEX trust_actions_category ON trust_actions (agent, category, created_at);
-- A promoted category is re-checked before every call: any rejection, any failure since?
CREATE INDEX trust_actions_verdicts ON trust_actions (agent, category, status, created_at);
CREATE INDEX trust_actions_outcomes ON trust_actions (agent, category, status, outcome, created_at);
CREATE INDEX trust_actions_run ON trust_actions (run_id);

CREATE TABLE trust_ring_changes (
    id          bigserial PRIMARY KEY,
    agent       text NOT NULL,
    category    text NOT NULL,
    from_ring   text NOT NULL,
    to_ring     text NOT NULL,
    reason      text NOT NULL,
    evidence    text,
    created_at  double precision NOT NULL
);
CREATE INDEX trust_ring_changes_category ON trust_ring_changes (agent, category, id);
