-- State of stateful conditions (EMA, sliding-window counts), one row per trigger and scope.
-- The scope is what the state is about: by default the event's agent ('agent:42'), so one
-- trigger watching many agents keeps an average per agent; '' is trigger-wide.
CREATE TABLE trigger_state (
    trigger_id      uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    scope           text NOT NULL DEFAULT '',
    state           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(state) = 'object'),
    -- Chain position of the last event applied, so a replayed event is never applied twice.
    last_block_number bigint,
    last_log_index    integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trigger_id, scope)
);

CREATE TRIGGER trigger_state_updated_at
    BEFORE UPDATE ON trigger_state
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
