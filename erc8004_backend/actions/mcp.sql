-- agent_mcp_token --
-- The agent's MCP token as stored: sealed with a key of ERC8004_TOKEN_KEYS, bound to
-- "<chain_id>:<agent_id>"; whether the account asking set it; and whether the agent changed
-- hands since (a Transfer after the owner event the token was authorized under; for a token
-- set before that event was kept, a Transfer stored after the token: its owner then proved
-- ownership no longer held).
SELECT t.token_ciphertext, t.key_id,
       t.created_by IS NOT DISTINCT FROM %(user_id)s::uuid AS set_by_user,
       EXISTS (
           SELECT FROM events AS e
           WHERE e.chain_id = t.chain_id AND e.agent_id = t.agent_id
             AND e.registry = 'identity' AND e.event_type = 'Transfer'
             AND CASE WHEN t.owner_block IS NULL THEN e.created_at > t.updated_at
                      ELSE (e.block_number, e.log_index) > (t.owner_block, t.owner_log_index)
                 END
       ) AS changed_hands
FROM agent_mcp_tokens AS t
WHERE t.chain_id = %(chain_id)s AND t.agent_id = %(agent_id)s::numeric
