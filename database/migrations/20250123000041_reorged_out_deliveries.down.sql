ALTER TABLE action_jobs DROP COLUMN reorged_out;
