-- Which code may still use this store (store/migrate.py, "Which code may use a store"): a row
-- for each applied migration that declares `-- requires-code: NNNN`. Code that knows fewer
-- migrations than a row requires refuses to open the store; a store with no row (only
-- additive migrations) stays open to older code, so old and new workers can share it.
CREATE TABLE schema_compat (
    version    integer PRIMARY KEY,  -- the migration that declared the requirement
    name       text NOT NULL,        -- its file name
    requires   integer NOT NULL,     -- the oldest migration the code must know
    applied_by text NOT NULL         -- the tether version that applied it
);
