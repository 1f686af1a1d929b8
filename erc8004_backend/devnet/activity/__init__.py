"""Realistic ERC-8004 activity on the devnet: a seeded, deterministic generator.

`generator.ActivityGenerator` is what callers use (through `erc8004_backend.devnet`); its
parts, by job:

- `state`: what the generator knows of the registries, kept from confirmed logs;
- `content`: the values it writes (registration files, feedback values and tags, URIs);
- `transactions`: actions, how a round of them is sent in blocks, and the report;
- `context`: what the parts share (accounts, the one random stream, state, contracts);
- `planner`: random activity, one transaction per action;
- `bulk`: many events per transaction, through the `*Batch` functions;
- `scripted`: chosen actions that return what they created.
"""
