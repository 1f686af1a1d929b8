-- Back to the state after migration 8: an events table without partitions or chunks.
-- Data in events is lost, as it is when migration 8 is reverted.
DO $$
DECLARE
    partition regclass;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- A hypertable cannot be turned back into a plain table; emptying it drops every
        -- chunk, and migration 8's revert then drops the table itself.
        TRUNCATE events;
    ELSE
        FOR partition IN SELECT inhrelid::regclass FROM pg_inherits
                          WHERE inhparent = 'events'::regclass LOOP
            EXECUTE format('DROP TABLE %s', partition);
        END LOOP;
    END IF;
END
$$;

DROP FUNCTION ensure_event_partitions(timestamptz, timestamptz);
