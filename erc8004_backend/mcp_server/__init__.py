"""The backend's own MCP server, for agents: read-only tools over what the indexer knows of
every agent (profiles, feedback, reputation, validations, recent events).

`tools` defines each tool (its arguments, with their JSON schema, and what it answers);
`server` makes an MCP server of them with the official SDK's low-level `Server`. The API
serves it over streamable HTTP at /mcp (api/mcp.py, signed in with an API key), and
`erc8004 mcp` over stdio for desktop MCP clients (cli/mcp.py).

Not to be confused with actions/mcp.py, the client that calls tools on an agent's own MCP
server.
"""
