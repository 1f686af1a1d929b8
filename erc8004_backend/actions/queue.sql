-- claim_jobs --
-- Due jobs taken under a lease: status 'running', this attempt counted, locked_until ahead.
-- SKIP LOCKED lets many workers claim at once without waiting for or taking each other's
-- rows. A job goes through one of its trigger's actions, or (an alert) its owner's account
-- alert action. Which jobs, in which order: claim_candidates (migration 47), each account's
-- most urgent within its share of this worker's slots first, then anyone's.
WITH candidates AS MATERIALIZED (  -- once, not once per row
    SELECT claim_candidates(%(limit)s::int, %(per_account)s::int, %(running_accounts)s::uuid[],
                            %(running_deliveries)s::int[]) AS ids
), due AS (
    SELECT j.id
    FROM candidates AS c
    CROSS JOIN unnest(c.ids) WITH ORDINALITY AS u(id, place)
    JOIN action_jobs AS j ON j.id = u.id
    WHERE j.status = 'queued' AND j.run_at <= now()
    ORDER BY u.place
    LIMIT %(limit)s
    FOR UPDATE OF j SKIP LOCKED
), claimed AS (
    UPDATE action_jobs AS j
    SET status = 'running',
        attempts = j.attempts + 1,
        locked_by = %(worker)s,
        locked_until = now() + make_interval(secs => %(lease_seconds)s)
    FROM due
    WHERE j.id = due.id
    RETURNING j.id, j.trigger_id, j.action_id, j.alert_action_id, j.event_id, j.chain_id,
              j.attempts, j.max_attempts, j.idempotency_key, j.payload
)
SELECT j.id, j.trigger_id::text, t.name, t.user_id::text,
       coalesce(j.action_id, j.alert_action_id)::text, coalesce(a.action_type, al.action_type),
       coalesce(a.config, al.config), j.event_id, j.chain_id, j.attempts, j.max_attempts,
       j.idempotency_key, j.payload, t.webhook_secret, t.webhook_secret_key_id
FROM claimed AS j
JOIN triggers AS t ON t.id = j.trigger_id
LEFT JOIN trigger_actions AS a ON a.id = j.action_id
LEFT JOIN account_alert_actions AS al ON al.id = j.alert_action_id

-- next_run_at --
-- When the next queued job falls due (NULL: none queued), so an idle worker sleeps until then.
SELECT min(run_at) FROM action_jobs WHERE status = 'queued'

-- record_attempts --
-- The outcomes of a batch of attempts: each job moves on ('succeeded', 'dead', or back to
-- 'queued' with a later run_at) if this worker still holds it at that attempt, and every
-- attempt gets its action_results row even if the lease was lost meanwhile. Rows whose
-- trigger or action was deleted during the attempt keep NULLs there, as deletes leave them.
-- A job whose event a reorg orphaned during the attempt (reorged_out, migration 41) is not
-- tried again ('cancelled' instead of 'queued'), and delivered, gets the retraction its
-- action asks for, as store.sql's queue_retractions gives a job delivered before the reorg.
WITH outcome AS (
    -- One JSON array of the outcomes: encoded in one call, where fourteen arrays of
    -- parameters cost a quarter of a busy worker's CPU to send.
    SELECT *
    FROM jsonb_to_recordset(%(outcomes)s::jsonb)
         AS o(job_id bigint, attempt int, next_status text, retry_in float8, error text,
              result_status text, duration_ms int, response jsonb, user_id uuid,
              trigger_id uuid, action_id uuid, event_id bigint, chain_id bigint,
              action_type text, counted boolean)
), moved AS (
    UPDATE action_jobs AS j
    SET status = CASE WHEN j.reorged_out AND o.next_status = 'queued' THEN 'cancelled'
                      ELSE o.next_status END,
        -- An attempt that sent nothing for want of a send slot is given back.
        attempts = CASE WHEN o.counted THEN j.attempts ELSE j.attempts - 1 END,
        run_at = CASE WHEN o.next_status = 'queued' AND NOT j.reorged_out
                      THEN now() + make_interval(secs => o.retry_in) ELSE j.run_at END,
        locked_by = NULL,
        locked_until = NULL,
        last_error = CASE WHEN j.reorged_out AND o.next_status = 'queued'
                          THEN o.error || ' (reorged out: not tried again)' ELSE o.error END,
        finished_at = CASE WHEN o.next_status IN ('succeeded', 'dead') OR j.reorged_out
                           THEN now() END,
        -- A digest that dies takes no more firings (see release_expired_leases).
        digest_open = j.digest_open AND o.next_status <> 'dead'
    FROM outcome AS o
    WHERE j.id = o.job_id AND j.status = 'running' AND j.locked_by = %(worker)s
      AND j.attempts = o.attempt
    RETURNING j.id, j.status, j.reorged_out, j.trigger_id, j.action_id, j.event_id,
              j.chain_id, j.priority, j.idempotency_key, j.payload, j.max_attempts, j.replay
), retracted AS (
    INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, priority,
                             idempotency_key, payload, max_attempts, retraction, replay)
    SELECT m.trigger_id, m.action_id, m.event_id, m.chain_id, m.priority, m.idempotency_key,
           m.payload || '{"retracted": true}', m.max_attempts, true, m.replay
    FROM moved AS m
    JOIN trigger_actions AS a ON a.id = m.action_id
    WHERE m.reorged_out AND m.status = 'succeeded'
      AND a.config @> '{"notify_retractions": true}'
    ON CONFLICT (event_id, action_id, retraction) DO NOTHING
), recorded AS (
    INSERT INTO action_results (job_id, user_id, trigger_id, action_id, event_id, chain_id,
                                action_type, status, retry_count, duration_ms, error_message,
                                response_data)
    SELECT j.id, u.id, t.id, a.id, o.event_id, o.chain_id, o.action_type,
           CASE WHEN m.status = 'cancelled' THEN 'cancelled' ELSE o.result_status END,
           o.attempt - 1, o.duration_ms, o.error, o.response
    FROM outcome AS o
    LEFT JOIN moved AS m ON m.id = o.job_id
    LEFT JOIN action_jobs AS j ON j.id = o.job_id
    LEFT JOIN users AS u ON u.id = o.user_id
    LEFT JOIN triggers AS t ON t.id = o.trigger_id
    LEFT JOIN trigger_actions AS a ON a.id = o.action_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM recorded)

