CREATE TABLE trigger_actions (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger_id  uuid NOT NULL REFERENCES triggers (id) ON DELETE CASCADE,
    position    smallint NOT NULL DEFAULT 0,
    action_type text NOT NULL CHECK (action_type IN ('telegram', 'rest', 'mcp')),
    priority    integer NOT NULL DEFAULT 1,
    config      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX trigger_actions_trigger_id_idx ON trigger_actions (trigger_id, position);

CREATE TRIGGER trigger_actions_updated_at
    BEFORE UPDATE ON trigger_actions
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TRIGGER trigger_actions_changed
    AFTER INSERT OR UPDATE OR DELETE ON trigger_actions
    FOR EACH ROW EXECUTE FUNCTION notify_trigger_changed();
