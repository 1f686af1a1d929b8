-- take_slot --
-- The target's next send time, taken when it is at most max_wait seconds away: it moves on by
-- the interval, and the caller waits for the slot it took (seconds, 0 or less: send now). No
-- row: the target is busy for longer; busy_until says how long.
INSERT INTO delivery_slots AS s (target, next_at)
VALUES (%(target)s, clock_timestamp() + make_interval(secs => %(interval)s))
ON CONFLICT (target) DO UPDATE
SET next_at = greatest(s.next_at, clock_timestamp()) + make_interval(secs => %(interval)s)
WHERE s.next_at <= clock_timestamp() + make_interval(secs => %(max_wait)s)
RETURNING extract(epoch FROM s.next_at - make_interval(secs => %(interval)s) - clock_timestamp())

-- busy_until --
SELECT extract(epoch FROM next_at - clock_timestamp()) FROM delivery_slots WHERE target = %(target)s

-- claim_message --
-- The message is this job's to send unless another job of the action sent the same one
-- within the window, or is sending it (then no row). The job's own retries find their claim
-- again; a claim whose job was dead-lettered or cancelled sent nothing, and goes to this one.
INSERT INTO delivery_dedup AS d (action_id, message_hash, job_id, sent_at)
VALUES (%(action_id)s, %(message_hash)s, %(job_id)s, now())
ON CONFLICT (action_id, message_hash) DO UPDATE
SET job_id = EXCLUDED.job_id, sent_at = EXCLUDED.sent_at
WHERE d.job_id = EXCLUDED.job_id OR d.sent_at < now() - make_interval(secs => %(window)s)
   OR NOT EXISTS (SELECT FROM action_jobs AS j
                  WHERE j.id = d.job_id AND j.status NOT IN ('dead', 'cancelled'))
RETURNING d.job_id

-- message_holder --
-- The job holding a message claim that another job could not take: its status, and in how
-- many seconds it tries again (queued; otherwise NULL).
SELECT j.id, j.status,
       CASE WHEN j.status = 'queued' THEN extract(epoch FROM j.run_at - now())::float8 END
FROM delivery_dedup AS d
JOIN action_jobs AS j ON j.id = d.job_id
WHERE d.action_id = %(action_id)s AND d.message_hash = %(message_hash)s

-- forget_old_messages --
-- Claims older than any window (a day at most) no longer dedup anything.
DELETE FROM delivery_dedup WHERE sent_at < now() - interval '1 day'
