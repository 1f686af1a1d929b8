-- list_events --
-- A page of events, newest first by (block_time, id), before the given (block_time, id).
-- Every filter is optional: with custom plans (the pool's plan_cache_mode) the absent ones
-- fold away and the plan uses the index of the ones given (chain, agent, client, validator,
-- registry and type, block or time); a time range also skips the partitions outside it.
-- The columns are the event's id and every EventRow column, numbers beyond 2^53 as text
-- (exact, no exponent) and bytes as 0x-hex: written out by events.py (EVENT_SELECT_LIST).
SELECT {event_columns}
FROM events e
WHERE {event_filters}
  -- A block range comes with the times it spans (block_range_times): inside them every
  -- event is in the range, so only the events at those very times need their block number
  -- checked, and the planner, which cannot know that block numbers follow block times,
  -- estimates the rows of the range from its times alone.
  AND (%(from_block)s::bigint IS NULL OR e.block_time > %(first_time)s::timestamptz
       OR e.block_number >= %(from_block)s::bigint)
  AND (%(to_block)s::bigint IS NULL OR e.block_time < %(last_time)s::timestamptz
       OR e.block_number <= %(to_block)s::bigint)
  AND (%(from_time)s::timestamptz IS NULL OR e.block_time >= %(from_time)s::timestamptz)
  AND (%(to_time)s::timestamptz IS NULL OR e.block_time <= %(to_time)s::timestamptz)
  -- The plain bound prunes partitions; the row comparison is the page boundary.
  AND (%(before_time)s::timestamptz IS NULL OR e.block_time <= %(before_time)s::timestamptz)
  AND (%(before_time)s::timestamptz IS NULL
       OR (e.block_time, e.id) < (%(before_time)s::timestamptz, %(before_id)s::bigint))
ORDER BY e.block_time DESC, e.id DESC
LIMIT %(limit)s

-- list_events_selective --
-- list_events for a filter that picks few events (an agent, a client or a validator:
-- `{selective}`, one of events_of_* below), planned once per pooled connection and kept
-- (generic_plans): planning list_events in every weekly partition cost more than reading
-- them (10-15 ms against 1-2 ms at two years of partitions). The statement's own condition
-- and the time bounds, never absent here (infinite instead), are what a kept plan can use:
-- its index in each partition, and the partitions outside the times skipped when it runs;
-- the other filters are checked on the few rows it reads.
SELECT {event_columns}
FROM events e
WHERE {selective}
  AND e.block_time >= %(from_time)s::timestamptz AND e.block_time <= %(to_time)s::timestamptz
  AND (e.block_time, e.id) < (%(before_time)s::timestamptz, %(before_id)s::bigint)
  AND {event_filters}
  AND (%(from_block)s::bigint IS NULL OR e.block_time > %(first_time)s::timestamptz
       OR e.block_number >= %(from_block)s::bigint)
  AND (%(to_block)s::bigint IS NULL OR e.block_time < %(last_time)s::timestamptz
       OR e.block_number <= %(to_block)s::bigint)
ORDER BY e.block_time DESC, e.id DESC
LIMIT %(limit)s

-- events_of_agent --
e.chain_id = %(chain_id)s::bigint AND e.agent_id = %(agent_id)s::numeric

-- events_of_client --
e.client_address = %(client_address)s::text

-- events_of_validator --
e.validator_address = %(validator_address)s::text

-- event_filters --
-- The filters of GET /events that compare a column with a value, each optional (NULL: any),
-- of `events e`: list_events, list_events_selective and the stream's stream_events.
(%(chain_id)s::bigint IS NULL OR e.chain_id = %(chain_id)s::bigint)
  AND (%(registry)s::text IS NULL OR e.registry = %(registry)s::text)
  AND (%(event_type)s::text IS NULL OR e.event_type = %(event_type)s::text)
  AND (%(agent_id)s::numeric IS NULL OR e.agent_id = %(agent_id)s::numeric)
  AND (%(client_address)s::text IS NULL OR e.client_address = %(client_address)s::text)
  AND (%(validator_address)s::text IS NULL
       OR e.validator_address = %(validator_address)s::text)

-- event_partition_starts --
-- Where each weekly partition of events begins, newest first. None on TimescaleDB: its
-- chunks inherit from events but are no partitions (no bound), and it prunes them itself.
SELECT bound.starts
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (
    SELECT (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                         'FROM \(''([^'']+)''\)'))[1]::timestamptz AS starts
) bound
WHERE i.inhparent = 'events'::regclass AND bound.starts IS NOT NULL
ORDER BY bound.starts DESC

