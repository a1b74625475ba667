-- Step events derived from the journal (`tether.store.events_sql`): a step's final row
-- carries its position in the run's event stream, drawn from the counter of run_events ids,
-- so a step's "started" and "completed"/"failed" events cost no rows of their own. `ev_started`
-- says whether the row also stands for the step's "started" event (at position ev_pos - 1)
-- or that event was appended as a row while the step ran.
ALTER TABLE steps ADD COLUMN ev_pos INTEGER;
ALTER TABLE steps ADD COLUMN ev_started INTEGER NOT NULL DEFAULT 0;
CREATE INDEX steps_events ON steps (run_id, ev_pos) WHERE ev_pos IS NOT NULL;
INSERT INTO sqlite_sequence (name, seq)
SELECT 'run_events', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'run_events');
