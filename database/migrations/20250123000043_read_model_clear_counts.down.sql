-- read_model_clear as migration 20 made it: the counts stay to the triggers.
CREATE OR REPLACE FUNCTION read_model_clear(p_chain_id bigint, p_agents numeric[] DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    DELETE FROM agents
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM agent_metadata
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM feedback
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM feedback_clients
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM feedback_responses
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    DELETE FROM validation_requests
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
END
$$;
