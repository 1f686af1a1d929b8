-- fold_firings --
-- Firings of digest actions that this worker claimed, folded into the open digest of their
-- action and window (made here if there is none): each firing ends 'digested' naming its
-- digest, with an action_results row that names it too. The digest is due when its window
-- has closed, plus a settling delay for firings made in it but committed a moment later.
-- One statement, so a worker that dies folds all of these or none (its claims then expire
-- and the firings are claimed and folded again).
WITH firing AS (
    SELECT j.id, j.trigger_id, j.action_id, j.event_id, j.chain_id, j.priority,
           j.max_attempts, j.attempts,
           tstzrange(to_timestamp(floor(extract(epoch FROM j.created_at) / f.secs) * f.secs),
                     to_timestamp((floor(extract(epoch FROM j.created_at) / f.secs) + 1)
                                  * f.secs)) AS win
    FROM unnest(%(job_ids)s::bigint[], %(attempts)s::int[], %(window_seconds)s::int[])
         AS f(id, attempt, secs)
    JOIN action_jobs AS j ON j.id = f.id
    WHERE j.status = 'running' AND j.locked_by = %(worker)s AND j.attempts = f.attempt
), windows AS (
    SELECT DISTINCT ON (action_id, win) trigger_id, action_id, chain_id, priority,
           max_attempts, win
    FROM firing
    ORDER BY action_id, win, id
), digests AS (
    INSERT INTO action_jobs AS d (trigger_id, action_id, chain_id, priority, max_attempts,
                                  run_at, idempotency_key, payload, digest_window, digest_open)
    SELECT trigger_id, action_id, chain_id, priority, max_attempts,
           upper(win) + make_interval(secs => %(settle_seconds)s),
           'digest-' || gen_random_uuid(), '{"digest": null}', win, true
    FROM windows
    ON CONFLICT (action_id, digest_window) WHERE digest_open
    DO UPDATE SET updated_at = now()
    RETURNING d.id, d.action_id, d.digest_window
), folded AS (
    UPDATE action_jobs AS j
    SET status = 'digested', digest_job_id = d.id, locked_by = NULL, locked_until = NULL,
        last_error = NULL, finished_at = now()
    FROM firing AS f
    JOIN digests AS d ON d.action_id = f.action_id AND d.digest_window = f.win
    WHERE j.id = f.id AND j.status = 'running' AND j.locked_by = %(worker)s
    RETURNING j.id, j.trigger_id, j.action_id, j.event_id, j.chain_id, j.attempts,
              d.id AS digest_id
)
INSERT INTO action_results (job_id, user_id, trigger_id, action_id, event_id, chain_id,
                            action_type, status, retry_count, response_data)
SELECT f.id, t.user_id, f.trigger_id, f.action_id, f.event_id, f.chain_id, a.action_type,
       'digested', f.attempts - 1, jsonb_build_object('digest_job_id', f.digest_id)
FROM folded AS f
JOIN triggers AS t ON t.id = f.trigger_id
JOIN trigger_actions AS a ON a.id = f.action_id
RETURNING job_id

-- close_digest --
-- The digest takes no more firings. Waits for any fold that is adding to it (the fold
-- holds its row) so that the next statement sees all it holds.
UPDATE action_jobs SET digest_open = false WHERE id = %(job_id)s AND digest_open RETURNING id

-- freeze_digest --
-- What a closed digest holds, frozen in its payload (for its retries and redeliveries): its
-- window, how many firings, and the first max_items of them in the order they were made.
WITH members AS (
    SELECT m.id, m.event_id, m.chain_id, m.idempotency_key, m.created_at, m.payload,
           row_number() OVER (ORDER BY m.created_at, m.id) AS n
    FROM action_jobs AS m
    WHERE m.digest_job_id = %(job_id)s
)
UPDATE action_jobs AS d
SET payload = jsonb_build_object('digest', jsonb_build_object(
        'window_start', lower(d.digest_window), 'window_end', upper(d.digest_window),
        'count', (SELECT count(*) FROM members),
        'items', coalesce((SELECT jsonb_agg(jsonb_build_object(
                                     'job_id', m.id, 'event_id', m.event_id,
                                     'chain_id', m.chain_id,
                                     'idempotency_key', m.idempotency_key,
                                     'created_at', m.created_at, 'payload', m.payload)
                                 ORDER BY m.n)
                           FROM members AS m WHERE m.n <= %(max_items)s), '[]')))
WHERE d.id = %(job_id)s
RETURNING d.payload
