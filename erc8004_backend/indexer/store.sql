-- lock_chain --
-- One indexer per chain: held for the life of the indexer's session. Chain ids can exceed
-- an int4, so the key is a 64-bit hash of a name that says what the lock is for.
SELECT pg_try_advisory_lock(hashtextextended('erc8004 indexer ' || %(chain_id)s::text, 0))

-- relax_commit_flush --
-- The indexer's commits need not wait for the WAL flush: a batch and its checkpoint commit
-- together, so a server crash can only lose whole recent batches, which the indexer then
-- fetches again from the chain. Any later synchronous commit (the trigger engine's) flushes
-- the WAL before it, so nothing downstream can see a batch that is then lost.
SET synchronous_commit = off

-- get_checkpoint --
SELECT block_number, block_hash, confirmed_block_number
FROM checkpoints
WHERE chain_id = %(chain_id)s

-- lock_checkpoint --
-- Taken first in every batch: a second writer waits here, then sees the moved checkpoint.
SELECT block_number
FROM checkpoints
WHERE chain_id = %(chain_id)s
FOR UPDATE

-- recent_blocks --
-- The stored hashes from the checkpoint down, for finding a fork point.
SELECT block_number, block_hash, parent_hash
FROM indexed_blocks
WHERE chain_id = %(chain_id)s AND block_number <= %(from_block)s
ORDER BY block_number DESC
LIMIT %(limit)s

-- ensure_partitions --
SELECT ensure_event_partitions(%(from_time)s, %(to_time)s)

-- copy_events --
-- The columns are EventRow's, in its order (EVENT_COLUMNS in chain/events.py): store.py
-- writes them in.
COPY events ({event_columns}) FROM STDIN (FORMAT BINARY)

-- apply_read_model --
-- The batch's events, just copied, applied to the read model (agents, feedback, validation
-- requests; migration 20 defines the rules). The time bounds keep the reads of `events` to
-- the batch's partitions, and the kinds of event it holds skip the statements for the others.
SELECT read_model_apply(%(chain_id)s, %(from_block)s, %(to_block)s, NULL,
                        %(from_time)s, %(to_time)s, p_event_types => %(event_types)s)

-- insert_unknown_logs --
-- The batch's logs that no decoder turned into an event. Writing one again is a no-op.
INSERT INTO unknown_logs (chain_id, registry, address, block_number, block_hash, block_time,
                          transaction_hash, log_index, topic0, decode_error)
SELECT %(chain_id)s, log.*
FROM unnest(%(registry)s::text[], %(address)s::text[], %(block_number)s::bigint[],
            %(block_hash)s::text[], %(block_time)s::timestamptz[],
            %(transaction_hash)s::text[], %(log_index)s::integer[], %(topic0)s::text[],
            %(decode_error)s::text[]) AS log
ON CONFLICT (chain_id, block_hash, log_index) DO NOTHING

-- insert_blocks --
INSERT INTO indexed_blocks (chain_id, block_number, block_hash, parent_hash, block_time)
SELECT %(chain_id)s, number, hash, parent, time
FROM unnest(%(numbers)s::bigint[], %(hashes)s::text[], %(parents)s::text[],
            %(times)s::timestamptz[]) AS block(number, hash, parent, time)
ON CONFLICT (chain_id, block_number) DO UPDATE
SET block_hash = EXCLUDED.block_hash, parent_hash = EXCLUDED.parent_hash,
    block_time = EXCLUDED.block_time

-- prune_blocks --
DELETE FROM indexed_blocks
WHERE chain_id = %(chain_id)s AND block_number < %(below)s

-- advance_checkpoint --
-- Moves the checkpoint only from where this indexer last saw it: if another process moved
-- it, no row is returned and the caller's transaction rolls back.
INSERT INTO checkpoints AS c (chain_id, block_number, block_hash, head_block_number,
                             confirmed_block_number)
VALUES (%(chain_id)s, %(block_number)s, %(block_hash)s, %(head)s, %(confirmed)s)
ON CONFLICT (chain_id) DO UPDATE
SET block_number = EXCLUDED.block_number,
    block_hash = EXCLUDED.block_hash,
    head_block_number = EXCLUDED.head_block_number,
    confirmed_block_number = EXCLUDED.confirmed_block_number,
    last_error = NULL,
    last_error_at = NULL
WHERE c.block_number IS NOT DISTINCT FROM %(previous)s::bigint
RETURNING chain_id

-- notify_confirmed --
-- Events already stored became confirmed: wake the trigger engine as new events would.
SELECT pg_notify('new_event', '')

-- record_error --
UPDATE checkpoints
SET last_error = %(error)s, last_error_at = now(), head_block_number = coalesce(%(head)s, head_block_number)
WHERE chain_id = %(chain_id)s

