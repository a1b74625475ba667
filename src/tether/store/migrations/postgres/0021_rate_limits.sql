-- Provider rate limits: every request granted under a limit, kept for one window (a sliding
-- log shared by every worker through the store).
CREATE TABLE rate_grants (
    limit_key   text NOT NULL,
    at          double precision NOT NULL,
    tokens      bigint NOT NULL DEFAULT 0
);
CREATE INDEX rate_grants_key_at ON rate_grants (limit_key, at);
