-- Interfaces layer: who may do what (principals with roles and a hashed token) and what they
-- did (the audit trail of every mutation made through the API, the dashboard and the CLI).
CREATE TABLE principals (
    name        TEXT PRIMARY KEY,
    roles       TEXT NOT NULL,        -- JSON list: viewer | operator | reviewer | admin
    categories  TEXT,                 -- JSON list of risk categories a reviewer may decide (NULL: all)
    token_hash  TEXT NOT NULL,        -- sha256 of the secret; the secret itself is never stored
    created_at  REAL NOT NULL,
    created_by  TEXT,
    revoked_at  REAL                  -- NULL while the token works
);
CREATE UNIQUE INDEX principals_token ON principals (token_hash);

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         REAL NOT NULL,
    principal  TEXT NOT NULL,
    action     TEXT NOT NULL,         -- run.start, run.cancel, approval.approve, token.create…
    target     TEXT,                  -- a run id, an approval id, a principal name…
    outcome    TEXT NOT NULL,         -- ok | denied | failed
    detail     TEXT,                  -- JSON: what was asked, the error when refused
    via        TEXT                   -- api | dashboard | cli
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_principal ON audit (principal, at);
CREATE INDEX audit_target ON audit (target, at);
