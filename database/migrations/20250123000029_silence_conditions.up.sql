-- Silence conditions (triggers/silence.py) fire for a silent period, not for an event: a
-- silence's job names the period (silence_key: trigger, scope, start) and, as event_id, the
-- event that started it, or none when it ran from the trigger's start. One job per (period,
-- action), as per (event, action) for the others.
ALTER TABLE action_jobs ALTER COLUMN event_id DROP NOT NULL;
ALTER TABLE action_jobs ADD COLUMN silence_key text;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_event_or_silence
    CHECK (event_id IS NOT NULL OR silence_key IS NOT NULL);
CREATE UNIQUE INDEX action_jobs_silence_key ON action_jobs (action_id, silence_key, retraction)
    WHERE silence_key IS NOT NULL;

-- A silence trigger's state holds each scope's current period and when it is due (Unix
-- seconds of block time); the processor reads only the periods due by the chain's time.
CREATE INDEX trigger_state_silence_due_idx
    ON trigger_state (((state -> 'silence' ->> 'due')::double precision))
    WHERE state -> 'silence' ? 'due';
