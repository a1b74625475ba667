-- Claims look for queued and waiting runs that are due (`wake_at <= now`); a run that is
-- running, finished, or waiting with no timer has no wake_at and was an entry of this index
-- all the same: one index page more in the commit that creates a run claimed, and in the one
-- that ends it. Only runs with a wake_at are indexed now (every query that used the index
-- compares wake_at, which implies it is not null).
DROP INDEX IF EXISTS runs_due;
CREATE INDEX runs_due ON runs (status, wake_at) WHERE wake_at IS NOT NULL;
