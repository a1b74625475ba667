-- requires-code: 0024
-- Older code must not share a store with this: it writes a step's events as rows of their own
-- and reads only those, so on a store both write, older readers lose the "completed" events of
-- steps newer code ran, and newer readers can see a step completed twice (measured with an old
-- and a new worker on one store; docs/operations.md, "Upgrading").
-- Step events derived from the journal (`tether.store.events_sql`): a step's final row
-- carries its position in the run's event stream, drawn from the counter of run_events ids,
-- so a step's "started" (at ev_pos - 1, unless it was appended as a row while the step ran)
-- and "completed"/"failed" events (at ev_pos) cost no rows of their own.
ALTER TABLE steps ADD COLUMN ev_pos INTEGER;
CREATE INDEX steps_events ON steps (run_id, ev_pos) WHERE ev_pos IS NOT NULL;
INSERT INTO sqlite_sequence (name, seq)
SELECT 'run_events', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'run_events');
