-- The wake-up as migration 14 made it: for every INSERT into action_jobs.
DROP TRIGGER action_jobs_notify ON action_jobs;
CREATE OR REPLACE FUNCTION notify_action_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('action_job', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER action_jobs_notify
    AFTER INSERT ON action_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_action_job();
