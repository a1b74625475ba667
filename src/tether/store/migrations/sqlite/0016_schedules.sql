-- Schedules: a workflow started on a cron expression. The tick is the run id, so each tick
-- starts one run whichever (and however many) workers see it due.
CREATE TABLE schedules (
    name          TEXT PRIMARY KEY,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    workflow      TEXT NOT NULL,
    input         TEXT NOT NULL,
    labels        TEXT NOT NULL,
    overlap       TEXT NOT NULL,      -- skip | queue | allow
    catchup       TEXT NOT NULL,      -- latest | all | none
    paused        INTEGER NOT NULL DEFAULT 0,
    next_at       REAL NOT NULL,      -- the next tick due (epoch seconds)
    last_at       REAL,               -- the last tick that started a run
    last_run_id   TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE paused = 0;
