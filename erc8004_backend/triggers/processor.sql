-- lock_chain --
-- One processor per chain at a time; several processors split the chains between them.
SELECT pg_try_advisory_lock(hashtextextended('erc8004 processor ' || %(chain_id)s::text, 0))

-- unlock_chain --
SELECT pg_advisory_unlock(hashtextextended('erc8004 processor ' || %(chain_id)s::text, 0))

-- chains_with_events --
SELECT chain_id FROM checkpoints WHERE confirmed_block_number IS NOT NULL ORDER BY chain_id

-- triggers_with_rules --
-- Triggers with their conditions and actions: every enabled one (for the in-memory index),
-- or, given an id, that one whatever its state (for backtests). A condition naming a saved
-- lens (config.lens_name) comes with the owner's lens of that name (null: none).
SELECT t.id, t.name, t.chain_id, t.registry, t.cooldown_seconds, t.fires_from,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'position', c.position, 'condition_type', c.condition_type,
                    'field', c.field, 'operator', c.operator, 'value', c.value,
                    'config', c.config, 'group_path', c.group_path,
                    'saved_lens', (SELECT l.definition FROM reputation_lenses l
                                   WHERE l.user_id = t.user_id
                                     AND l.name = c.config ->> 'lens_name')))
                 FROM trigger_conditions c WHERE c.trigger_id = t.id), '[]') AS conditions,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'id', a.id, 'position', a.position, 'action_type', a.action_type,
                    'priority', a.priority, 'max_attempts', a.config->'max_attempts'))
                 FROM trigger_actions a WHERE a.trigger_id = t.id), '[]') AS actions
FROM triggers t
WHERE CASE WHEN %(trigger_id)s::uuid IS NULL THEN t.enabled AND t.disabled_at IS NULL
           ELSE t.id = %(trigger_id)s::uuid END

-- lock_cursor --
-- The processed mark, locked for the batch: it moves in the same transaction as the jobs.
SELECT block_number, log_index FROM processing_cursors WHERE chain_id = %(chain_id)s FOR UPDATE

-- cursor --
-- Where the processed mark is, unlocked: where batches planned ahead start (process_chain);
-- each checks it again, locked, before it is written.
SELECT block_number, log_index FROM processing_cursors WHERE chain_id = %(chain_id)s

-- lock_cursor_ahead --
-- lock_cursor for a batch planned ahead (process_chain), and whether its last event (if it
-- has events) is still stored: a reorg deletes every event above its fork. The event's
-- block time finds its partition.
SELECT c.block_number, c.log_index,
       %(id)s::bigint IS NULL OR EXISTS (SELECT 1 FROM events AS e
                                        WHERE e.id = %(id)s::bigint
                                          AND e.block_time = %(block_time)s::timestamptz)
FROM processing_cursors AS c
WHERE c.chain_id = %(chain_id)s
FOR UPDATE OF c

-- insert_cursor --
INSERT INTO processing_cursors (chain_id, block_number, log_index)
VALUES (%(chain_id)s, -1, -1)
ON CONFLICT (chain_id) DO NOTHING

-- sort_off --
-- Only around ready_events: its one good plan is each partition's (chain, block, log index)
-- index read in order and merged, which stops after `limit` rows. Estimates from stale
-- statistics (a backfill inserts faster than autovacuum analyzes) pick a bitmap scan of every
-- event after the cursor and a sort instead: 30 ms a batch at 80,000 events to go, and
-- quadratic over a backfill.
SET LOCAL enable_sort = off

-- sort_on --
SET LOCAL enable_sort = on

