-- agent_owner --
-- The agent's owner as indexed: the address its latest identity event naming an owner gives
-- (Registered: owner; Transfer: to_address, the zero address when the agent was burned),
-- and that event's position.
SELECT CASE event_type WHEN 'Transfer' THEN to_address ELSE owner END AS owner,
       block_number, log_index
FROM events
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
  AND registry = 'identity'
  AND (event_type = 'Registered' AND owner IS NOT NULL
       OR event_type = 'Transfer' AND to_address IS NOT NULL)
ORDER BY block_number DESC, log_index DESC
LIMIT 1

-- set_token --
-- Insert or replace; `created` tells the two apart (a row just inserted has no xmax). With
-- the owner event it was authorized under: a Transfer after that one retires it.
INSERT INTO agent_mcp_tokens (chain_id, agent_id, token_ciphertext, key_id, created_by,
                              owner_block, owner_log_index)
VALUES (%(chain_id)s, %(agent_id)s::numeric, %(ciphertext)s, %(key_id)s, %(user_id)s,
        %(owner_block)s, %(owner_log_index)s)
ON CONFLICT (chain_id, agent_id) DO UPDATE
SET token_ciphertext = EXCLUDED.token_ciphertext,
    key_id = EXCLUDED.key_id,
    created_by = EXCLUDED.created_by,
    owner_block = EXCLUDED.owner_block,
    owner_log_index = EXCLUDED.owner_log_index,
    updated_at = now()
RETURNING updated_at, (xmax = 0) AS created

-- delete_token --
DELETE FROM agent_mcp_tokens
WHERE chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
RETURNING id

-- create_challenge --
-- Also forgets challenges that expired more than an hour ago (until then, using one is
-- refused as expired rather than unknown).
WITH forgotten AS (
    DELETE FROM mcp_token_challenges WHERE expires_at < now() - interval '1 hour'
)
INSERT INTO mcp_token_challenges
    (nonce, user_id, chain_id, agent_id, action, token_sha256, signer, message, expires_at)
VALUES (%(nonce)s, %(user_id)s, %(chain_id)s, %(agent_id)s::numeric, %(action)s,
        %(token_sha256)s, %(signer)s, %(message)s, %(expires_at)s)

-- consume_challenge --
-- Single use: of two requests with one nonce, one deletes the row and the other finds none.
-- Only the user who asked, for the agent it was asked for, consumes it.
DELETE FROM mcp_token_challenges
WHERE nonce = %(nonce)s AND user_id = %(user_id)s
  AND chain_id = %(chain_id)s AND agent_id = %(agent_id)s::numeric
RETURNING action, token_sha256, signer, message, expires_at
