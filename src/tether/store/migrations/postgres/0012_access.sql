-- Interfaces layer (mirrors sqlite/0012_access.sql): who may do what (principals with roles and
-- a hashed token) and what they did (the audit trail of every mutation made through the API,
-- the dashboard and the CLI).
CREATE TABLE principals (
    name        text PRIMARY KEY,
    roles       text NOT NULL,        -- JSON list: viewer | operator | reviewer | admin
    categories  text,                 -- JSON list of risk categories a reviewer may decide (NULL: all)
    token_hash  text NOT NULL,        -- sha256 of the secret; the secret itself is never stored
    created_at  double precision NOT NULL,
    created_by  text,
    revoked_at  double precision  -- NULL while the token works
);
CREATE UNIQUE INDEX principals_token ON principals (token_hash);

CREATE TABLE audit (
    id         bigserial PRIMARY KEY,
    at         double precision NOT NULL,
    principal  text NOT NULL,
    action     text NOT NULL,         -- run.start, run.cancel, approval.approve, token.create…
    target     text,                  -- a run id, an approval id, a principal name…
    outcome    text NOT NULL,         -- ok | denied | failed
    detail     text,                  -- JSON: what was asked, the error when refused
    via        text                   -- api | dashboard | cli
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_principal ON audit (principal, at);
CREATE INDEX audit_target ON audit (target, at);
