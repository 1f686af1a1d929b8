DROP FUNCTION claim_candidates(integer, integer, uuid[], integer[]);
DROP INDEX action_jobs_account_queue_idx;
DROP TRIGGER action_jobs_account ON action_jobs;
DROP FUNCTION action_job_account();
ALTER TABLE action_jobs DROP COLUMN user_id;
