ALTER TABLE agent_mcp_tokens DROP COLUMN owner_block, DROP COLUMN owner_log_index;
