CREATE TABLE triggers (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                 text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description          text,
    chain_id             bigint NOT NULL CHECK (chain_id > 0),
    registry             text NOT NULL CHECK (registry IN ('identity', 'reputation', 'validation')),
    enabled              boolean NOT NULL DEFAULT true,
    is_stateful          boolean NOT NULL DEFAULT false,
    -- Minimum block time between two firings; 0 means none.
    cooldown_seconds     integer NOT NULL DEFAULT 0 CHECK (cooldown_seconds >= 0),
    -- Block time of the event that last fired the trigger.
    last_fired_at        timestamptz,
    -- Circuit breaker: after failure_threshold consecutive failed deliveries the trigger is
    -- disabled, with the reason and time recorded.
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    failure_threshold    integer NOT NULL DEFAULT 10 CHECK (failure_threshold > 0),
    disabled_reason      text,
    disabled_at          timestamptz,
    -- HMAC key for signing webhook deliveries, encrypted like MCP tokens (see migration 12).
    webhook_secret       bytea,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX triggers_user_id_idx ON triggers (user_id, created_at);
CREATE INDEX triggers_enabled_chain_registry_idx ON triggers (chain_id, registry) WHERE enabled;

CREATE TRIGGER triggers_updated_at
    BEFORE UPDATE ON triggers
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- Tells trigger engines to refresh their in-memory index. Payload: the trigger id.
-- Bookkeeping updates (last_fired_at, consecutive_failures) do not notify.
CREATE FUNCTION notify_trigger_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed record;
    trigger_id uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    -- Fired for triggers and for their conditions and actions (which carry trigger_id).
    IF TG_TABLE_NAME = 'triggers' THEN
        trigger_id := changed.id;
    ELSE
        trigger_id := changed.trigger_id;
    END IF;
    PERFORM pg_notify('trigger_changed', trigger_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER triggers_changed
    AFTER INSERT OR DELETE OR UPDATE OF user_id, name, chain_id, registry, enabled, is_stateful,
        cooldown_seconds, failure_threshold ON triggers
    FOR EACH ROW EXECUTE FUNCTION notify_trigger_changed();