-- feed_circuit_breakers --
-- Finished deliveries per trigger, in order: `reset` when one succeeded, `failures` dead
-- jobs after the last success. Reaching failure_threshold disables the trigger, says why,
-- and tells trigger engines (the disabled columns do not notify by themselves).
WITH fed AS (
    SELECT *
    FROM unnest(%(trigger_ids)s::uuid[], %(resets)s::boolean[], %(failures)s::int[],
                %(errors)s::text[]) AS f(trigger_id, reset, failures, error)
), counted AS (
    -- Locked (in one order), so that two workers feeding one trigger at once count on each
    -- other's result: the second reads the row the first wrote, and only one of them opens
    -- the breaker (and queues its one owner alert). NO KEY UPDATE, as the UPDATE below takes:
    -- the key-share locks that the batch's action_results took on their triggers (foreign
    -- keys) do not conflict with it, so two recorders cannot deadlock on them.
    SELECT t.id, t.failure_threshold, t.disabled_at IS NULL AS was_enabled, f.failures, f.error,
           CASE WHEN f.reset THEN f.failures ELSE t.consecutive_failures + f.failures END AS n
    FROM fed AS f JOIN triggers AS t ON t.id = f.trigger_id
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
), updated AS (
    UPDATE triggers AS t
    SET consecutive_failures = c.n,
        disabled_at = CASE WHEN c.was_enabled AND c.failures > 0 AND c.n >= c.failure_threshold
                           THEN now() ELSE t.disabled_at END,
        disabled_reason = CASE
            WHEN c.was_enabled AND c.failures > 0 AND c.n >= c.failure_threshold
            THEN format('circuit breaker: %%s consecutive failed deliveries, the last: %%s',
                        c.n, c.error)
            ELSE t.disabled_reason END
    FROM counted AS c
    WHERE t.id = c.id
    RETURNING t.id, c.was_enabled AND t.disabled_at IS NOT NULL AS tripped
)
SELECT id::text, pg_notify('trigger_changed', id::text) IS NOT NULL
FROM updated
WHERE tripped

