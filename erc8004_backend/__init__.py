"""ERC-8004 backend: index the registries, evaluate triggers, deliver actions."""

__version__ = "0.1.0"
