-- TimescaleDB and pgcrypto are optional: each is enabled only where the server has it.
-- Without TimescaleDB, events is partitioned natively by week (migrations 8 and 9);
-- nothing depends on pgcrypto (gen_random_uuid() is core since PostgreSQL 13).
-- `erc8004 db doctor` reports which of them are active and how to enable them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS timescaledb;
        EXCEPTION WHEN OTHERS THEN
            -- Installed but not loaded (shared_preload_libraries): run without it rather
            -- than fail. Any other reason, such as missing privileges, is an error.
            IF SQLERRM !~ 'preload' THEN
                RAISE;
            END IF;
            RAISE WARNING 'timescaledb is installed but not preloaded; events will use native partitioning'
                USING HINT = 'Add timescaledb to shared_preload_libraries and restart PostgreSQL.';
        END;
    END IF;

    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto') THEN
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
    END IF;
END
$$;
