-- Alerts and digests cannot stay without their columns: their jobs go (their results keep
-- NULL job ids), and the firings a digest carried count as delivered.
DELETE FROM action_jobs WHERE alert_action_id IS NOT NULL OR digest_window IS NOT NULL;
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_event_or_silence;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_event_or_silence
    CHECK (event_id IS NOT NULL OR silence_key IS NOT NULL);
DROP INDEX action_jobs_alert_key;
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_one_action;
ALTER TABLE action_jobs DROP COLUMN alert_action_id;
ALTER TABLE action_jobs ALTER COLUMN action_id SET NOT NULL;
DROP TABLE account_alert_actions;

UPDATE action_jobs SET status = 'succeeded' WHERE status = 'digested';
UPDATE action_results SET status = 'success' WHERE status = 'digested';
ALTER TABLE action_results DROP CONSTRAINT action_results_status_check;
ALTER TABLE action_results ADD CONSTRAINT action_results_status_check
    CHECK (status IN ('success', 'failed', 'retrying', 'cancelled'));
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_status_check;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled'));

DROP INDEX action_jobs_digest_members;
DROP INDEX action_jobs_open_digest;
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_digest_open_check;
ALTER TABLE action_jobs DROP COLUMN digest_job_id;
ALTER TABLE action_jobs DROP COLUMN digest_open;
ALTER TABLE action_jobs DROP COLUMN digest_window;