-- clear_read_model --
SELECT read_model_clear(%(chain_id)s)

-- roll_back_read_model --
-- Before the events above the fork go: the agents they name are rebuilt from the events at
-- or below it (a fork below block 0 forgets the chain's model).
SELECT read_model_roll_back(%(chain_id)s, %(fork_block)s)

-- delete_events_above --
DELETE FROM events
WHERE chain_id = %(chain_id)s AND block_number > %(fork_block)s

-- delete_unknown_logs_above --
DELETE FROM unknown_logs
WHERE chain_id = %(chain_id)s AND block_number > %(fork_block)s

-- delete_blocks_above --
DELETE FROM indexed_blocks
WHERE chain_id = %(chain_id)s AND block_number > %(fork_block)s

-- rewind_checkpoint --
UPDATE checkpoints
SET block_number = %(fork_block)s,
    block_hash = %(fork_hash)s,
    -- least() skips NULL: an unset confirmed block must stay unset.
    confirmed_block_number = CASE WHEN confirmed_block_number IS NOT NULL
                                  THEN least(confirmed_block_number, %(fork_block)s) END
WHERE chain_id = %(chain_id)s

-- delete_checkpoint --
-- A fork below block 0: nothing of the chain stays, so it is indexed as never before.
DELETE FROM checkpoints
WHERE chain_id = %(chain_id)s

-- cancel_orphaned_jobs --
-- Before the events above the fork go: their jobs not delivered yet will never be (a job a
-- worker is delivering right now is left to finish). Each gets a result saying why.
WITH cancelled AS (
    UPDATE action_jobs AS j
    SET status = 'cancelled', finished_at = now(), last_error = 'reorged out',
        locked_by = NULL, locked_until = NULL
    FROM events AS e
    WHERE e.chain_id = %(chain_id)s AND e.block_number > %(fork_block)s
      AND j.event_id = e.id AND j.status = 'queued'
    RETURNING j.id, j.trigger_id, j.action_id, j.event_id, j.chain_id, j.attempts
)
INSERT INTO action_results (job_id, user_id, trigger_id, action_id, event_id, chain_id,
                            action_type, status, retry_count, error_message)
SELECT c.id, t.user_id, c.trigger_id, c.action_id, c.event_id, c.chain_id, a.action_type,
       'cancelled', greatest(c.attempts - 1, 0), 'cancelled: reorged out'
FROM cancelled AS c
JOIN triggers AS t ON t.id = c.trigger_id
JOIN trigger_actions AS a ON a.id = c.action_id

-- mark_reorged_out_deliveries --
-- Before the events above the fork go: a job a worker is delivering right now for one of them
-- (left to finish above) is marked, and its outcome decides (record_attempts, migration 41):
-- delivered, it gets the retraction its action asks for; failed, it is not tried again.
UPDATE action_jobs AS j
SET reorged_out = true
FROM events AS e
WHERE e.chain_id = %(chain_id)s AND e.block_number > %(fork_block)s
  AND j.event_id = e.id AND j.status = 'running' AND NOT j.retraction

-- queue_retractions --
-- Before the events above the fork go: each job delivered for one of them whose action asks
-- for it (config.notify_retractions) gets a retraction job: the same event, action and
-- idempotency key (and replay mark), its payload marked "retracted", due now.
INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, priority, idempotency_key,
                         payload, max_attempts, retraction, replay)
SELECT j.trigger_id, j.action_id, j.event_id, j.chain_id, j.priority, j.idempotency_key,
       j.payload || '{"retracted": true}', j.max_attempts, true, j.replay
FROM events AS e
JOIN action_jobs AS j ON j.event_id = e.id
JOIN trigger_actions AS a ON a.id = j.action_id
WHERE e.chain_id = %(chain_id)s AND e.block_number > %(fork_block)s
  AND j.status = 'succeeded' AND NOT j.retraction
  AND a.config @> '{"notify_retractions": true}'
ON CONFLICT (event_id, action_id, retraction) DO NOTHING

-- first_orphaned_batch --
-- The first processed batch that holds an orphaned event (trigger_state_undo, migration
-- 26): the trigger state is restored to what it was before it, and its events are
-- processed again (those at or below the fork find their jobs there already).
SELECT batch_block, batch_log_index
FROM trigger_state_undo
WHERE chain_id = %(chain_id)s AND batch_last_block > %(fork_block)s
ORDER BY batch_block, batch_log_index
LIMIT 1

