DROP TABLE IF EXISTS agent_registrations;
ALTER TABLE checkpoints DROP COLUMN IF EXISTS confirmed_block_number;
