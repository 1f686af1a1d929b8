-- A replay asks on purpose for a trigger's history: its firings for stored events from a
-- block or a time on, queued as jobs through the same exactly-once insert as live ones (an
-- event whose job exists already, delivered live or by an earlier replay, gets none). The
-- processor works through it in batches, each in one transaction with its jobs and its
-- progress, evaluating the trigger alone from empty state: the replay keeps its own state
-- and last firing here, and leaves the trigger's live state and last_fired_at alone.
CREATE TABLE trigger_replays (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trigger_id uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    chain_id bigint NOT NULL,
    -- Where it starts: exactly one of a block or a block time.
    from_block bigint CHECK (from_block >= 0),
    from_time timestamptz,
    -- Where it ends: the chain's processing cursor when the processor took the replay up
    -- (NULL while pending). Later events are the live processor's.
    end_block bigint,
    end_log_index integer,
    -- The last event it evaluated, and the state and last firing that left.
    cursor_block bigint NOT NULL DEFAULT -1,
    cursor_log_index integer NOT NULL DEFAULT -1,
    state jsonb NOT NULL DEFAULT '{}',  -- scope -> state of the trigger's stateful conditions
    last_fired_at timestamptz,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'cancelled')),
    error text,  -- why it was cancelled by the processor (the trigger no longer parses)
    events bigint NOT NULL DEFAULT 0,
    firings bigint NOT NULL DEFAULT 0,
    jobs bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    CHECK ((from_block IS NULL) <> (from_time IS NULL)),
    CHECK ((end_block IS NULL) = (end_log_index IS NULL))
);

-- The processor's look-up: the open replays of a chain, oldest first.
CREATE INDEX trigger_replays_open_idx ON trigger_replays (chain_id, id)
    WHERE status IN ('pending', 'running');
CREATE INDEX trigger_replays_trigger_idx ON trigger_replays (trigger_id, id);
