-- requires-code: 0024
-- Older code must not share a store with this: it writes a step's events as rows of their own
-- and reads only those, so on a store both write, older readers lose the "completed" events of
-- steps newer code ran, and newer readers can see a step completed twice (measured with an old
-- and a new worker on one store; docs/operations.md, "Upgrading").
-- Step events derived from the journal, as on SQLite (see sqlite/0024 and
-- `tether.store.events_sql`): a step's final row carries its position in the run's event
-- stream, so its "started" (at ev_pos - 1, unless it was appended as a row while the step ran)
-- and "completed"/"failed" events (at ev_pos) cost no rows of their own. Positions come from
-- the run_events id sequence, which now counts in twos: ev_pos - 1 is never an event's id.
-- Read by the journal's primary key (run_id, seq): no index of its own to maintain per step.
ALTER TABLE steps ADD COLUMN ev_pos bigint;
ALTER SEQUENCE run_events_id_seq INCREMENT BY 2;
