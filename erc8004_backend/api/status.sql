-- indexer_status --
SELECT chain_id, block_number, confirmed_block_number, head_block_number,
       head_block_number - block_number AS head_lag,
       last_error, last_error_at, updated_at
FROM checkpoints
ORDER BY chain_id

-- unknown_logs --
-- Per chain, registry and topic0: the logs at a registry's address that no decoder turned into
-- an event, where they are, and the latest one (to look it up). A handful of groups at most.
SELECT chain_id, registry, topic0, count(*) AS logs,
       min(block_number) AS first_block, max(block_number) AS last_block,
       (array_agg(transaction_hash ORDER BY block_number DESC, log_index DESC))[1]
           AS last_transaction_hash,
       (array_agg(decode_error ORDER BY block_number DESC, log_index DESC))[1] AS decode_error
FROM unknown_logs
GROUP BY chain_id, registry, topic0
ORDER BY chain_id, registry, topic0 NULLS FIRST

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
