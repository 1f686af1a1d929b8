"""Indexing the ERC-8004 registries: chain events, checkpoints and agent registration files."""
