-- insert_trigger --
INSERT INTO triggers (user_id, name, description, chain_id, registry, enabled, is_stateful,
                      cooldown_seconds, failure_threshold)
VALUES (%(user_id)s, %(name)s, %(description)s, %(chain_id)s, %(registry)s, %(enabled)s,
        %(is_stateful)s, %(cooldown_seconds)s, %(failure_threshold)s)
RETURNING id

-- update_trigger --
UPDATE triggers
SET name = %(name)s, description = %(description)s, chain_id = %(chain_id)s,
    registry = %(registry)s, enabled = %(enabled)s, is_stateful = %(is_stateful)s,
    cooldown_seconds = %(cooldown_seconds)s, failure_threshold = %(failure_threshold)s
WHERE id = %(trigger_id)s AND user_id = %(user_id)s
RETURNING id

-- lock_own_trigger --
-- The trigger, if it is the user's; locked until the transaction ends.
SELECT id, name, description, chain_id, registry, enabled, is_stateful, cooldown_seconds,
       failure_threshold
FROM triggers
WHERE id = %(trigger_id)s AND user_id = %(user_id)s
FOR UPDATE

-- delete_conditions --
DELETE FROM trigger_conditions WHERE trigger_id = %(trigger_id)s

-- insert_condition --
-- group_path: the condition's place in a tree of groups ('any[1].all[0]'); '' in a flat list.
INSERT INTO trigger_conditions (trigger_id, position, condition_type, field, operator, value,
                                config, group_path)
VALUES (%(trigger_id)s, %(position)s, %(condition_type)s, %(field)s, %(operator)s, %(value)s,
        %(config)s, %(group_path)s)

-- action_configs --
-- The trigger's actions as stored: a replacement keeps the credentials their masks name.
SELECT id, config FROM trigger_actions WHERE trigger_id = %(trigger_id)s

-- delete_actions_except --
-- Actions a replacement no longer lists; their queued jobs go with them.
DELETE FROM trigger_actions
WHERE trigger_id = %(trigger_id)s AND NOT (id = ANY(%(keep)s::uuid[]))

-- insert_action --
-- With the id the API chose: the action's credentials are encrypted naming it.
INSERT INTO trigger_actions (id, trigger_id, position, action_type, priority, config)
VALUES (%(action_id)s, %(trigger_id)s, %(position)s, %(action_type)s, %(priority)s, %(config)s)

-- update_action --
UPDATE trigger_actions
SET position = %(position)s, action_type = %(action_type)s, priority = %(priority)s,
    config = %(config)s
WHERE id = %(action_id)s AND trigger_id = %(trigger_id)s

-- get_triggers --
-- The user's triggers among the given ids, whole (settings, breaker, conditions, actions).
SELECT t.id, t.name, t.description, t.chain_id, t.registry, t.enabled, t.is_stateful,
       t.cooldown_seconds, t.failure_threshold, t.consecutive_failures, t.disabled_reason,
       t.disabled_at, t.last_fired_at, t.created_at, t.updated_at,
       t.webhook_secret IS NOT NULL AS has_webhook_secret,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'id', c.id, 'condition_type', c.condition_type, 'field', c.field,
                    'operator', c.operator, 'value', c.value, 'config', c.config,
                    'group_path', c.group_path)
                    ORDER BY c.position)
                 FROM trigger_conditions c WHERE c.trigger_id = t.id), '[]') AS conditions,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                    'id', a.id, 'action_type', a.action_type, 'priority', a.priority,
                    'config', a.config)
                    ORDER BY a.position)
                 FROM trigger_actions a WHERE a.trigger_id = t.id), '[]') AS actions
FROM triggers t
WHERE t.id = ANY(%(trigger_ids)s::uuid[]) AND t.user_id = %(user_id)s

