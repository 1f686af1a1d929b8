"""A small indexed world for the tools that read the read model: events written as the
indexer writes them, a registration file as its resolver stores it, and the model built from
the events by the database itself (`read_model_rebuild`, migration 20)::

    await build_world(conn)   # then agent 1 of chain 31337 is "Scout", with the facts below

Agent 1: registered and owned by OWNER, its registration file fetched (name Scout, an MCP
service); feedback 90 (quality) from CLIENT_A, 45.5 (speed) from CLIENT_B, then 70
(quality) from CLIENT_A, revoked; the owner's response to CLIENT_A's first; a validation
request to VALIDATOR, answered 100 (tag hard-finality). Agent 2: registered by OTHER_OWNER,
nothing else.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

CHAIN = 31337
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OWNER = "0x" + "aa" * 20
OTHER_OWNER = "0x" + "ab" * 20
CLIENT_A = "0x" + "c1" * 20
CLIENT_B = "0x" + "c2" * 20
VALIDATOR = "0x" + "e5" * 20
ZERO = "0x" + "00" * 20
REQUEST_HASH = "0x" + "12" * 32
SCOUT_URI = "https://scout.example/agent.json"
SCOUT_MCP = "https://scout.example/mcp"


async def insert_event(
    conn: psycopg.AsyncConnection[Any],
    registry: str,
    event_type: str,
    block: int,
    log_index: int = 0,
    **fields: Any,
) -> None:
    """An event of CHAIN at `block`, a minute per block after T0."""
    columns = ["chain_id", "registry", "event_type", "contract_address", "block_number",
               "block_hash", "block_time", "transaction_hash", "transaction_index", "log_index",
               *fields]  # fmt: skip
    values = [CHAIN, registry, event_type, "0x" + "80" * 20, block, f"0x{block:064x}",
              T0 + timedelta(minutes=block), f"0x{block:032x}{log_index:032x}", 0, log_index,
              *fields.values()]  # fmt: skip
    await conn.execute(
        f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))})",
        values,
    )


async def feedback(
    conn: psycopg.AsyncConnection[Any],
    block: int,
    client: str,
    index: int,
    value: int,
    decimals: int,
    tag1: str,
) -> None:
    score = str(value / 10**decimals)
    await insert_event(conn, "reputation", "NewFeedback", block, agent_id=1,
                       client_address=client, feedback_index=index, value=value,
                       value_decimals=decimals, score=score, tag1=tag1, tag2="",
                       endpoint="https://scout.example/api")  # fmt: skip


async def build_world(conn: psycopg.AsyncConnection[Any]) -> None:
    for agent, owner, block, uri in ((1, OWNER, 10, SCOUT_URI),
                                     (2, OTHER_OWNER, 11, "https://other.example/a.json")):  # fmt: skip
        await insert_event(conn, "identity", "Registered", block, agent_id=agent,
                           owner=owner, token_uri=uri)  # fmt: skip
        await insert_event(conn, "identity", "Transfer", block, 1, agent_id=agent,
                           from_address=ZERO, to_address=owner)  # fmt: skip
    await feedback(conn, 12, CLIENT_A, 1, 90, 0, "quality")
    await feedback(conn, 13, CLIENT_B, 1, 455, 1, "speed")
    await feedback(conn, 14, CLIENT_A, 2, 70, 0, "quality")
    await insert_event(conn, "reputation", "FeedbackRevoked", 15, agent_id=1,
                       client_address=CLIENT_A, feedback_index=2)  # fmt: skip
    await insert_event(conn, "reputation", "ResponseAppended", 16, agent_id=1,
                       client_address=CLIENT_A, feedback_index=1, responder=OWNER,
                       response_uri="ipfs://thanks")  # fmt: skip
    await insert_event(conn, "validation", "ValidationRequest", 17, agent_id=1,
                       validator_address=VALIDATOR, request_hash=REQUEST_HASH,
                       request_uri="ipfs://request")  # fmt: skip
    await insert_event(conn, "validation", "ValidationResponse", 18, agent_id=1,
                       validator_address=VALIDATOR, request_hash=REQUEST_HASH, response=100,
                       tag="hard-finality")  # fmt: skip
    services = [{"name": "MCP", "endpoint": SCOUT_MCP, "version": "2025-06-18"}]
    document = {"type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
                "name": "Scout", "description": "Finds things on the web.",
                "services": services, "active": True, "supportedTrust": ["reputation"]}  # fmt: skip
    await conn.execute(
        "INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri, status,"
        " document, services, mcp_endpoint, fetched_at)"
        " VALUES (%s, 1, %s, %s, 'fetched', %s, %s, %s, %s)",
        [CHAIN, hashlib.sha256(SCOUT_URI.encode()).hexdigest(), SCOUT_URI, Jsonb(document),
         Jsonb(services), SCOUT_MCP, T0],
    )  # fmt: skip
    await conn.execute("SELECT read_model_rebuild(%s)", [CHAIN])
