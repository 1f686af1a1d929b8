-- Trigger conditions on the read model's summaries (reputation_threshold,
-- validation_threshold; erc8004_backend/triggers/crossings.py).
--
-- A lens's min_feedback and min_agents read each client's history across the chain as of an
-- event: the client's agents by client, then each pair's feedback by feedback's key.
CREATE INDEX feedback_clients_client_idx ON feedback_clients (chain_id, client_address);

-- A reputation_threshold may name a saved lens (config.lens_name): the processor reads the
-- lens with the trigger, so a changed lens is a changed trigger for the engines' indexes.
CREATE FUNCTION notify_lens_triggers_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed record;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
    PERFORM pg_notify('trigger_changed', t.id::text)
    FROM triggers AS t
    WHERE t.user_id = changed.user_id
      AND EXISTS (SELECT FROM trigger_conditions AS c
                  WHERE c.trigger_id = t.id AND c.condition_type = 'reputation_threshold'
                    AND c.config ->> 'lens_name' = changed.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER reputation_lenses_changed
    AFTER INSERT OR DELETE OR UPDATE OF name, definition ON reputation_lenses
    FOR EACH ROW EXECUTE FUNCTION notify_lens_triggers_changed();
