-- requires-code: 0027
-- Older code must not share a store with this: it neither writes holds nor counts them, so a
-- call cut by a SIGKILL on either kind of worker is sent again without being counted (measured:
-- 6 requests under max_llm_calls=5 with an old and a new worker, either way round), and its
-- prune leaves a run's holds behind.
-- Run holds: the worst case of a budgeted run's calls in flight, written before the call is
-- sent and deleted by the run's holder once the call's usage is journaled (store/base.py,
-- "Reservations"). A hold left by a worker that died mid-call stands for a call that may have
-- been sent and billed: the worker that takes the run over counts it against the run's budget.
CREATE TABLE run_holds (
    id         TEXT PRIMARY KEY,   -- "<run id>:<seq>:<fencing token>"
    run_id     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    usage      TEXT NOT NULL,      -- the estimate (Usage as JSON)
    created_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX run_holds_run ON run_holds (run_id);
