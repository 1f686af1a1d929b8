-- The workers' wake-up (migration 14) only from a statement that queued jobs. It fired for
-- every INSERT into action_jobs, rows or none: the processor's batches that fire nothing, and
-- the retraction and alert inserts of every recorded batch of attempts (record_attempts),
-- which seldom add any, each woke every worker for a claim that found nothing. A worker
-- delivering one job at a time made two claims a job, one of them empty.
CREATE OR REPLACE FUNCTION notify_action_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM queued) THEN
        PERFORM pg_notify('action_job', '');
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER action_jobs_notify ON action_jobs;
CREATE TRIGGER action_jobs_notify
    AFTER INSERT ON action_jobs
    REFERENCING NEW TABLE AS queued
    FOR EACH STATEMENT EXECUTE FUNCTION notify_action_job();
