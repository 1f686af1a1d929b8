"""Agents and their reputation: the read side of the ERC-8004 model.

The indexer writes the read model (migration 20 defines its tables and the SQL functions that
apply events to it); nothing here writes. `read` reads it as the reference contracts do;
`summaries` and `lenses` compute over what it returns; `service` answers the REST API, the MCP
server and the trigger engine.
"""
