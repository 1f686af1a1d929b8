"""A small indexed world for the tools that read the read model, written with
tests/support/agent_events.py (events straight into `events`, the model built from them by
the database's own read_model_rebuild)::

    await build_world(conn)   # then SCOUT of chain 31337 has the facts below

SCOUT: registered by OWNER, its registration file fetched (name Scout, an MCP service);
feedback 90 (quality) from CLIENT_A, 45.5 (speed) from CLIENT_B, then 70 (quality) from
CLIENT_A, revoked; the owner's response to CLIENT_A's first; a validation request to
VALIDATOR, answered 100 (tag hard-finality). OTHER: registered by OTHER_OWNER, nothing else.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.agent_events import ChainEvents

CHAIN = 31337
OWNER = "0x" + "aa" * 20
OTHER_OWNER = "0x" + "ab" * 20
CLIENT_A = "0x" + "c1" * 20
CLIENT_B = "0x" + "c2" * 20
VALIDATOR = "0x" + "e5" * 20
REQUEST_HASH = "0x" + "12" * 32
SCOUT_URI = "https://scout.example/agent.json"
SCOUT_MCP = "https://scout.example/mcp"
SCOUT, OTHER = 0, 1  # agent ids


async def build_world(conn: psycopg.AsyncConnection[Any]) -> None:
    chain = ChainEvents(conn, CHAIN)
    assert await chain.register(OWNER, SCOUT_URI) == SCOUT
    assert await chain.register(OTHER_OWNER, "https://other.example/a.json") == OTHER
    await chain.feedback(SCOUT, CLIENT_A, 90, 0, "quality")
    await chain.feedback(SCOUT, CLIENT_B, 455, 1, "speed")
    revoked = await chain.feedback(SCOUT, CLIENT_A, 70, 0, "quality")
    await chain.revoke(SCOUT, CLIENT_A, revoked)
    await chain.respond(SCOUT, CLIENT_A, 1, OWNER, "ipfs://thanks")
    await chain.request_validation(SCOUT, VALIDATOR, REQUEST_HASH)
    await chain.respond_validation(SCOUT, VALIDATOR, REQUEST_HASH, 100, "hard-finality")
    document = {"type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
                "name": "Scout", "description": "Finds things on the web.",
                "services": [{"name": "MCP", "endpoint": SCOUT_MCP}], "active": True,
                "supportedTrust": ["reputation"]}  # fmt: skip
    await chain.registration(SCOUT, SCOUT_URI, document, mcp=SCOUT_MCP)
    await chain.rebuild()
