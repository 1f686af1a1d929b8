-- table_sizes --
-- The seed's "Check Database Size", one row per table; a partitioned table counts its
-- partitions (or a hypertable its chunks), which are not listed on their own.
WITH tables AS (
    SELECT c.oid, c.relname,
           array_append(coalesce(
               (SELECT array_agg(i.inhrelid) FROM pg_inherits i WHERE i.inhparent = c.oid),
               '{}'), c.oid) AS parts
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
)
SELECT 'public' AS schemaname,
       t.relname AS tablename,
       pg_size_pretty(sum(pg_total_relation_size(p.part))) AS size,
       sum(coalesce(s.n_live_tup, 0))::bigint AS live_rows
FROM tables t
CROSS JOIN LATERAL unnest(t.parts) AS p(part)
LEFT JOIN pg_stat_user_tables s ON s.relid = p.part
GROUP BY t.relname
ORDER BY sum(pg_total_relation_size(p.part)) DESC, t.relname

-- index_usage --
-- The seed's "Check Index Usage".
SELECT schemaname, relname AS tablename, indexrelname AS indexname, idx_scan, idx_tup_read, idx_tup_fetch
FROM pg_stat_user_indexes
ORDER BY idx_scan DESC, relname, indexrelname
LIMIT %(limit)s

-- active_connections --
-- The seed's "Check Active Connections", split by state.
SELECT coalesce(state, 'background') AS state, count(*) AS connections
FROM pg_stat_activity
WHERE datname = current_database()
GROUP BY 1
ORDER BY 2 DESC

-- server_info --
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_database() AS database,
       current_user AS role,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       has_database_privilege(current_database(), 'CREATE') AS can_create,
       current_setting('shared_preload_libraries') AS preload

-- extensions --
SELECT a.name, a.default_version AS available_version, e.extversion AS installed_version
FROM pg_available_extensions a
LEFT JOIN pg_extension e ON e.extname = a.name
WHERE a.name IN ('timescaledb', 'pgcrypto')

-- events_partitioning --
-- 'native' when events is range-partitioned, 'plain' when it is an ordinary table (a
-- hypertable under TimescaleDB), NULL when there is no events table.
SELECT CASE
    WHEN to_regclass('events') IS NULL THEN NULL
    WHEN EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('events'))
        THEN 'native'
    ELSE 'plain'
END AS mode,
EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb

-- is_hypertable --
SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'events')

-- hypertable_interval --
SELECT time_interval
FROM timescaledb_information.dimensions
WHERE hypertable_name = 'events' AND column_name = 'block_time'

-- native_partitions --
-- Weekly partitions of events with their bounds; the default partition has no bounds.
SELECT c.relname AS partition, pg_get_expr(c.relpartbound, c.oid) AS bounds
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
ORDER BY c.relname

-- default_partition_rows --
SELECT count(*) FROM events_default

-- partition_covers --
-- Whether some weekly partition (not the default one) holds the given time.
SELECT EXISTS (
    SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'events'::regclass
      AND c.relname <> 'events_default'
      AND c.relname = 'events_' || to_char(%(at)s::timestamptz AT TIME ZONE 'UTC', 'IYYY"w"IW'))

-- public_tables --
SELECT c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname

-- database_exists --
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- create_database --
-- The database's name goes in as a quoted identifier (DDL takes no parameters).
CREATE DATABASE {database}

-- drop_database --
-- Only for a database `db restore` created itself and could not restore into; FORCE, so
-- that a session someone opened on it meanwhile does not keep it behind.
DROP DATABASE {database} WITH (FORCE)
