-- Time partitioning of events, in 7-day pieces either way:
-- * TimescaleDB: a hypertable with 7-day chunks, created by TimescaleDB as data arrives.
--   The table must still be empty here (create_hypertable does not move existing rows).
-- * Plain PostgreSQL: weekly range partitions (Monday 00:00 UTC to Monday), created ahead of
--   the data by ensure_event_partitions(); the default partition only catches rows outside
--   every weekly partition, and ensure_event_partitions() moves them into their week.

-- Creates the weekly partitions covering [from_time, to_time] that do not exist yet and
-- returns how many it created. Safe to call often and concurrently; a no-op under TimescaleDB.
CREATE FUNCTION ensure_event_partitions(from_time timestamptz, to_time timestamptz)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    week_start timestamptz;
    week_end   timestamptz;
    partition  text;
    created    integer := 0;
BEGIN
    IF from_time IS NULL OR to_time IS NULL OR from_time > to_time THEN
        RAISE EXCEPTION 'ensure_event_partitions: invalid range % .. %', from_time, to_time;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'events'::regclass) THEN
        RETURN 0;
    END IF;

    -- Serialises concurrent callers so two of them never create the same week.
    PERFORM pg_advisory_xact_lock(hashtext('ensure_event_partitions'));

    week_start := date_trunc('week', from_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    WHILE week_start <= to_time LOOP
        week_end := week_start + interval '7 days';
        partition := 'events_' || to_char(week_start AT TIME ZONE 'UTC', 'IYYY"w"IW');
        IF to_regclass(partition) IS NULL THEN
            -- Rows of this week that landed in the default partition move into the new one;
            -- the new partition is attached only once the default holds none of them.
            EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                           partition);
            EXECUTE format(
                'WITH moved AS (DELETE FROM events_default
                                 WHERE block_time >= $1 AND block_time < $2 RETURNING *)
                 INSERT INTO %I SELECT * FROM moved', partition)
                USING week_start, week_end;
            EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           partition, week_start, week_end);
            created := created + 1;
        END IF;
        week_start := week_end;
    END LOOP;
    RETURN created;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        PERFORM create_hypertable('events', 'block_time', chunk_time_interval => interval '7 days',
                                  if_not_exists => true);
    ELSE
        CREATE TABLE events_default PARTITION OF events DEFAULT;
        PERFORM ensure_event_partitions(now() - interval '7 days', now() + interval '4 weeks');
    END IF;
END
$$;
