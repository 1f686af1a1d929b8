"""Agents and their reputation: the read side of the ERC-8004 model."""
