-- agent_mcp_token --
-- The agent's MCP token as stored: sealed with a key of ERC8004_TOKEN_KEYS, bound to
-- "<chain_id>:<agent_id>"; whether the account asking set it; and whether the agent changed
-- hands since (a Transfer stored after the token was: its owner then proved ownership no
-- longer held).
SELECT t.token_ciphertext, t.key_id,
       t.created_by IS NOT DISTINCT FROM %(user_id)s::uuid AS set_by_user,
       EXISTS (
           SELECT FROM events AS e
           WHERE e.chain_id = t.chain_id AND e.agent_id = t.agent_id
             AND e.registry = 'identity' AND e.event_type = 'Transfer'
             AND e.created_at > t.updated_at
       ) AS changed_hands
FROM agent_mcp_tokens AS t
WHERE t.chain_id = %(chain_id)s AND t.agent_id = %(agent_id)s::numeric
