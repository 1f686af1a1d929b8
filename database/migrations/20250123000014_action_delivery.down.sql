DROP TRIGGER IF EXISTS action_jobs_notify ON action_jobs;
DROP FUNCTION IF EXISTS notify_action_job();
ALTER TABLE triggers DROP CONSTRAINT IF EXISTS triggers_webhook_secret_key_id_check;
ALTER TABLE triggers DROP COLUMN IF EXISTS webhook_secret_key_id;
