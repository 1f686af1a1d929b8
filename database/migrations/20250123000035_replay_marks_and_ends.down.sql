ALTER TABLE trigger_replays DROP COLUMN to_block, DROP COLUMN to_time;
ALTER TABLE action_jobs DROP COLUMN replay;
