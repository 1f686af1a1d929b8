DROP TRIGGER IF EXISTS triggers_changed ON triggers;
CREATE TRIGGER triggers_changed
    AFTER INSERT OR DELETE OR UPDATE OF user_id, name, chain_id, registry, enabled, is_stateful,
        cooldown_seconds, failure_threshold ON triggers
    FOR EACH ROW EXECUTE FUNCTION notify_trigger_changed();
DROP TRIGGER IF EXISTS triggers_fires_from ON triggers;
DROP FUNCTION IF EXISTS set_trigger_fires_from();
ALTER TABLE triggers DROP COLUMN IF EXISTS fires_from;
