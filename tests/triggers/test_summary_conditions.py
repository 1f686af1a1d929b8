"""Summary conditions against PostgreSQL: the processor reads the read model as of each event
(the model already holds later events, as the indexer applies it per batch), creates exactly
one job per crossing, and a backtest shows the same firings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.processor import load_trigger_index, process_batch

CHAIN = 84532
ALICE = "a11ce000-0000-4000-8000-000000000001"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
A, B, C = (f"0x{digit * 40}" for digit in "abc")
V1, V2 = (f"0x{digit * 40}" for digit in "12")


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


async def add_trigger(
    conn: psycopg.AsyncConnection, registry: str, conditions: list[dict[str, Any]]
) -> str:
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, is_stateful, fires_from)"
        " VALUES (%s, 'summary', %s, %s, true, %s) RETURNING id::text",
        [ALICE, CHAIN, registry, T0 - timedelta(days=1)],
    )
    row = await cursor.fetchone()
    assert row is not None
    for position, condition in enumerate(conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
            " operator, value, config) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [row[0], position, condition["condition_type"], condition["field"],
             condition["operator"], condition["value"], json.dumps(condition.get("config", {}))],
        )  # fmt: skip
    await conn.execute(
        "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
        " VALUES (%s, 0, 'rest', 1, '{}')",
        [row[0]],
    )
    return str(row[0])


async def add_event(
    conn: psycopg.AsyncConnection, block: int, event_type: str, agent: int, log_index: int = 0,
    **columns: Any,
) -> None:  # fmt: skip
    registry = "validation" if event_type.startswith("Validation") else "reputation"
    names = ", ".join(columns)
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id"
        f"{', ' if columns else ''}{names}) VALUES"
        f" (%s, %s, %s, '0xcc', %s, %s, %s, %s, 0, %s, %s{', %s' * len(columns)})",
        [CHAIN, registry, event_type, block, f"0x{block:064x}",
         T0 + timedelta(minutes=block), f"0x{block:063x}{log_index}", log_index, agent,
         *columns.values()],
    )  # fmt: skip


async def give(conn: psycopg.AsyncConnection, block: int, agent: int, client: str, index: int,
               value: int, decimals: int = 0, log_index: int = 0, tag1: str = "") -> None:  # fmt: skip
    await add_event(conn, block, "NewFeedback", agent, log_index, client_address=client,
                    feedback_index=index, value=value, value_decimals=decimals,
                    score=Decimal(value).scaleb(-decimals), tag1=tag1, tag2="")  # fmt: skip


async def index_all(conn: psycopg.AsyncConnection, last_block: int) -> None:
    """The read model of every event, and every block confirmed: the processor then runs
    with the model ahead of it."""
    await conn.execute("SELECT read_model_rebuild(%s)", [CHAIN])
    await conn.execute(
        "UPDATE checkpoints SET block_number = %s, confirmed_block_number = %s WHERE chain_id = %s",
        [last_block, last_block, CHAIN],
    )


async def process_all(conn: psycopg.AsyncConnection, batch: int = 2) -> None:
    index = await load_trigger_index(conn)
    while (await process_batch(conn, CHAIN, index, limit=batch)).events:
        pass


async def jobs(conn: psycopg.AsyncConnection, trigger_id: str) -> list[tuple[Any, ...]]:
    """Each job's event (block, log index, agent) and computed values."""
    cursor = await conn.execute(
        "SELECT e.block_number, e.log_index, e.agent_id, j.payload -> 'computed'"
        " FROM action_jobs j JOIN events e ON e.id = j.event_id"
        " WHERE j.trigger_id = %s ORDER BY e.block_number, e.log_index",
        [trigger_id],
    )
    return await cursor.fetchall()


async def backtest_firings(
    conn: psycopg.AsyncConnection, trigger_id: str, **bounds: Any
) -> list[tuple[int, int, Decimal]]:
    result = await backtest(conn, trigger_id, **bounds)
    return [(f.block_number, f.log_index, f.agent_id) for f in result.fired]


def firings(rows: list[tuple[Any, ...]]) -> list[tuple[int, int, Decimal]]:
    return [(block, log_index, agent) for block, log_index, agent, _ in rows]