-- ready_events --
-- Confirmed events after the cursor, in chain order: the columns plan_batch, the summary and
-- change reads and the jobs use (fields.FIELDS, with id and block_time; the test
-- test_ready_events_hold_every_field keeps them together), not `data` or `created_at`,
-- which would cost a JSON parse and a datetime per event for nothing.
SELECT e.id, e.chain_id, e.registry, e.event_type, e.block_number, e.block_hash, e.block_time,
       e.transaction_hash, e.log_index, e.agent_id, e.owner, e.token_uri, e.metadata_key,
       e.metadata_value, e.from_address, e.to_address, e.updated_by, e.client_address,
       e.feedback_index, e.value, e.value_decimals, e.score, e.tag1, e.tag2, e.endpoint,
       e.file_uri, e.file_hash, e.responder, e.response_uri, e.response_hash,
       e.validator_address, e.request_hash, e.request_uri, e.response, e.tag
FROM events e
WHERE e.chain_id = %(chain_id)s
  AND (e.block_number, e.log_index) > (%(block_number)s, %(log_index)s)
  AND e.block_number <= (SELECT c.confirmed_block_number FROM checkpoints c
                         WHERE c.chain_id = %(chain_id)s)
ORDER BY e.block_number, e.log_index
LIMIT %(limit)s

-- load_states --
SELECT trigger_id::text, scope, state
FROM trigger_state
WHERE (trigger_id, scope) IN (SELECT * FROM unnest(%(trigger_ids)b::uuid[], %(scopes)b::text[]))

-- last_fired --
SELECT id::text, last_fired_at FROM triggers WHERE id = ANY(%(trigger_ids)b::uuid[])

-- confirmed_head --
-- How far the chain's time has come: the latest confirmed block whose time the indexer
-- keeps (indexed_blocks holds the blocks near the head).
SELECT b.block_number, b.block_time
FROM checkpoints AS c
JOIN LATERAL (SELECT block_number, block_time FROM indexed_blocks AS b
              WHERE b.chain_id = c.chain_id AND b.block_number <= c.confirmed_block_number
              ORDER BY b.block_number DESC LIMIT 1) AS b ON true
WHERE c.chain_id = %(chain_id)s

-- due_silences --
-- The silent periods of these triggers due by a time (Unix seconds of block time): the
-- partial index on the state's due time (migration 29) finds them.
SELECT trigger_id::text, scope, state
FROM trigger_state
WHERE trigger_id = ANY (%(trigger_ids)s::uuid[])
  AND state -> 'silence' ? 'due'
  AND (state -> 'silence' ->> 'due')::double precision <= %(until)s

-- save_states --
INSERT INTO trigger_state (trigger_id, scope, state, last_block_number, last_log_index)
SELECT trigger_id, scope, state, block_number, log_index
FROM unnest(%(trigger_ids)b::uuid[], %(scopes)b::text[], %(states)b::jsonb[],
            %(block_numbers)b::bigint[], %(log_indexes)b::int[])
     AS s(trigger_id, scope, state, block_number, log_index)
ON CONFLICT (trigger_id, scope) DO UPDATE
SET state = EXCLUDED.state,
    last_block_number = EXCLUDED.last_block_number,
    last_log_index = EXCLUDED.last_log_index

-- reorg_window_start --
-- The oldest block whose hash the indexer keeps for the chain: a reorg can reach no deeper
-- (NULL: none kept). A batch ending below it needs no undo record.
SELECT min(block_number) FROM indexed_blocks WHERE chain_id = %(chain_id)s

-- remember_states --
-- Before a batch near the head moves trigger state: each (trigger, scope) as it was (NULL
-- state: absent), for a reorg that orphans the batch's events to restore.
INSERT INTO trigger_state_undo (chain_id, batch_block, batch_log_index, batch_last_block,
                                trigger_id, scope, previous_state, previous_block,
                                previous_log_index)
SELECT %(chain_id)s, %(batch_block)s, %(batch_log_index)s, %(batch_last_block)s,
       k.trigger_id, k.scope, s.state, s.last_block_number, s.last_log_index
FROM unnest(%(trigger_ids)b::uuid[], %(scopes)b::text[]) AS k(trigger_id, scope)
LEFT JOIN trigger_state AS s ON s.trigger_id = k.trigger_id AND s.scope = k.scope

