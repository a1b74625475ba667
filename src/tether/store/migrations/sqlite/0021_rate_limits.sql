-- Provider rate limits: every request granted under a limit, kept for one window (a sliding
-- log shared by every worker through the store). A grant is stamped again when its request
-- has been answered (by then it has surely reached the provider).
CREATE TABLE rate_grants (
    limit_key   TEXT NOT NULL,
    at          REAL NOT NULL,
    tokens      INTEGER NOT NULL DEFAULT 0,
    grant_id    TEXT
);
CREATE INDEX rate_grants_key_at ON rate_grants (limit_key, at);
CREATE INDEX rate_grants_grant ON rate_grants (grant_id);