async def test_reputation_threshold_creates_one_job_per_crossing_as_the_backtest_shows(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await add_trigger(conn, "reputation", [{
        "condition_type": "reputation_threshold", "field": "reputation", "operator": "<",
        "value": "50", "config": {"clients": [A, B.upper().replace("0X", "0x")]},
    }])  # fmt: skip
    await give(conn, 1, 42, A, 1, 60)  # 60
    await give(conn, 2, 42, C, 1, 10)  # C is not listed: still 60
    # 20.0 with one decimal: (60 + 20) / 2 = 40 (m = 0, the smaller on a tie): crosses.
    await give(conn, 3, 42, B, 1, 200, decimals=1)
    await give(conn, 4, 42, A, 2, 100)  # 180 / 3 = 60: back above
    await give(conn, 5, 42, B, 2, 30)  # 210 / 4 = 52: above
    # In the same block, after it: A's 100 revoked, 110 / 3 = 36: crosses (at log 1, not 0).
    await add_event(conn, 5, "FeedbackRevoked", 42, 1, client_address=A, feedback_index=2)
    await add_event(conn, 6, "ResponseAppended", 42, client_address=A, feedback_index=1,
                    responder="0x" + "99" * 20)  # fmt: skip
    await give(conn, 7, 42, A, 3, 10)  # 120 / 4 = 30: still below
    await give(conn, 8, 43, A, 1, 0)  # agent 43's first: from nothing to 0, crosses
    await give(conn, 9, 42, B, 3, 200)  # 320 / 5 = 64: above
    await give(conn, 10, 42, A, 4, -100)  # 220 / 6 = 36: crosses
    await index_all(conn, 10)
    await process_all(conn)
    rows = await jobs(conn, trigger)
    expected = [(3, 0, Decimal(42)), (5, 1, Decimal(42)), (8, 0, Decimal(43)),
                (10, 0, Decimal(42))]  # fmt: skip
    assert firings(rows) == expected
    assert rows[0][3] | {"trigger_id": "", "trigger_name": ""} == {
        "reputation_before": "60", "reputation_after": "40", "reputation_count": 2,
        "trigger_id": "", "trigger_name": "",
    }  # fmt: skip
    assert [(c["reputation_before"], c["reputation_after"]) for *_, c in rows[1:]] == [
        ("52", "36"),
        (None, "0"),
        ("64", "36"),
    ]
    assert await backtest_firings(conn, trigger) == expected
    # From the middle of history: the summary before the range comes from the model.
    assert await backtest_firings(conn, trigger, from_block=6) == expected[2:]
    assert await backtest_firings(conn, trigger, from_block=4, to_block=7) == expected[1:2]


async def test_validation_threshold_creates_one_job_per_crossing_as_the_backtest_shows(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await add_trigger(conn, "validation", [{
        "condition_type": "validation_threshold", "field": "validation", "operator": "<",
        "value": "70", "config": {"tag": "zk"},
    }])  # fmt: skip
    h1, h2, h3 = (f"0x{digit * 64}" for digit in "def")

    async def request(block: int, request_hash: str, validator: str) -> None:
        await add_event(conn, block, "ValidationRequest", 42, validator_address=validator,
                        request_hash=request_hash)  # fmt: skip

    async def respond(block: int, request_hash: str, validator: str, response: int,
                      tag: str = "zk") -> None:  # fmt: skip
        await add_event(conn, block, "ValidationResponse", 42, validator_address=validator,
                        request_hash=request_hash, response=response, tag=tag)  # fmt: skip

    await request(1, h1, V1)
    await respond(2, h1, V1, 90)  # 90
    await request(3, h2, V2)
    await respond(4, h2, V2, 30)  # 60: crosses
    await respond(5, h1, V1, 100)  # 65: still below
    await respond(6, h2, V2, 80)  # 90: back above
    await respond(7, h3, V2, 0)  # no such request: nothing changes
    await respond(8, h2, V2, 10)  # 55: crosses again
    await request(9, h3, V1)
    await respond(10, h3, V1, 0, tag="other")  # another tag: not counted
    await index_all(conn, 10)
    await process_all(conn, batch=3)
    rows = await jobs(conn, trigger)
    expected = [(4, 0, Decimal(42)), (8, 0, Decimal(42))]
    assert firings(rows) == expected
    assert [(c["validation_before"], c["validation_after"], c["validation_count"])
            for *_, c in rows] == [("90", "60", 2), ("90", "55", 2)]  # fmt: skip
    assert await backtest_firings(conn, trigger) == expected
    assert await backtest_firings(conn, trigger, from_block=5) == expected[1:]


async def test_a_saved_lens_with_client_histories_as_of_each_event(
    conn: psycopg.AsyncConnection,
) -> None:
    """A client counts once it has given two feedback on the chain (to any agent): its
    history as of the event decides, before and after it."""
    await conn.execute(
        "INSERT INTO reputation_lenses (user_id, name, definition) VALUES (%s, 'seasoned', %s)",
        [ALICE, json.dumps({"min_feedback": 2})],
    )
    trigger = await add_trigger(conn, "reputation", [
        {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
         "value": "42"},
        {"condition_type": "reputation_threshold", "field": "reputation", "operator": "<",
         "value": "50", "config": {"lens_name": "seasoned"}},
    ])  # fmt: skip
    await give(conn, 1, 42, A, 1, 80)  # A has one feedback: no client counts
    await give(conn, 2, 43, A, 1, 30)  # A has two (another agent's event)
    await give(conn, 3, 42, B, 1, 20)  # A counts (80), B has one: 80
    await give(conn, 4, 42, B, 2, 10)  # B has two: (80 + 20 + 10) / 3: crosses
    await give(conn, 5, 42, C, 1, 0)  # C has one: unchanged
    await index_all(conn, 5)
    await process_all(conn)
    rows = await jobs(conn, trigger)
    assert firings(rows) == [(4, 0, Decimal(42))]
    assert rows[0][3]["reputation_before"] == "80"
    assert Decimal(rows[0][3]["reputation_after"]) == round(Decimal(110) / 3, 18)
    assert await backtest_firings(conn, trigger) == [(4, 0, Decimal(42))]
    # A changed lens is read with the trigger: now B alone counts, from its first feedback.
    await conn.execute("UPDATE reputation_lenses SET definition = %s",
                       [json.dumps({"allowlist": [B]})])  # fmt: skip
    assert await backtest_firings(conn, trigger) == [(3, 0, Decimal(42))]
