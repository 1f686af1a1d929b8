-- queue_breaker_alerts --
-- One alert job per trigger whose circuit breaker these deliveries opened, to its owner's
-- account alert action if they named one; in the transaction that opened the breaker, so
-- that it is queued exactly when the breaker opens. The key names the trigger and when its
-- breaker opened: the unique index (migration 34) refuses a second one for that opening.
INSERT INTO action_jobs (trigger_id, alert_action_id, chain_id, priority, idempotency_key,
                         payload, max_attempts)
SELECT t.id, al.id, t.chain_id, 1,
       format('breaker-%%s-%%s', t.id, (extract(epoch FROM t.disabled_at) * 1e6)::bigint),
       jsonb_build_object(
           'alert', 'circuit_breaker',
           'event', '{}'::jsonb,
           'computed', jsonb_build_object(
               'trigger_id', t.id::text, 'trigger_name', t.name,
               'disabled_reason', t.disabled_reason,
               'disabled_at', to_char(t.disabled_at AT TIME ZONE 'UTC',
                                      'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
               'consecutive_failures', t.consecutive_failures::text,
               'reset_instructions', format(
                   'Fix the target, then close the breaker: POST /triggers/%%s/circuit-breaker/reset'
                   ' (or POST /triggers/%%s/enable).', t.id, t.id))),
       8
FROM triggers AS t
JOIN account_alert_actions AS al ON al.user_id = t.user_id
WHERE t.id = ANY (%(trigger_ids)s::uuid[]) AND t.disabled_at IS NOT NULL
ON CONFLICT (alert_action_id, idempotency_key) WHERE alert_action_id IS NOT NULL DO NOTHING
RETURNING id

-- alert_action --
SELECT id::text, action_type, config, updated_at FROM account_alert_actions
WHERE user_id = %(user_id)s::uuid

-- lock_alert_action_owner --
-- Before reading the alert action to replace it: its credentials are sealed to its id, so
-- two first settings at once must not each seal to an id of their own.
SELECT 1 FROM users WHERE id = %(user_id)s::uuid FOR UPDATE

-- set_alert_action --
INSERT INTO account_alert_actions (id, user_id, action_type, config)
VALUES (%(id)s::uuid, %(user_id)s::uuid, %(action_type)s, %(config)s)
ON CONFLICT (user_id) DO UPDATE
SET action_type = EXCLUDED.action_type, config = EXCLUDED.config
RETURNING id::text, action_type, config, updated_at

-- clear_alert_action --
DELETE FROM account_alert_actions WHERE user_id = %(user_id)s::uuid RETURNING id
