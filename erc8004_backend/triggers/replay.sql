-- pending_replays --
-- The replays of a chain the processor has not taken up yet, of triggers that are on (a
-- replay of a trigger that is off, by its owner or its circuit breaker, waits).
SELECT r.id
FROM trigger_replays r
JOIN triggers t ON t.id = r.trigger_id
WHERE r.chain_id = %(chain_id)s AND r.status = 'pending'
  AND t.enabled AND t.disabled_at IS NULL
ORDER BY r.id

-- start_replay --
-- Taken up: its end is the chain's processing cursor now (the processor holds the chain, so
-- the cursor stays there until it has reloaded its triggers); every later event is the live
-- processor's business.
UPDATE trigger_replays r
SET status = 'running',
    end_block = coalesce(p.block_number, -1),
    end_log_index = coalesce(p.log_index, -1)
FROM (SELECT %(chain_id)s::bigint AS chain_id) AS c
LEFT JOIN processing_cursors p ON p.chain_id = c.chain_id
WHERE r.id = %(replay_id)s AND r.status = 'pending'
RETURNING r.trigger_id, r.from_block, r.from_time, r.to_block IS NULL AND r.to_time IS NULL

-- replay_start_time --
-- The block time a replay from a block starts at: its first stored event's (NULL: none).
SELECT block_time
FROM events
WHERE chain_id = %(chain_id)s AND block_number >= %(from_block)s
ORDER BY block_number, log_index
LIMIT 1

-- fire_from_replay_start --
-- Events after the replay's end that the processor has not passed yet but that are older than
-- the trigger's start fire live too: the history asked for reaches them. (Setting fires_from
-- itself is what the hardening rule's trigger leaves as it is.)
UPDATE triggers
SET fires_from = %(start_time)s
WHERE id = %(trigger_id)s AND fires_from > %(start_time)s

-- running_replays --
SELECT id FROM trigger_replays
WHERE chain_id = %(chain_id)s AND status = 'running'
ORDER BY id

-- lock_replay --
-- A running replay with what its next batch needs, locked for the batch: its progress moves
-- in the same transaction as its jobs. None while its trigger is off (it waits).
SELECT r.trigger_id::text, r.from_block, r.from_time, r.to_block, r.to_time, r.end_block,
       r.end_log_index, r.cursor_block, r.cursor_log_index, r.state, r.last_fired_at
FROM trigger_replays r
JOIN triggers t ON t.id = r.trigger_id
WHERE r.id = %(replay_id)s AND r.status = 'running' AND t.enabled AND t.disabled_at IS NULL
FOR UPDATE OF r

-- replay_events --
-- The next events of a replay: its trigger's chain and registry, after its cursor, up to its
-- end, within its range (from its start, to its own end if it has one), in chain order.
SELECT *
FROM events
WHERE chain_id = %(chain_id)s AND registry = %(registry)s
  AND (block_number, log_index) > (%(cursor_block)s, %(cursor_log_index)s)
  AND (block_number, log_index) <= (%(end_block)s, %(end_log_index)s)
  AND block_number >= coalesce(%(from_block)s::bigint, 0)
  AND block_time >= coalesce(%(from_time)s::timestamptz, '-infinity')
  AND block_number <= coalesce(%(to_block)s::bigint, 9223372036854775807)
  AND block_time <= coalesce(%(to_time)s::timestamptz, 'infinity')
ORDER BY block_number, log_index
LIMIT %(limit)s

-- advance_replay --
UPDATE trigger_replays
SET cursor_block = %(cursor_block)s, cursor_log_index = %(cursor_log_index)s,
    state = %(state)s, last_fired_at = %(last_fired_at)s,
    events = events + %(events)s, firings = firings + %(firings)s, jobs = jobs + %(jobs)s,
    status = CASE WHEN %(done)s THEN 'done' ELSE status END,
    finished_at = CASE WHEN %(done)s THEN now() END
WHERE id = %(replay_id)s

-- cancel_replay_broken --
-- The trigger no longer parses (a hand-written row): the replay cannot go on.
UPDATE trigger_replays
SET status = 'cancelled', error = %(error)s, finished_at = now()
WHERE id = %(replay_id)s

-- processing_cursor --
-- Where a replay requested now would end (the live processor's mark; -1: nothing yet).
SELECT coalesce(max(block_number), -1) AS block_number, coalesce(max(log_index), -1) AS log_index
FROM processing_cursors
WHERE chain_id = %(chain_id)s

-- existing_jobs --
-- Of a trigger's actions, those that have a job for each of the events (retractions aside).
SELECT event_id, count(*) AS jobs
FROM action_jobs
WHERE trigger_id = %(trigger_id)s AND event_id = ANY (%(event_ids)s::bigint[]) AND NOT retraction
GROUP BY event_id

-- request_replay --
-- A replay of any trigger (the operator's command line; the API's is the owner's), and the
-- processor woken to take it up.
WITH inserted AS (
    INSERT INTO trigger_replays (trigger_id, chain_id, from_block, from_time, to_block, to_time)
    SELECT id, chain_id, %(from_block)s, %(from_time)s, %(to_block)s, %(to_time)s
    FROM triggers WHERE id = %(trigger_id)s
    RETURNING id, trigger_id
)
SELECT id, pg_notify('trigger_changed', trigger_id::text) IS NOT NULL AS notified
FROM inserted
