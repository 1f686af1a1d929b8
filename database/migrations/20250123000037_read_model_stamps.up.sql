-- A stamp per chain, new at every change of the chain's feedback in the read model, so that
-- a reader that keeps what it read (the API's cache of a busy agent's lens votes,
-- agents/service.py) can tell with one row whether it still holds. A stamp is random, not a
-- counter: two databases, or one dropped and made again, never hand out the same one.
--
-- Kept by statement-level triggers on `feedback` and `feedback_clients`, which hold all a
-- lens reads (client_feedback_stats and agent_feedback_stats change only with them):
-- whatever writes the model (read_model_apply, read_model_clear, a rebuild, a reorg's
-- roll-back) moves the stamp in its own transaction, so that a reader who sees the new rows
-- sees the new stamp too. A statement that changed no rows leaves it be.
CREATE TABLE read_model_stamps (
    chain_id bigint PRIMARY KEY,
    stamp    uuid NOT NULL
);

-- (Static SQL, one statement per transition table: PL/pgSQL keeps their plans for the
-- session, where an EXECUTE would plan at every firing; see migration 38.)
CREATE FUNCTION read_model_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO read_model_stamps AS s (chain_id, stamp)
        SELECT chain_id, gen_random_uuid() FROM (SELECT DISTINCT chain_id FROM old_rows) AS c
        ORDER BY chain_id  -- one lock order for every writer
        ON CONFLICT (chain_id) DO UPDATE SET stamp = EXCLUDED.stamp;
    ELSE  -- an update changes no row's chain: its new rows name them all
        INSERT INTO read_model_stamps AS s (chain_id, stamp)
        SELECT chain_id, gen_random_uuid() FROM (SELECT DISTINCT chain_id FROM new_rows) AS c
        ORDER BY chain_id
        ON CONFLICT (chain_id) DO UPDATE SET stamp = EXCLUDED.stamp;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER feedback_stamp_insert AFTER INSERT ON feedback
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION read_model_stamp();
CREATE TRIGGER feedback_stamp_update AFTER UPDATE ON feedback
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION read_model_stamp();
CREATE TRIGGER feedback_stamp_delete AFTER DELETE ON feedback
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION read_model_stamp();
CREATE TRIGGER feedback_clients_stamp_insert AFTER INSERT ON feedback_clients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION read_model_stamp();
CREATE TRIGGER feedback_clients_stamp_update AFTER UPDATE ON feedback_clients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION read_model_stamp();
CREATE TRIGGER feedback_clients_stamp_delete AFTER DELETE ON feedback_clients
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION read_model_stamp();

-- The chains modelled so far.
INSERT INTO read_model_stamps (chain_id, stamp)
SELECT chain_id, gen_random_uuid() FROM (SELECT DISTINCT chain_id FROM feedback) AS chains;
