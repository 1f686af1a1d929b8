-- Action delivery (the workers).
--
-- Webhook secrets name the key that encrypted them, as MCP tokens do (migration 12), so
-- that keys can be rotated: the secret is AES-256-GCM under webhook_secret_key_id, with
-- "trigger:<id>" as associated data.
ALTER TABLE triggers ADD COLUMN webhook_secret_key_id text;
ALTER TABLE triggers ADD CONSTRAINT triggers_webhook_secret_key_id_check
    CHECK ((webhook_secret IS NULL) = (webhook_secret_key_id IS NULL));

-- Wakes workers on channel 'action_job' once per statement that queues jobs; workers
-- read what is due from the table, and poll for jobs whose retry time comes.
CREATE FUNCTION notify_action_job() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('action_job', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER action_jobs_notify
    AFTER INSERT ON action_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION notify_action_job();
