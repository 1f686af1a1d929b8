"""The read side of the read model: agents, feedback, responses and validations (`read`).

The indexer writes the model (migration 20 defines its tables and the SQL functions that
apply events to it); nothing here writes.
"""