-- release_expired_leases --
-- Jobs whose worker stopped without finishing (killed, or cut off from the database) go back
-- to the queue when their lease ends, or to the dead letters if that was their last attempt
-- (cancelled, if a reorg orphaned their event meanwhile: migration 41).
-- The lost attempt counts, and its action_results row says what happened. A lost attempt
-- may have reached its target, so a cancelled one gets the retraction its action asks for,
-- as a delivered one does in record_attempts: a retraction of something never received is
-- noise, a missing one leaves a receiver believing an event the chain no longer has.
WITH expired AS (
    SELECT id
    FROM action_jobs
    WHERE status = 'running' AND locked_until < now()
    ORDER BY locked_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), released AS (
    UPDATE action_jobs AS j
    SET status = CASE WHEN j.reorged_out THEN 'cancelled'
                      WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
        run_at = now(),
        locked_by = NULL,
        locked_until = NULL,
        last_error = format('worker %%s stopped before finishing attempt %%s (its lease expired)',
                            j.locked_by, j.attempts)
                     || CASE WHEN j.reorged_out THEN ' (reorged out: not tried again)' ELSE '' END,
        finished_at = CASE WHEN j.attempts >= j.max_attempts OR j.reorged_out THEN now() END,
        -- A digest that dies before its first attempt closed it takes no more firings: a
        -- late firing of its window starts a digest of its own instead of joining one that
        -- will not be sent (a redelivery sends the dead one with what it holds).
        digest_open = j.digest_open AND j.attempts < j.max_attempts
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.trigger_id, j.action_id, j.alert_action_id, j.event_id, j.chain_id,
              j.status, j.attempts, j.last_error, j.priority, j.idempotency_key, j.payload,
              j.max_attempts, j.replay, j.retraction
), retracted AS (
    INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, priority,
                             idempotency_key, payload, max_attempts, retraction, replay)
    SELECT r.trigger_id, r.action_id, r.event_id, r.chain_id, r.priority, r.idempotency_key,
           r.payload || '{"retracted": true}', r.max_attempts, true, r.replay
    FROM released AS r
    JOIN trigger_actions AS a ON a.id = r.action_id
    WHERE r.status = 'cancelled' AND NOT r.retraction
      AND a.config @> '{"notify_retractions": true}'
    ON CONFLICT (event_id, action_id, retraction) DO NOTHING
)
INSERT INTO action_results (job_id, user_id, trigger_id, action_id, event_id, chain_id,
                            action_type, status, retry_count, error_message)
SELECT r.id, t.user_id, r.trigger_id, r.action_id, r.event_id, r.chain_id,
       coalesce(a.action_type, al.action_type),
       CASE r.status WHEN 'dead' THEN 'failed' WHEN 'cancelled' THEN 'cancelled'
                     ELSE 'retrying' END, r.attempts - 1,
       r.last_error
FROM released AS r
JOIN triggers AS t ON t.id = r.trigger_id
LEFT JOIN trigger_actions AS a ON a.id = r.action_id
LEFT JOIN account_alert_actions AS al ON al.id = r.alert_action_id
RETURNING job_id

-- dead_jobs --
-- The dead letters, newest first.
SELECT j.id, j.trigger_id::text, t.name, coalesce(a.action_type, al.action_type), j.event_id,
       j.chain_id, j.attempts, j.last_error, j.finished_at
FROM action_jobs AS j
JOIN triggers AS t ON t.id = j.trigger_id
LEFT JOIN trigger_actions AS a ON a.id = j.action_id
LEFT JOIN account_alert_actions AS al ON al.id = j.alert_action_id
WHERE j.status = 'dead'
ORDER BY j.finished_at DESC, j.id DESC
LIMIT %(limit)s

-- redeliver_jobs --
-- Finished jobs queued again with a fresh set of attempts and their idempotency key (their
-- past results stay): those named, or a trigger's made in a time range, in the given
-- statuses (delivered 'succeeded', 'dead'), of one user (NULL: the operator's, any user's).
-- Cancelled jobs are never among them: their events were reorged out.
WITH redelivered AS (
    UPDATE action_jobs AS j
    SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL, last_error = NULL,
        locked_by = NULL, locked_until = NULL
    FROM triggers AS t
    WHERE t.id = j.trigger_id
      AND (%(user_id)s::uuid IS NULL OR t.user_id = %(user_id)s::uuid)
      AND (%(job_ids)s::bigint[] IS NULL OR j.id = ANY (%(job_ids)s::bigint[]))
      AND (%(trigger_id)s::uuid IS NULL OR j.trigger_id = %(trigger_id)s::uuid)
      AND j.status = ANY (%(statuses)s::text[]) AND j.status <> 'cancelled'
      AND (%(from_time)s::timestamptz IS NULL OR j.created_at >= %(from_time)s::timestamptz)
      AND (%(to_time)s::timestamptz IS NULL OR j.created_at <= %(to_time)s::timestamptz)
    RETURNING j.id
)
SELECT id, pg_notify('action_job', '') IS NOT NULL FROM redelivered ORDER BY id

-- job_statuses --
SELECT id, status FROM action_jobs WHERE id = ANY(%(job_ids)s::bigint[])
