-- indexer_status --
SELECT chain_id, block_number, confirmed_block_number, head_block_number,
       head_block_number - block_number AS head_lag,
       last_error, last_error_at, updated_at
FROM checkpoints
ORDER BY chain_id

-- applied_migrations --
SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version

-- events_estimate --
-- The planner's estimate over the events partitions: an exact count of a large table takes
-- seconds, not the milliseconds a scrape should.
SELECT greatest(sum(c.reltuples), 0)::bigint AS events
FROM pg_class c
WHERE c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'events'::regclass)
   OR c.oid = 'events'::regclass AND c.relkind = 'r'

-- jobs_by_status --
SELECT status, count(*) AS jobs FROM action_jobs GROUP BY status

-- queue_depth --
SELECT count(*) AS due FROM action_jobs WHERE status = 'queued' AND run_at <= now()
