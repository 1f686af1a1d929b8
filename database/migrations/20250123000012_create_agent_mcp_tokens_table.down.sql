DROP TABLE agent_mcp_tokens;
