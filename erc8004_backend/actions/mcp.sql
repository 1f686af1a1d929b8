-- agent_mcp_token --
-- The agent's MCP token as stored: sealed with a key of ERC8004_TOKEN_KEYS, bound to
-- "<chain_id>:<agent_id>".
SELECT token_ciphertext, key_id
FROM agent_mcp_tokens
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
