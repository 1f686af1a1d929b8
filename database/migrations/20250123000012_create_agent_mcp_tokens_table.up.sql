-- Tokens that authenticate pushes to an agent's own MCP server. Never stored in plain text:
-- token_ciphertext is AES-256-GCM (12-byte nonce || ciphertext || tag) under the key named
-- key_id, with "<chain_id>:<agent_id>" as associated data, so a ciphertext moved to another
-- agent's row fails to decrypt. The key comes from the environment (ERC8004_TOKEN_KEYS).
CREATE TABLE agent_mcp_tokens (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    chain_id         bigint NOT NULL,
    agent_id         numeric(78, 0) NOT NULL CHECK (agent_id >= 0),
    token_ciphertext bytea NOT NULL CHECK (length(token_ciphertext) > 28),
    key_id           text NOT NULL,
    created_by       uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain_id, agent_id)
);

CREATE TRIGGER agent_mcp_tokens_updated_at
    BEFORE UPDATE ON agent_mcp_tokens
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
