-- The operation a running run is in, refreshed by its worker's heartbeat (stuck vs slow).
ALTER TABLE runs ADD COLUMN progress text;