-- remember_last_fired --
-- Likewise each trigger's last firing, before the batch moves it (scope NULL).
INSERT INTO trigger_state_undo (chain_id, batch_block, batch_log_index, batch_last_block,
                                trigger_id, previous_fired_at)
SELECT %(chain_id)s, %(batch_block)s, %(batch_log_index)s, %(batch_last_block)s,
       t.id, t.last_fired_at
FROM triggers AS t
WHERE t.id = ANY (%(trigger_ids)b::uuid[])

-- prune_undo --
-- Undo records no reorg can reach any more: their batch ended below the reorg window.
DELETE FROM trigger_state_undo
WHERE chain_id = %(chain_id)s AND batch_last_block < %(window_start)s

-- insert_jobs --
-- Exactly one job per (event, action), or per (silent period, action) for a silence (its
-- silence_key; its event_id is the event that started the period, if one did): a replayed
-- batch inserts nothing twice. An action without its own max_attempts gets the column's
-- default (8). The arrays are sent in binary (placeholder "b"): a text array escapes every
-- quote of every JSON document, in Python, at about 70 us a payload (a seventh of
-- `erc8004 run`'s CPU at 500 events/s), and the ids travel as 16 bytes instead of text for
-- the server to parse. A replay's jobs are marked `replay`.
INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, priority, idempotency_key,
                         payload, max_attempts, silence_key, replay)
SELECT trigger_id, action_id, event_id, %(chain_id)s, priority, idempotency_key, payload,
       coalesce(max_attempts, 8), silence_key, %(replay)s
FROM unnest(%(trigger_ids)b::uuid[], %(action_ids)b::uuid[], %(event_ids)b::bigint[],
            %(priorities)b::int[], %(keys)b::text[], %(payloads)b::jsonb[],
            %(max_attempts)b::int[], %(silence_keys)s::text[])
     AS j(trigger_id, action_id, event_id, priority, idempotency_key, payload, max_attempts,
          silence_key)
ON CONFLICT DO NOTHING

-- copy_jobs --
-- Live events' jobs (processor.queue_new_jobs), in binary, in a savepoint: no (event,
-- action) can have one yet, and should one have it all the same, the unique key fails the
-- whole COPY and insert_jobs takes over.
COPY action_jobs (trigger_id, action_id, event_id, chain_id, priority, idempotency_key, payload,
                  max_attempts)
FROM STDIN (FORMAT BINARY)

-- mark_fired --
-- The rows locked first, in id order, as the worker's circuit breaker (feed_circuit_breakers)
-- locks them: a batch and a worker's recording that share triggers wait for each other
-- instead of deadlocking (the UPDATE alone takes them in whatever order its join reads).
WITH fired AS (
    SELECT t.id, f.fired_at
    FROM unnest(%(trigger_ids)b::uuid[], %(fired_at)b::timestamptz[]) AS f(id, fired_at)
    JOIN triggers AS t ON t.id = f.id
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
)
UPDATE triggers AS t
SET last_fired_at = fired.fired_at
FROM fired
WHERE t.id = fired.id

-- advance_cursor --
UPDATE processing_cursors
SET block_number = %(block_number)s, log_index = %(log_index)s
WHERE chain_id = %(chain_id)s

-- backtest_events --
-- A trigger's chain and registry in a block and time range, in chain order.
SELECT *
FROM events
WHERE chain_id = %(chain_id)s AND registry = %(registry)s
  AND block_number BETWEEN %(from_block)s AND %(to_block)s
  AND block_time BETWEEN %(from_time)s AND %(to_time)s
ORDER BY block_number, log_index
LIMIT %(limit)s

-- backtest_actions --
-- A trigger's actions with their configs, in the order their jobs are delivered, for the
-- backtest's previews of what each would send.
SELECT id::text, action_type, priority, config
FROM trigger_actions
WHERE trigger_id = %(trigger_id)s
ORDER BY priority, position
