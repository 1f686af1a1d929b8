-- last_event_id --
-- The last id the events sequence has handed out (0: none yet), whether or not the
-- transaction that took it has committed: the sequence is not transactional. Its cache is
-- 1 (schema.sql), so no session holds ids below this value to hand out later.
SELECT CASE WHEN is_called THEN last_value ELSE 0 END AS last_id
FROM events_id_seq

-- event_writers --
-- The transactions (virtual transaction ids, which are never reused) that hold ROW
-- EXCLUSIVE on events, granted or waited for: every INSERT or COPY into events takes it
-- before its rows take ids from the sequence and keeps it until its transaction ends. (So
-- do deletes, such as a reorg's rollback: they only make the stream wait a little.)
SELECT coalesce(array_agg(l.virtualtransaction), ARRAY[]::text[]) AS writers
FROM pg_locks l
WHERE l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation = 'events'::regclass
  AND l.mode = 'RowExclusiveLock'

-- plan_once --
SET LOCAL plan_cache_mode = force_generic_plan

-- stream_events --
-- The next events of a stream: ids in (after, until], in id order, filtered as GET /events
-- filters them, each with whether its block is confirmed now. `until` bounds the ids one
-- query looks at, so that a filter that matches little reads a bounded range per query. Its
-- plan is generic (plan_once): the id index of each partition, the filters checked per row.
SELECT {event_columns},
       coalesce(e.block_number <= c.confirmed_block_number, false) AS confirmed
FROM events e
LEFT JOIN checkpoints c ON c.chain_id = e.chain_id
WHERE e.id > %(after)s::bigint AND e.id <= %(until)s::bigint
  AND {event_filters}
  AND (%(from_block)s::bigint IS NULL OR e.block_number >= %(from_block)s::bigint)
  AND (%(to_block)s::bigint IS NULL OR e.block_number <= %(to_block)s::bigint)
  AND (%(from_time)s::timestamptz IS NULL OR e.block_time >= %(from_time)s::timestamptz)
  AND (%(to_time)s::timestamptz IS NULL OR e.block_time <= %(to_time)s::timestamptz)
ORDER BY e.id
LIMIT %(limit)s
