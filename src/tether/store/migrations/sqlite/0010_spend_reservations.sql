-- Spend reservations: the worst-case cost of model calls in flight, held against label spend
-- limits until the call's usage is journaled (store/base.py, "Reservations"). A row counts only
-- while its run is running under `token` with an unexpired lease.
CREATE TABLE spend_reservations (
    limit_key  TEXT NOT NULL,   -- "label:<key>=<value>"
    id         TEXT NOT NULL,   -- the reservation: "<run id>:<seq>:<fencing token>"
    run_id     TEXT NOT NULL,
    token      INTEGER NOT NULL,
    cost_usd   REAL NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (limit_key, id)
) WITHOUT ROWID;
CREATE INDEX spend_reservations_id ON spend_reservations (id);
