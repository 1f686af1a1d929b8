-- read_model_clear forgets the counts of what it clears too (migration 23's
-- agent_feedback_stats, and for a whole chain client_feedback_stats), so that a rebuild makes
-- them again from the events. The triggers on feedback and feedback_clients move the counts
-- by what a statement changes: a count that had drifted (a row edited by hand, a bug of an
-- earlier version) stayed off by as much through `erc8004 db rebuild-read-model`, which
-- clears and applies a chain's events again. A cleared agent's counts are made anew as its
-- events are applied (its agents row brings a zero row, agents_stats_row). A client's counts
-- span the chain's agents: clearing some agents (a reorg's roll-back) takes their part out
-- by trigger, as before.
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
    -- After the deletes above, whose triggers took their rows out of the counts: whatever is
    -- left is drift.
    DELETE FROM agent_feedback_stats
    WHERE chain_id = p_chain_id AND (p_agents IS NULL OR agent_id = ANY (p_agents));
    IF p_agents IS NULL THEN
        DELETE FROM client_feedback_stats WHERE chain_id = p_chain_id;
    END IF;
END
$$;
