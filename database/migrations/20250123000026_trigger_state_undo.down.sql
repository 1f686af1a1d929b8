DELETE FROM action_jobs WHERE retraction;
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_event_id_action_id_retraction_key;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_event_id_action_id_key
    UNIQUE (event_id, action_id);
ALTER TABLE action_jobs DROP COLUMN retraction;

-- Cancelled jobs and their results become what the older statuses come closest to: a job
-- that will not be delivered, and a failed outcome.
UPDATE action_results SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE action_results DROP CONSTRAINT action_results_status_check;
ALTER TABLE action_results ADD CONSTRAINT action_results_status_check
    CHECK (status IN ('success', 'failed', 'retrying'));
UPDATE action_jobs SET status = 'dead' WHERE status = 'cancelled';
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_status_check;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'dead'));

DROP TABLE trigger_state_undo;
