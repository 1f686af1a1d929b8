"""Agents and their reputation: the read side of the ERC-8004 model.

The indexer writes the read model (migration 20 defines its tables and the SQL functions
that apply events to it); `read` reads it, `summaries` and `lenses` compute over it, and
nothing here writes.
"""
