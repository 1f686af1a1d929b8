-- Migration 23's trigger functions and the function that built their statements, as they were.
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

CREATE OR REPLACE FUNCTION feedback_stats_changed() RETURNS trigger
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

CREATE OR REPLACE FUNCTION feedback_clients_stats_changed() RETURNS trigger
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

