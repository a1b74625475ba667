-- Provider rate limits: every request granted under a limit, kept for one window (a sliding
-- log shared by every worker through the store).
CREATE TABLE rate_grants (
    limit_key   TEXT NOT NULL,
    at          REAL NOT NULL,
    tokens      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX rate_grants_key_at ON rate_grants (limit_key, at);
