-- Each job's account (its trigger's owner) on the job, and the queue indexed by it, so that
-- the worker can take every account's most urgent jobs within its share of the slots without
-- reading past another account's backlog. Set on insert by a trigger, whichever statement
-- queues the job.
ALTER TABLE action_jobs ADD COLUMN user_id uuid;

-- Not NOT NULL: a job of a trigger deleted meanwhile must fail on its foreign key, which the
-- trigger engine knows to answer (it reloads its triggers), not on a missing account. Only
-- the jobs still to deliver: the others are the audit trail, maybe millions of rows (a job
-- without an account is claimed in the queue's order, after the shares).
UPDATE action_jobs AS j SET user_id = t.user_id
FROM triggers AS t
WHERE t.id = j.trigger_id AND j.status IN ('queued', 'running');

CREATE FUNCTION action_job_account() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    SELECT t.user_id INTO NEW.user_id FROM triggers AS t WHERE t.id = NEW.trigger_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER action_jobs_account BEFORE INSERT ON action_jobs
    FOR EACH ROW EXECUTE FUNCTION action_job_account();

CREATE INDEX action_jobs_account_queue_idx ON action_jobs (user_id, priority, run_at, id)
    WHERE status = 'queued';

-- The due jobs a worker with p_limit free slots should take, in the order to take them:
-- first each account's most urgent (priority 1 before 2, then the oldest run_at) within its
-- share, p_per_account deliveries in flight less those it has (p_running, by p_accounts);
-- then anyone's, in the queue's order, for the slots left. Twice p_limit of them: other
-- workers may be locking some. The accounts with queued jobs are found by a walk over their
-- index, one probe each (so a claim's cost grows with them). A function, so that with one account
-- (the usual case) a claim plans and runs two probes and the queue's scan, not the whole
-- statement (whose planning took longer than its run); custom plans, since a generic one
-- does not know the LIMIT and sorted the whole queue.
CREATE FUNCTION claim_candidates(p_limit integer, p_per_account integer, p_accounts uuid[],
                                 p_running integer[]) RETURNS bigint[]
    LANGUAGE plpgsql STABLE
    SET plan_cache_mode TO 'force_custom_plan'
    AS $$
DECLARE
    first_account uuid;
BEGIN
    -- One account with queued jobs (the usual case): the queue's order is its own.
    SELECT j.user_id INTO first_account
    FROM action_jobs AS j WHERE j.status = 'queued' ORDER BY j.user_id LIMIT 1;
    IF NOT EXISTS (SELECT FROM action_jobs AS j
                   WHERE j.status = 'queued' AND j.user_id > first_account) THEN
        RETURN ARRAY(SELECT j.id FROM action_jobs AS j
                     WHERE j.status = 'queued' AND j.run_at <= now()
                     ORDER BY j.priority, j.run_at, j.id
                     LIMIT p_limit * 2);
    END IF;
    RETURN ARRAY(
        WITH RECURSIVE running AS (
            SELECT r.user_id, r.deliveries
            FROM unnest(p_accounts, p_running) AS r(user_id, deliveries)
        ), accounts AS (
            (SELECT j.user_id FROM action_jobs AS j
             WHERE j.status = 'queued' ORDER BY j.user_id LIMIT 1)
            UNION ALL
            SELECT (SELECT j.user_id FROM action_jobs AS j
                    WHERE j.status = 'queued' AND j.user_id > a.user_id
                    ORDER BY j.user_id LIMIT 1)
            FROM accounts AS a
            WHERE a.user_id IS NOT NULL
        ), shares AS (
            SELECT s.id, s.priority, s.run_at
            FROM accounts AS a
            LEFT JOIN running AS r ON r.user_id = a.user_id
            CROSS JOIN LATERAL (
                -- In the account index's order (its user_id is fixed): that index, not the
                -- queue's, whatever the statistics say.
                SELECT j.id, j.priority, j.run_at
                FROM action_jobs AS j
                WHERE j.user_id = a.user_id AND j.status = 'queued' AND j.run_at <= now()
                ORDER BY j.user_id, j.priority, j.run_at, j.id
                LIMIT greatest(0, least(p_limit, p_per_account - coalesce(r.deliveries, 0)))
            ) AS s
            WHERE a.user_id IS NOT NULL
        ), queue AS (
            SELECT j.id, j.priority, j.run_at
            FROM action_jobs AS j
            WHERE j.status = 'queued' AND j.run_at <= now()
            ORDER BY j.priority, j.run_at, j.id
            LIMIT p_limit * 2
        )
        SELECT c.id
        FROM (SELECT id, priority, run_at, 1 AS pass FROM shares
              UNION ALL
              SELECT id, priority, run_at, 2 AS pass FROM queue) AS c
        GROUP BY c.id, c.priority, c.run_at
        ORDER BY min(c.pass), c.priority, c.run_at, c.id
        LIMIT p_limit * 2
    );
END
$$;
