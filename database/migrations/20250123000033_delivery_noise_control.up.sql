-- Noise control, shared by every worker (actions/noise.py).
-- A target's next free send time: a rate limit (an action's rate_limit_per_minute, Telegram's
-- per-bot and per-chat limits) is an interval between sends that each delivery takes in turn.
CREATE TABLE delivery_slots (
    target text PRIMARY KEY,  -- "action:<id>", "telegram:chat:<id>", ...
    next_at timestamptz NOT NULL
);

-- An action's messages sent within its dedup window: the same rendered message to the same
-- target is sent once per window (a repeat is recorded as delivered, deduplicated).
CREATE TABLE delivery_dedup (
    action_id uuid NOT NULL REFERENCES trigger_actions (id) ON DELETE CASCADE,
    message_hash bytea NOT NULL,  -- sha256 of the rendered message
    job_id bigint NOT NULL,  -- the job that sent it (its own retries are not repeats)
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (action_id, message_hash)
);
CREATE INDEX delivery_dedup_sent_at_idx ON delivery_dedup (sent_at);
