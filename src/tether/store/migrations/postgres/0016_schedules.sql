-- Schedules: a workflow started on a cron expression. The tick is the run id, so each tick
-- starts one run whichever (and however many) workers see it due.
CREATE TABLE schedules (
    name          text PRIMARY KEY,
    cron          text NOT NULL,
    timezone      text NOT NULL,
    workflow      text NOT NULL,
    input         jsonb NOT NULL,
    labels        jsonb NOT NULL,
    overlap       text NOT NULL,      -- skip | queue | allow
    catchup       text NOT NULL,      -- latest | all | none
    paused        boolean NOT NULL DEFAULT false,
    next_at       double precision NOT NULL,
    last_at       double precision,
    last_run_id   text,
    created_at    double precision NOT NULL,
    updated_at    double precision NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_at) WHERE NOT paused;
