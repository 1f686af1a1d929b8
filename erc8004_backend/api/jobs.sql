-- list_jobs --
-- A page of the user's jobs, newest first (by id), with the state a person asks about:
-- queued (not tried yet), retrying (tried, due again), running, delivered, dead, cancelled,
-- digested (sent in a digest: digest_job_id); those a replay queued, or those it did not
-- (NULL: both). Alerts to the account's alert action have no action of the trigger
-- (action_id NULL).
SELECT j.id, j.trigger_id, j.action_id, coalesce(a.action_type, al.action_type) AS action_type,
       j.event_id, j.chain_id,
       CASE WHEN j.status = 'queued' AND j.attempts > 0 THEN 'retrying'
            WHEN j.status = 'succeeded' THEN 'delivered'
            ELSE j.status END AS state,
       j.attempts, j.max_attempts, j.run_at, j.last_error, j.created_at, j.finished_at,
       j.retraction, j.replay, j.idempotency_key, j.digest_job_id
FROM action_jobs AS j
JOIN triggers AS t ON t.id = j.trigger_id
LEFT JOIN trigger_actions AS a ON a.id = j.action_id
LEFT JOIN account_alert_actions AS al ON al.id = j.alert_action_id
WHERE t.user_id = %(user_id)s::uuid
  AND (%(trigger_id)s::uuid IS NULL OR j.trigger_id = %(trigger_id)s::uuid)
  AND (%(action_id)s::uuid IS NULL OR j.action_id = %(action_id)s::uuid)
  AND (%(replay)s::boolean IS NULL OR j.replay = %(replay)s::boolean)
  AND (%(state)s::text IS NULL
       OR j.status = CASE %(state)s::text WHEN 'delivered' THEN 'succeeded'
                                          WHEN 'retrying' THEN 'queued'
                                          ELSE %(state)s::text END
          AND (%(state)s::text NOT IN ('queued', 'retrying')
               OR (j.attempts > 0) = (%(state)s::text = 'retrying')))
  AND (%(from_time)s::timestamptz IS NULL OR j.created_at >= %(from_time)s::timestamptz)
  AND (%(to_time)s::timestamptz IS NULL OR j.created_at <= %(to_time)s::timestamptz)
  AND (%(before_id)s::bigint IS NULL OR j.id < %(before_id)s::bigint)
ORDER BY j.id DESC
LIMIT %(limit)s

-- job_by_id --
SELECT j.id, j.trigger_id, j.action_id, coalesce(a.action_type, al.action_type) AS action_type,
       j.event_id, j.chain_id,
       CASE WHEN j.status = 'queued' AND j.attempts > 0 THEN 'retrying'
            WHEN j.status = 'succeeded' THEN 'delivered'
            ELSE j.status END AS state,
       j.attempts, j.max_attempts, j.run_at, j.last_error, j.created_at, j.finished_at,
       j.retraction, j.replay, j.idempotency_key, j.digest_job_id, j.payload
FROM action_jobs AS j
JOIN triggers AS t ON t.id = j.trigger_id
LEFT JOIN trigger_actions AS a ON a.id = j.action_id
LEFT JOIN account_alert_actions AS al ON al.id = j.alert_action_id
WHERE j.id = %(job_id)s::bigint AND t.user_id = %(user_id)s::uuid

-- trigger_owned --
SELECT 1 FROM triggers WHERE id = %(trigger_id)s::uuid AND user_id = %(user_id)s::uuid

-- action_for_test --
-- One of the user's actions with what a delivery of it needs from its trigger.
SELECT t.id::text AS trigger_id, t.name AS trigger_name, t.chain_id, t.registry,
       t.webhook_secret, t.webhook_secret_key_id, a.id::text AS action_id, a.action_type,
       a.config
FROM trigger_actions AS a
JOIN triggers AS t ON t.id = a.trigger_id
WHERE a.id = %(action_id)s::uuid AND t.id = %(trigger_id)s::uuid AND t.user_id = %(user_id)s::uuid

-- record_test --
-- A test delivery's attempt, in the audit trail beside the others (no job, no event).
INSERT INTO action_results (user_id, trigger_id, action_id, chain_id, action_type, status,
                            duration_ms, error_message, response_data)
VALUES (%(user_id)s::uuid, %(trigger_id)s::uuid, %(action_id)s::uuid, %(chain_id)s,
        %(action_type)s, %(status)s, %(duration_ms)s, %(error)s, %(response)s)
RETURNING id

-- delivery_counts --
-- Per trigger of the user, its delivery attempts since a time: those that delivered and
-- those that failed (test deliveries included; a retried job counts each attempt). Firings
-- folded into a digest, and jobs a reorg cancelled, are neither.
SELECT trigger_id,
       count(*) FILTER (WHERE status = 'success') AS succeeded,
       count(*) FILTER (WHERE status IN ('failed', 'retrying')) AS failed
FROM action_results
WHERE user_id = %(user_id)s::uuid AND executed_at >= %(since)s::timestamptz
  AND trigger_id IS NOT NULL
GROUP BY trigger_id
ORDER BY trigger_id
