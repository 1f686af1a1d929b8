-- Digests (an action's `digest` setting, actions/digest.py) and the owner's alert when a
-- trigger's circuit breaker opens (actions/alerts.py).
--
-- A digest is a job of its own in action_jobs: the firings of an action made within one
-- window (digest_window, by their created_at) are folded into it (status 'digested',
-- digest_job_id naming it, an action_results row 'digested' naming it too), and it is
-- delivered once the window has closed, with the queue's leases, retries and dead letters.
-- While it is open (digest_open) firings join it; its first attempt closes it and freezes
-- what it holds in its payload, so that its retries and redeliveries send the same message.
ALTER TABLE action_jobs ADD COLUMN digest_window tstzrange;
ALTER TABLE action_jobs ADD COLUMN digest_open boolean NOT NULL DEFAULT false;
ALTER TABLE action_jobs ADD COLUMN digest_job_id bigint
    REFERENCES action_jobs (id) ON DELETE SET NULL;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_digest_open_check
    CHECK (NOT digest_open OR digest_window IS NOT NULL);
-- One open digest per (action, window): concurrent folds find the same one.
CREATE UNIQUE INDEX action_jobs_open_digest ON action_jobs (action_id, digest_window)
    WHERE digest_open;
CREATE INDEX action_jobs_digest_members ON action_jobs (digest_job_id, created_at, id)
    WHERE digest_job_id IS NOT NULL;

ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_status_check;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'dead', 'cancelled', 'digested'));
ALTER TABLE action_results DROP CONSTRAINT action_results_status_check;
ALTER TABLE action_results ADD CONSTRAINT action_results_status_check
    CHECK (status IN ('success', 'failed', 'retrying', 'cancelled', 'digested'));

-- The action a user names on their account for alerts about their triggers (one per user):
-- a channel's config like a trigger action's, its credentials sealed the same way (with
-- this row's id as their context).
CREATE TABLE account_alert_actions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    action_type text NOT NULL CHECK (action_type ~ '^[a-z][a-z0-9_]{0,31}$'),
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER account_alert_actions_updated_at
    BEFORE UPDATE ON account_alert_actions
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- An alert is a job of the tripped trigger delivered through the account's alert action
-- instead of one of the trigger's actions; clearing the alert action drops its queued ones.
ALTER TABLE action_jobs ALTER COLUMN action_id DROP NOT NULL;
ALTER TABLE action_jobs ADD COLUMN alert_action_id uuid
    REFERENCES account_alert_actions (id) ON DELETE CASCADE;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_one_action
    CHECK ((action_id IS NULL) <> (alert_action_id IS NULL));
-- One alert per opening of a breaker (its idempotency key names the trigger and the time).
CREATE UNIQUE INDEX action_jobs_alert_key ON action_jobs (alert_action_id, idempotency_key)
    WHERE alert_action_id IS NOT NULL;

ALTER TABLE action_jobs DROP CONSTRAINT action_jobs_event_or_silence;
ALTER TABLE action_jobs ADD CONSTRAINT action_jobs_event_or_silence
    CHECK (event_id IS NOT NULL OR silence_key IS NOT NULL OR digest_window IS NOT NULL
           OR alert_action_id IS NOT NULL);