-- block_range_times --
-- The block times of a chain's first event at or after from_block and of its last event at
-- or before to_block (null: none, or no such bound). A chain's block times never decrease
-- with its block numbers, so the events of the block range lie between these times: the
-- listing adds them as a time range, which skips the partitions outside it and lets the
-- planner, knowing how many events the range holds, either read them in time order from
-- the end of the range or collect a few and sort them.
SELECT CASE WHEN %(from_block)s::bigint IS NOT NULL THEN (
            SELECT b.block_time FROM events b
            WHERE b.chain_id = %(chain_id)s::bigint AND b.block_number >= %(from_block)s::bigint
            ORDER BY b.block_number
            LIMIT 1) END AS first_time,
       CASE WHEN %(to_block)s::bigint IS NOT NULL THEN (
            SELECT b.block_time FROM events b
            WHERE b.chain_id = %(chain_id)s::bigint AND b.block_number <= %(to_block)s::bigint
            ORDER BY b.block_number DESC
            LIMIT 1) END AS last_time

-- generic_plans --
-- For this transaction: prepared statements keep one plan for every parameter value.
SET LOCAL plan_cache_mode = force_generic_plan

-- event_by_id --
SELECT {event_columns}
FROM events e
WHERE e.id = %(event_id)s::bigint
LIMIT 1

-- list_action_results --
-- A page of the user's delivery attempts, newest first by (executed_at, id), each with its
-- job when the job still exists.
SELECT r.id, r.trigger_id, r.action_id, r.event_id, r.chain_id, r.action_type, r.status,
       r.retry_count, r.duration_ms, r.error_message, r.response_data, r.executed_at,
       j.id AS job_id, j.status AS job_status, j.attempts AS job_attempts,
       j.max_attempts AS job_max_attempts, j.run_at AS job_run_at,
       j.last_error AS job_last_error, j.finished_at AS job_finished_at,
       j.retraction AS job_retraction
FROM action_results r
LEFT JOIN action_jobs j ON j.id = r.job_id
WHERE r.user_id = %(user_id)s::uuid
  AND (%(trigger_id)s::uuid IS NULL OR r.trigger_id = %(trigger_id)s::uuid)
  AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
  AND (%(from_time)s::timestamptz IS NULL OR r.executed_at >= %(from_time)s::timestamptz)
  AND (%(to_time)s::timestamptz IS NULL OR r.executed_at <= %(to_time)s::timestamptz)
  AND (%(before_time)s::timestamptz IS NULL
       OR (r.executed_at, r.id) < (%(before_time)s::timestamptz, %(before_id)s::bigint))
ORDER BY r.executed_at DESC, r.id DESC
LIMIT %(limit)s

-- action_result_by_id --
SELECT r.id, r.trigger_id, r.action_id, r.event_id, r.chain_id, r.action_type, r.status,
       r.retry_count, r.duration_ms, r.error_message, r.response_data, r.executed_at,
       j.id AS job_id, j.status AS job_status, j.attempts AS job_attempts,
       j.max_attempts AS job_max_attempts, j.run_at AS job_run_at,
       j.last_error AS job_last_error, j.finished_at AS job_finished_at,
       j.retraction AS job_retraction
FROM action_results r
LEFT JOIN action_jobs j ON j.id = r.job_id
WHERE r.id = %(result_id)s::bigint AND r.user_id = %(user_id)s::uuid

-- job_attempts --
-- Every attempt of one job that the user owns, in the order they ran.
SELECT r.id, r.trigger_id, r.action_id, r.event_id, r.chain_id, r.action_type, r.status,
       r.retry_count, r.duration_ms, r.error_message, r.response_data, r.executed_at
FROM action_results r
WHERE r.job_id = %(job_id)s::bigint AND r.user_id = %(user_id)s::uuid
ORDER BY r.executed_at, r.id
