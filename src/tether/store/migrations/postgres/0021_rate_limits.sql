-- Provider rate limits: every request granted under a limit, kept for one window (a sliding
-- log shared by every worker through the store). A grant is stamped again when its request
-- has been answered (by then it has surely reached the provider).
CREATE TABLE rate_grants (
    limit_key   text NOT NULL,
    at          double precision NOT NULL,
    tokens      bigint NOT NULL DEFAULT 0,
    grant_id    text
);
CREATE INDEX rate_grants_key_at ON rate_grants (limit_key, at);
CREATE INDEX rate_grants_grant ON rate_grants (grant_id);
