DROP EXTENSION IF EXISTS pgcrypto;
-- TimescaleDB stays: dropping it would drop every hypertable in the database, not only ours,
-- and it cannot be created again in the same session. Drop it by hand if you mean to.