-- restore_trigger_state --
-- Each (trigger, scope) moved from that batch on, as it was before the first batch that
-- moved it (absent: deleted).
WITH first_change AS (
    SELECT DISTINCT ON (trigger_id, scope) trigger_id, scope, previous_state, previous_block,
           previous_log_index
    FROM trigger_state_undo
    WHERE chain_id = %(chain_id)s AND scope IS NOT NULL
      AND (batch_block, batch_log_index) >= (%(block_number)s, %(log_index)s)
    ORDER BY trigger_id, scope, batch_block, batch_log_index
), absent AS (
    DELETE FROM trigger_state AS s
    USING first_change AS f
    WHERE s.trigger_id = f.trigger_id AND s.scope = f.scope AND f.previous_state IS NULL
)
INSERT INTO trigger_state (trigger_id, scope, state, last_block_number, last_log_index)
SELECT trigger_id, scope, previous_state, previous_block, previous_log_index
FROM first_change
WHERE previous_state IS NOT NULL
ON CONFLICT (trigger_id, scope) DO UPDATE
SET state = EXCLUDED.state,
    last_block_number = EXCLUDED.last_block_number,
    last_log_index = EXCLUDED.last_log_index

-- restore_last_fired --
-- Likewise each trigger's last firing (which its cooldown runs from). The rows locked in id
-- order first, as the worker's circuit breaker locks them, so that the two cannot deadlock.
WITH restored AS (
    SELECT t.id, f.previous_fired_at
    FROM (SELECT DISTINCT ON (trigger_id) trigger_id, previous_fired_at
          FROM trigger_state_undo
          WHERE chain_id = %(chain_id)s AND scope IS NULL
            AND (batch_block, batch_log_index) >= (%(block_number)s, %(log_index)s)
          ORDER BY trigger_id, batch_block, batch_log_index) AS f
    JOIN triggers AS t ON t.id = f.trigger_id
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
)
UPDATE triggers AS t
SET last_fired_at = restored.previous_fired_at
FROM restored
WHERE t.id = restored.id

-- forget_undone --
DELETE FROM trigger_state_undo
WHERE chain_id = %(chain_id)s
  AND (batch_block, batch_log_index) >= (%(block_number)s, %(log_index)s)

-- rewind_processing_cursor --
-- Only reached by a reorg deeper than the confirmation depth: the trigger engine already
-- processed orphaned events, and must process the new canonical ones from the given
-- position on (the fork, or the first restored batch's start if that is earlier).
UPDATE processing_cursors
SET block_number = %(block_number)s, log_index = %(log_index)s
WHERE chain_id = %(chain_id)s
  AND (block_number, log_index) > (%(block_number)s, %(log_index)s)
RETURNING chain_id

-- rewind_replays --
-- Running replays that reach past where the trigger engine resumes after a reorg deeper than
-- the confirmation depth. The events from there on are the live processor's again (its
-- cursor moves back there), and it fires them from an open-ended replay's start: such a
-- replay now ends there. (One with an end of its own keeps it: the live processor fires
-- none of the older events for it.) One that had replayed past it carries orphaned events
-- in its state and counts: it starts again from its beginning. The jobs it queued for events
-- that stay are not queued twice (the live insert skips an (event, action) that has one),
-- and its count of jobs keeps those it queued.
UPDATE trigger_replays AS r
SET end_block = CASE WHEN p.open_ended THEN %(block_number)s ELSE r.end_block END,
    end_log_index = CASE WHEN p.open_ended THEN %(log_index)s ELSE r.end_log_index END,
    cursor_block = CASE WHEN p.past THEN -1 ELSE r.cursor_block END,
    cursor_log_index = CASE WHEN p.past THEN -1 ELSE r.cursor_log_index END,
    state = CASE WHEN p.past THEN '{}' ELSE r.state END,
    last_fired_at = CASE WHEN p.past THEN NULL ELSE r.last_fired_at END,
    events = CASE WHEN p.past THEN 0 ELSE r.events END,
    firings = CASE WHEN p.past THEN 0 ELSE r.firings END
FROM (
    SELECT id, (cursor_block, cursor_log_index) > (%(block_number)s, %(log_index)s) AS past,
           to_block IS NULL AND to_time IS NULL AS open_ended
    FROM trigger_replays
    WHERE chain_id = %(chain_id)s AND status = 'running'
      AND (end_block, end_log_index) > (%(block_number)s, %(log_index)s)
) AS p
WHERE r.id = p.id

-- deployment_blocks --
-- The blocks this database's indexer found for the chain's registries (by address).
SELECT address, block_number
FROM registry_deployments
WHERE chain_id = %(chain_id)s

-- remember_deployment --
INSERT INTO registry_deployments (chain_id, address, block_number)
VALUES (%(chain_id)s, %(address)s, %(block_number)s)
ON CONFLICT (chain_id, address) DO UPDATE
SET block_number = EXCLUDED.block_number, found_at = now()

-- forget_deployments --
-- A chain started again from nothing (a devnet) deploys its registries at other blocks.
DELETE FROM registry_deployments
WHERE chain_id = %(chain_id)s
