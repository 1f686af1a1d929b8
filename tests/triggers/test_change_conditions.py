"""Change conditions against PostgreSQL: owner, agentWallet and URI changes fire once each,
with the old and new values (and the registration files' difference) in the job payload, and
a backtest shows the same firings and values."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.processor import load_trigger_index, process_batch

CHAIN = 84532
ALICE = "a11ce000-0000-4000-8000-000000000001"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ZERO = "0x" + "0" * 40
A, B, C = (f"0x{digit * 40}" for digit in "abc")
W1, W2 = (f"0x{digit * 40}" for digit in "12")


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO users (id, username, email, password_hash)"
            " VALUES (%s, 'alice', 'a@example.com', 'x')",
            [ALICE],
        )
        await connection.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)",
            [CHAIN],
        )
        yield connection


async def add_trigger(conn: psycopg.AsyncConnection, conditions: list[dict[str, Any]]) -> str:
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, fires_from)"
        " VALUES (%s, 'changes', %s, 'identity', %s) RETURNING id::text",
        [ALICE, CHAIN, T0 - timedelta(days=1)],
    )
    row = await cursor.fetchone()
    assert row is not None
    for position, condition in enumerate(conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
            " operator, value, config, group_path) VALUES (%s, %s, %s, %s, %s, '', %s, %s)",
            [row[0], position, condition["condition_type"], condition["field"],
             condition.get("operator", "!="), json.dumps(condition.get("config", {})),
             condition.get("group_path", "")],
        )  # fmt: skip
    await conn.execute(
        "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
        " VALUES (%s, 0, 'rest', 1, '{}')",
        [row[0]],
    )
    return str(row[0])


async def add_event(
    conn: psycopg.AsyncConnection, block: int, event_type: str, agent: int, **columns: Any
) -> None:
    names = ", ".join(columns)
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id"
        f"{', ' if columns else ''}{names}) VALUES"
        f" (%s, 'identity', %s, '0xcc', %s, %s, %s, %s, 0, 0, %s{', %s' * len(columns)})",
        [CHAIN, event_type, block, f"0x{block:064x}", T0 + timedelta(minutes=block),
         f"0x{block:064x}", agent, *columns.values()],
    )  # fmt: skip


async def wallet(
    conn: psycopg.AsyncConnection, block: int, agent: int, address: str | None
) -> None:
    value = bytes.fromhex(address[2:]) if address else b""
    await add_event(conn, block, "MetadataSet", agent, metadata_key="agentWallet",
                    metadata_value=value)  # fmt: skip


async def add_file(conn: psycopg.AsyncConnection, agent: int, uri: str, document: Any) -> None:
    await conn.execute(
        "INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri, status,"
        " document) VALUES (%s, %s, encode(sha256(convert_to(%s, 'UTF8')), 'hex'), %s,"
        " 'fetched', %s)",
        [CHAIN, agent, uri, uri, json.dumps(document)],
    )


async def history(conn: psycopg.AsyncConnection) -> None:
    """Agent 7: minted to A with wallet A and URI u1; its wallet changes to W1, then is
    cleared by a transfer to B (which also clears it on chain); URI u2, then u2 again, then
    u3 (whose file is not fetched yet). Agent 8 is minted only."""
    await add_event(conn, 1, "Transfer", 7, from_address=ZERO, to_address=A)
    await add_event(conn, 2, "Registered", 7, token_uri="ipfs://u1", owner=A)
    await wallet(conn, 3, 7, A)
    await wallet(conn, 4, 7, W1)
    await add_event(conn, 5, "Transfer", 7, from_address=A, to_address=B)
    await wallet(conn, 6, 7, None)
    await add_event(conn, 7, "URIUpdated", 7, token_uri="ipfs://u2", updated_by=B)
    await add_event(conn, 8, "URIUpdated", 7, token_uri="ipfs://u2", updated_by=B)
    await add_event(conn, 9, "URIUpdated", 7, token_uri="ipfs://u3", updated_by=B)
    await add_event(conn, 10, "Transfer", 8, from_address=ZERO, to_address=C)
    await add_event(conn, 11, "Transfer", 7, from_address=B, to_address=B)  # to itself
    await add_file(conn, 7, "ipfs://u1", {
        "name": "seven", "active": True, "x402Support": False,
        "services": [{"name": "MCP", "endpoint": "https://a.example/mcp"},
                     {"name": "web", "endpoint": "https://a.example"}],
    })  # fmt: skip
    await add_file(conn, 7, "ipfs://u2", {
        "name": "seven", "active": False, "x402Support": False,
        "services": [{"name": "MCP", "endpoint": "https://b.example/mcp"},
                     {"name": "A2A", "endpoint": "https://b.example/card.json"}],
    })  # fmt: skip
    await conn.execute("SELECT read_model_rebuild(%s)", [CHAIN])
    await conn.execute(
        "UPDATE checkpoints SET block_number = 11, confirmed_block_number = 11 WHERE chain_id = %s",
        [CHAIN],
    )


async def process_all(conn: psycopg.AsyncConnection, batch: int = 3) -> None:
    index = await load_trigger_index(conn)
    while (await process_batch(conn, CHAIN, index, limit=batch)).events:
        pass


async def job_values(conn: psycopg.AsyncConnection, trigger_id: str) -> list[tuple[int, Any]]:
    cursor = await conn.execute(
        "SELECT e.block_number, j.payload -> 'computed' FROM action_jobs j"
        " JOIN events e ON e.id = j.event_id WHERE j.trigger_id = %s ORDER BY e.block_number",
        [trigger_id],
    )
    # The trigger's name and id travel too: only the computed values are compared.
    return [(block, {k: v for k, v in computed.items() if k not in ("trigger_id", "trigger_name")})
            for block, computed in await cursor.fetchall()]  # fmt: skip


async def backtest_values(conn: psycopg.AsyncConnection, trigger_id: str) -> list[tuple[int, Any]]:
    result = await backtest(conn, trigger_id)
    return [(f.block_number, json.loads(json.dumps(f.computed))) for f in result.fired]


def picked(rows: list[tuple[int, Any]], *names: str) -> list[tuple[Any, ...]]:
    return [(block, *(computed.get(name) for name in names)) for block, computed in rows]


async def test_owner_changed_fires_for_transfers_not_for_the_mint_nor_to_the_same_owner(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await add_trigger(conn, [{"condition_type": "owner_changed", "field": "owner"}])
    await history(conn)
    await process_all(conn)
    rows = await job_values(conn, trigger)
    assert picked(rows, "old_owner", "new_owner") == [(5, A, B)]
    assert picked(await backtest_values(conn, trigger), "old_owner", "new_owner") == [(5, A, B)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("set", [(3, None, A), (4, A, W1)]),
        ("unset", [(6, W1, None)]),
        ("any", [(3, None, A), (4, A, W1), (6, W1, None)]),
    ],
)
async def test_wallet_changed_reads_the_previous_wallet_from_earlier_events(
    conn: psycopg.AsyncConnection, change: str, expected: list[tuple[Any, ...]]
) -> None:
    trigger = await add_trigger(conn, [{"condition_type": "wallet_changed",
                                        "field": "agent_wallet",
                                        "config": {"change": change}}])  # fmt: skip
    await history(conn)
    # One event per batch: the earlier wallets are in batches already committed.
    await process_all(conn, batch=1)
    assert picked(await job_values(conn, trigger), "old_wallet", "new_wallet") == expected
    assert picked(await backtest_values(conn, trigger), "old_wallet", "new_wallet") == expected


async def test_uri_changed_shows_the_registration_files_difference_or_that_it_is_pending(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await add_trigger(conn, [{"condition_type": "uri_changed", "field": "agent_uri"}])
    await history(conn)
    await process_all(conn)
    rows = await job_values(conn, trigger)
    names = ("old_uri", "new_uri", "registration_pending", "services_added",
             "services_removed", "services_changed", "active_before", "active_after",
             "mcp_endpoint_before", "mcp_endpoint_after", "x402_before")  # fmt: skip
    # u2 -> u2 changes nothing; u3's file is not stored: pending, no difference.
    assert picked(rows, *names) == [
        (7, "ipfs://u1", "ipfs://u2", "false", "A2A https://b.example/card.json",
         "web https://a.example", "MCP https://b.example/mcp", "true", "false",
         "https://a.example/mcp", "https://b.example/mcp", "false"),
        (9, "ipfs://u2", "ipfs://u3", "true", None, None, None, None, None, None, None, None),
    ]  # fmt: skip
    assert picked(await backtest_values(conn, trigger), *names) == picked(rows, *names)


async def test_uri_changed_on_some_aspects_inside_groups(conn: psycopg.AsyncConnection) -> None:
    """`on` fires only when those aspects differ (not for a pending file); a change condition
    works inside any/not like any other."""
    on_x402 = await add_trigger(conn, [{"condition_type": "uri_changed", "field": "agent_uri",
                                        "config": {"on": ["x402"]}}])  # fmt: skip
    on_mcp = await add_trigger(conn, [{"condition_type": "uri_changed", "field": "agent_uri",
                                       "config": {"on": ["x402", "mcp_endpoint"]}}])  # fmt: skip
    either = await add_trigger(conn, [
        {"condition_type": "owner_changed", "field": "owner", "group_path": "any[0]"},
        {"condition_type": "wallet_changed", "field": "agent_wallet",
         "config": {"change": "unset"}, "group_path": "any[1].all[0]"},
        {"condition_type": "uri_changed", "field": "agent_uri", "group_path": "any[1].all[1].not"},
    ])  # fmt: skip
    await history(conn)
    await process_all(conn)
    assert [block for block, _ in await job_values(conn, on_x402)] == []
    assert [block for block, _ in await job_values(conn, on_mcp)] == [7]
    assert [block for block, _ in await job_values(conn, either)] == [5, 6]
    for trigger in (on_x402, on_mcp, either):
        assert await backtest_values(conn, trigger) == await job_values(conn, trigger)
