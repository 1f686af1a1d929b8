"""Agents and their reputation: the read side of the ERC-8004 model.

The read model's own reader is `read`: agents, feedback, responses and validations. The
indexer writes the model (migration 20 defines its tables and the SQL functions that apply
events to it); nothing here writes.
"""
