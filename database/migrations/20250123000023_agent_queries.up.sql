-- What the agents API asks of the read model (migration 20), made cheap at a million
-- feedback: counts kept per agent and per client, so that sorting agents by feedback or
-- reading the chain-wide history of an agent's clients never counts feedback rows; and
-- indexes for the agent listings' sort orders and filters, and for an agent's history.
--
-- The counts are kept by statement-level triggers on the model's tables: whatever writes
-- the model (read_model_apply, read_model_clear, a rebuild, a reorg's roll-back) keeps them
-- right, in the same transaction, with one aggregate over the statement's changed rows.

-- Per agent: its feedback, revoked or not, and its distinct clients.
CREATE TABLE agent_feedback_stats (
    chain_id       bigint NOT NULL,
    agent_id       numeric(78, 0) NOT NULL,
    feedback_count bigint NOT NULL DEFAULT 0,  -- not revoked: what getSummary would count
    revoked_count  bigint NOT NULL DEFAULT 0,
    client_count   bigint NOT NULL DEFAULT 0,  -- getClients' length
    PRIMARY KEY (chain_id, agent_id)
);

-- The agents with the most feedback first (GET /agents?sort=feedback_count).
CREATE INDEX agent_feedback_stats_count_idx
    ON agent_feedback_stats (feedback_count DESC, chain_id DESC, agent_id DESC);

-- Per client across a chain: the feedback it gave (revoked included: each one it ever gave,
-- as getLastIndex counts them) and the distinct agents it gave feedback to. A lens's
-- min_feedback and min_agents read these.
CREATE TABLE client_feedback_stats (
    chain_id       bigint NOT NULL,
    client_address text NOT NULL,
    feedback_count numeric NOT NULL DEFAULT 0,  -- the sum of its last indexes
    agent_count    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (chain_id, client_address)
);

-- The rows a statement changed, as `changes`: each new row with sign 1, each old row with
-- sign -1 (a trigger sees only the transition tables of its own operation).
CREATE FUNCTION read_model_changes(p_operation text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_operation
        WHEN 'INSERT' THEN 'SELECT n.*, 1 AS sign FROM new_rows AS n'
        WHEN 'DELETE' THEN 'SELECT o.*, -1 AS sign FROM old_rows AS o'
        ELSE 'SELECT n.*, 1 AS sign FROM new_rows AS n'
             ' UNION ALL SELECT o.*, -1 AS sign FROM old_rows AS o'
    END
$$;

CREATE FUNCTION feedback_stats_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($query$
        WITH changes AS (%s)
        INSERT INTO agent_feedback_stats AS s (chain_id, agent_id, feedback_count,
                                               revoked_count)
        SELECT chain_id, agent_id, counted, revoked
        FROM (
            SELECT chain_id, agent_id,
                   coalesce(sum(sign) FILTER (WHERE NOT revoked), 0) AS counted,
                   coalesce(sum(sign) FILTER (WHERE revoked), 0) AS revoked
            FROM changes
            GROUP BY chain_id, agent_id
        ) AS deltas
        WHERE counted <> 0 OR revoked <> 0
        ORDER BY chain_id, agent_id  -- one lock order for every writer
        ON CONFLICT (chain_id, agent_id) DO UPDATE
        SET feedback_count = s.feedback_count + EXCLUDED.feedback_count,
            revoked_count = s.revoked_count + EXCLUDED.revoked_count
    $query$, read_model_changes(TG_OP));
    RETURN NULL;
END
$$;

CREATE FUNCTION feedback_clients_stats_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format($query$
        WITH changes AS (%s), by_agent AS (
            INSERT INTO agent_feedback_stats AS s (chain_id, agent_id, client_count)
            SELECT chain_id, agent_id, sum(sign)
            FROM changes
            GROUP BY chain_id, agent_id
            HAVING sum(sign) <> 0
            ORDER BY chain_id, agent_id
            ON CONFLICT (chain_id, agent_id) DO UPDATE
            SET client_count = s.client_count + EXCLUDED.client_count
        )
        INSERT INTO client_feedback_stats AS s (chain_id, client_address, feedback_count,
                                                agent_count)
        SELECT chain_id, client_address, sum(sign * last_index), sum(sign)
        FROM changes
        GROUP BY chain_id, client_address
        HAVING sum(sign * last_index) <> 0 OR sum(sign) <> 0
        ORDER BY chain_id, client_address
        ON CONFLICT (chain_id, client_address) DO UPDATE
        SET feedback_count = s.feedback_count + EXCLUDED.feedback_count,
            agent_count = s.agent_count + EXCLUDED.agent_count
    $query$, read_model_changes(TG_OP));
    RETURN NULL;
END
$$;

CREATE TRIGGER feedback_stats_insert AFTER INSERT ON feedback
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_stats_changed();
CREATE TRIGGER feedback_stats_update AFTER UPDATE ON feedback
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_stats_changed();
CREATE TRIGGER feedback_stats_delete AFTER DELETE ON feedback
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_stats_changed();
CREATE TRIGGER feedback_clients_stats_insert AFTER INSERT ON feedback_clients
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_clients_stats_changed();
CREATE TRIGGER feedback_clients_stats_update AFTER UPDATE ON feedback_clients
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_clients_stats_changed();
CREATE TRIGGER feedback_clients_stats_delete AFTER DELETE ON feedback_clients
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_clients_stats_changed();

-- The counts of the model built so far.
INSERT INTO agent_feedback_stats (chain_id, agent_id, feedback_count, revoked_count,
                                  client_count)
SELECT chain_id, agent_id, sum(counted), sum(revoked), sum(clients)
FROM (
    SELECT chain_id, agent_id, count(*) FILTER (WHERE NOT revoked) AS counted,
           count(*) FILTER (WHERE revoked) AS revoked, 0 AS clients
    FROM feedback GROUP BY chain_id, agent_id
    UNION ALL
    SELECT chain_id, agent_id, 0, 0, count(*)
    FROM feedback_clients GROUP BY chain_id, agent_id
) AS counts
GROUP BY chain_id, agent_id;

INSERT INTO client_feedback_stats (chain_id, client_address, feedback_count, agent_count)
SELECT chain_id, client_address, sum(last_index), count(*)
FROM feedback_clients
GROUP BY chain_id, client_address;

-- Agent listings: newest first, latest activity first (across chains, or of one chain).
CREATE INDEX agents_first_idx ON agents (first_at DESC, chain_id DESC, agent_id DESC);
CREATE INDEX agents_last_idx ON agents (last_at DESC, chain_id DESC, agent_id DESC);
-- Filters by owner and by agent wallet (lower case, as the model stores addresses).
CREATE INDEX agents_owner_idx ON agents (owner);
CREATE INDEX agents_wallet_idx ON agents (agent_wallet) WHERE agent_wallet IS NOT NULL;

-- An agent's history: its identity events in chain order, without reading its feedback.
CREATE INDEX events_agent_identity_idx ON events (chain_id, agent_id, block_number, log_index)
    WHERE registry = 'identity' AND agent_id IS NOT NULL;
