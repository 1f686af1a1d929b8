"""The trigger engine: conditions, stateful state machines, templates, the processor."""
