-- Spend reservations: the worst-case cost of model calls in flight, held against label spend
-- limits until the call's usage is journaled (store/base.py, "Reservations"). A row counts only
-- while its run is running under `token` with an unexpired lease. Reservers of one key
-- serialise on a transaction-scoped advisory lock, not on this table.
CREATE TABLE spend_reservations (
    limit_key  text NOT NULL,   -- "label:<key>=<value>"
    id         text NOT NULL,   -- the reservation: "<run id>:<seq>:<fencing token>"
    run_id     text NOT NULL,
    token      bigint NOT NULL,
    cost_usd   double precision NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (limit_key, id)
);
CREATE INDEX spend_reservations_id ON spend_reservations (id);
