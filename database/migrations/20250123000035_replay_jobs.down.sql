ALTER TABLE action_jobs DROP COLUMN replay;
