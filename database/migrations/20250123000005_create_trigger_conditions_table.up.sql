-- All conditions of a trigger must hold. Values are text as users write them; the trigger
-- engine parses them by field type (numbers, addresses, JSON lists for IN / NOT IN).
CREATE TABLE trigger_conditions (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_id     uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    position       smallint NOT NULL DEFAULT 0,
    condition_type text NOT NULL CHECK (condition_type <> ''),
    field          text NOT NULL CHECK (field <> ''),
    operator       text NOT NULL CHECK (operator IN (
                       '=', '!=', '<', '<=', '>', '>=', 'IN', 'NOT IN',
                       'CONTAINS', 'STARTS_WITH', 'IS NULL', 'IS NOT NULL')),
    value          text NOT NULL DEFAULT '',
    -- Stateful settings: alpha / window_size (ema_threshold), time_window /
    -- reset_on_trigger (rate_limit), scope.
    config         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX trigger_conditions_trigger_id_idx ON trigger_conditions (trigger_id, position);

CREATE TRIGGER trigger_conditions_changed
    AFTER INSERT OR UPDATE OR DELETE ON trigger_conditions
    FOR EACH ROW EXECUTE FUNCTION notify_trigger_changed();
