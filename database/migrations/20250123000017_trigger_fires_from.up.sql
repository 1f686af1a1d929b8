-- A trigger fires only for events whose block time is at or after `fires_from`: the moment
-- it was created or last turned on (enabled, with its circuit breaker closed). Older events,
-- and those of the time it was off, still move its stateful conditions (an average or a
-- window is warm when it starts firing) but queue no job. Block times have whole seconds,
-- so the moment is kept to the second: an event of the same second counts as new.
ALTER TABLE triggers ADD COLUMN fires_from timestamptz;

-- Existing triggers fire from their creation: nothing they would have fired for before is
-- lost (a processor stopped for the upgrade still delivers what happened meanwhile), and
-- only what was mined before they existed is no longer sent. now() would silently drop the
-- events mined between a trigger's creation and the upgrade that no processor had reached.
-- Adding a column is not an edit of the triggers: updated_at stays as it was.
ALTER TABLE triggers DISABLE TRIGGER triggers_updated_at;
UPDATE triggers SET fires_from = date_trunc('second', created_at);
ALTER TABLE triggers ENABLE TRIGGER triggers_updated_at;

ALTER TABLE triggers
    ALTER COLUMN fires_from SET DEFAULT date_trunc('second', now()),
    ALTER COLUMN fires_from SET NOT NULL;

-- Every way of turning a trigger on (the API's enable, PUT or PATCH with enabled, the
-- circuit breaker's reset, an UPDATE by hand) moves fires_from to now, unless the same
-- UPDATE sets fires_from itself (history asked for on purpose).
CREATE FUNCTION set_trigger_fires_from() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.enabled AND NEW.disabled_at IS NULL
       AND NOT (OLD.enabled AND OLD.disabled_at IS NULL)
       AND NEW.fires_from IS NOT DISTINCT FROM OLD.fires_from THEN
        NEW.fires_from := date_trunc('second', now());
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER triggers_fires_from
    BEFORE UPDATE OF enabled, disabled_at ON triggers
    FOR EACH ROW EXECUTE FUNCTION set_trigger_fires_from();

-- Trigger engines keep fires_from in their index: a change of it by hand must reach them.
DROP TRIGGER triggers_changed ON triggers;
CREATE TRIGGER triggers_changed
    AFTER INSERT OR DELETE OR UPDATE OF user_id, name, chain_id, registry, enabled, is_stateful,
        cooldown_seconds, failure_threshold, fires_from ON triggers
    FOR EACH ROW EXECUTE FUNCTION notify_trigger_changed();