-- list_triggers --
-- A page of the user's triggers, oldest first, after the given (created_at, id).
SELECT t.id
FROM triggers t
WHERE t.user_id = %(user_id)s
  AND (%(after_time)s::timestamptz IS NULL
       OR (t.created_at, t.id) > (%(after_time)s::timestamptz, %(after_id)s::uuid))
  AND (%(enabled)s::boolean IS NULL OR t.enabled = %(enabled)s)
  AND (%(chain_id)s::bigint IS NULL OR t.chain_id = %(chain_id)s)
ORDER BY t.created_at, t.id
LIMIT %(limit)s

-- delete_trigger --
DELETE FROM triggers WHERE id = %(trigger_id)s AND user_id = %(user_id)s RETURNING id

-- set_enabled --
-- Turning a trigger on also closes its circuit breaker: "on" means on.
WITH updated AS (
    UPDATE triggers
    SET enabled = %(enabled)s,
        consecutive_failures = CASE WHEN %(enabled)s THEN 0 ELSE consecutive_failures END,
        disabled_reason = CASE WHEN %(enabled)s THEN NULL ELSE disabled_reason END,
        disabled_at = CASE WHEN %(enabled)s THEN NULL ELSE disabled_at END
    WHERE id = %(trigger_id)s AND user_id = %(user_id)s
    RETURNING id
)
-- The breaker's columns do not notify by themselves (bookkeeping); this change must.
SELECT id, pg_notify('trigger_changed', id::text) IS NOT NULL AS notified FROM updated

-- reset_circuit_breaker --
-- Forget the failures and close the breaker; `enabled` (the owner's switch) is unchanged.
WITH updated AS (
    UPDATE triggers
    SET consecutive_failures = 0, disabled_reason = NULL, disabled_at = NULL
    WHERE id = %(trigger_id)s AND user_id = %(user_id)s
    RETURNING id
)
SELECT id, pg_notify('trigger_changed', id::text) IS NOT NULL AS notified FROM updated

-- saved_lenses --
-- The user's saved lenses among the names conditions give (config.lens_name).
SELECT name, definition
FROM reputation_lenses
WHERE user_id = %(user_id)s AND name = ANY (%(names)s::text[])

-- insert_replay --
-- A replay of the user's trigger from a block or a time, to its own end if given one (no
-- row: not theirs). The processor is woken to take it up.
WITH inserted AS (
    INSERT INTO trigger_replays (trigger_id, chain_id, from_block, from_time, to_block, to_time)
    SELECT id, chain_id, %(from_block)s, %(from_time)s, %(to_block)s, %(to_time)s
    FROM triggers
    WHERE id = %(trigger_id)s AND user_id = %(user_id)s
    RETURNING id, trigger_id
)
SELECT id, pg_notify('trigger_changed', trigger_id::text) IS NOT NULL AS notified
FROM inserted

-- list_replays --
-- The replays of the user's trigger, newest first (the given one alone, if an id is given).
SELECT r.id, r.from_block, r.from_time, r.to_block, r.to_time, r.end_block, r.end_log_index,
       r.cursor_block, r.cursor_log_index, r.status, r.error, r.events, r.firings, r.jobs,
       r.created_at, r.finished_at
FROM trigger_replays r
JOIN triggers t ON t.id = r.trigger_id
WHERE r.trigger_id = %(trigger_id)s AND t.user_id = %(user_id)s
  AND (%(replay_id)s::bigint IS NULL OR r.id = %(replay_id)s)
ORDER BY r.id DESC
LIMIT 100

-- cancel_replay --
-- A pending or running replay of the user's trigger stops; waits for a batch in progress
-- (the processor locks the row for each batch). One that has finished stays as it is.
UPDATE trigger_replays r
SET status = 'cancelled', finished_at = now()
FROM triggers t
WHERE r.id = %(replay_id)s AND r.trigger_id = %(trigger_id)s
  AND t.id = r.trigger_id AND t.user_id = %(user_id)s
  AND r.status IN ('pending', 'running')
