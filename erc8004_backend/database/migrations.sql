-- create_migrations_table --
-- SQLx's bookkeeping table, exactly as `sqlx migrate` creates it.
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)

-- migrations_table_exists --
SELECT to_regclass('_sqlx_migrations') IS NOT NULL

-- list_applied_migrations --
SELECT version, description, installed_on, success, checksum, execution_time
FROM _sqlx_migrations
ORDER BY version

-- acquire_migration_lock --
-- The advisory lock of SQLx's embedded migrator (Migrator::run), so ours and an application
-- migrating with SQLx never run at once. (sqlx-cli's `migrate run` takes no lock.)
SELECT pg_advisory_lock(%(lock_id)s)

-- release_migration_lock --
SELECT pg_advisory_unlock(%(lock_id)s)

-- insert_applied_migration --
-- execution_time is -1 until the migration's transaction has committed (as SQLx does).
INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
VALUES (%(version)s, %(description)s, TRUE, %(checksum)s, -1)

-- update_execution_time --
UPDATE _sqlx_migrations SET execution_time = %(execution_time)s WHERE version = %(version)s

-- delete_applied_migration --
DELETE FROM _sqlx_migrations WHERE version = %(version)s
