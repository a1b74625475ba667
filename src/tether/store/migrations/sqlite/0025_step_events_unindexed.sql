-- A run's step events are read by the steps table's own key (run_id, seq): the run's rows
-- are filtered on ev_pos as they are read. The index on (run_id, ev_pos) cost every journal
-- write a page of its own (a third of the pages a step commits) to speed up only reads of
-- one run's stream, which scan that run's steps either way.
DROP INDEX IF EXISTS steps_events;
