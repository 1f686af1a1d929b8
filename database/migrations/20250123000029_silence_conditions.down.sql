DROP INDEX trigger_state_silence_due_idx;
-- Jobs for a silent period without an event cannot stay: event_id is required again.
DELETE FROM action_jobs WHERE event_id IS NULL;
DROP INDEX action_jobs_silence_key;
ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_event_or_silence;
ALTER TABLE action_jobs DROP COLUMN silence_key;
ALTER TABLE action_jobs ALTER COLUMN event_id SET NOT NULL;
