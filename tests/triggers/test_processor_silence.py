"""Silence triggers against PostgreSQL: the processor fires a silent period as the confirmed
head's time passes its end, with no event at all, exactly once (a second run, a replay and a
backtest agree), and the worker delivers it to a real webhook receiver with its template
fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.worker import Worker
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from erc8004_backend.triggers import processor
from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.processor import load_trigger_index, process_batch
from erc8004_backend.triggers.replay import replay_batch, start_replays
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import create_trigger
from tests.support.waiting import eventually

CHAIN = 31337  # tests.support.jobs' chain
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
SILENT_HOUR = {"condition_type": "silence", "field": "silence", "operator": ">=", "value": "1h"}


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)", [CHAIN],
        )  # fmt: skip
        yield connection


async def silence_trigger(
    conn: psycopg.AsyncConnection, conditions: list[dict[str, Any]], config: dict[str, Any],
    *, box: SecretBox | None = None,
) -> tuple[str, str, str | None]:  # fmt: skip
    trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
    await conn.execute("UPDATE triggers SET is_stateful = true, fires_from = %s WHERE id = %s",
                       [T0, trigger])  # fmt: skip
    for position, row in enumerate(conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
            " operator, value, config) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [trigger, position, row["condition_type"], row["field"], row["operator"],
             row["value"], json.dumps(row.get("config", {}))],
        )  # fmt: skip
    return trigger, action, secret


async def feedback(conn: psycopg.AsyncConnection, block: int, agent: int, minutes: int) -> int:
    cursor = await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " client_address, value, value_decimals, score)"
        " VALUES (%s, 'reputation', 'NewFeedback', %s, %s, %s, %s, %s, 0, 0, %s, %s, 50, 0, 50)"
        " RETURNING id",
        [CHAIN, "0x" + "aa" * 20, block, f"0x{block:064x}", T0 + timedelta(minutes=minutes),
         f"0x{block:064x}", agent, "0x" + "cc" * 20],
    )  # fmt: skip
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def reach(conn: psycopg.AsyncConnection, block: int, minutes: int) -> None:
    """The indexer has confirmed `block`, whose time is T0 + `minutes`."""
    await conn.execute(
        "INSERT INTO indexed_blocks (chain_id, block_number, block_hash, parent_hash, block_time)"
        " VALUES (%s, %s, %s, %s, %s)",
        [CHAIN, block, f"0x{block:064x}", f"0x{block - 1:064x}", T0 + timedelta(minutes=minutes)],
    )  # fmt: skip
    await conn.execute("UPDATE checkpoints SET block_number = %s, confirmed_block_number = %s"
                       " WHERE chain_id = %s", [block, block, CHAIN])  # fmt: skip


async def process(conn: psycopg.AsyncConnection) -> int:
    result = await process_batch(conn, CHAIN, await load_trigger_index(conn))
    return result.fired


async def silence_jobs(conn: psycopg.AsyncConnection, trigger: str) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT event_id, silence_key, payload FROM action_jobs WHERE trigger_id = %s"
        " ORDER BY id", [trigger],
    )  # fmt: skip
    return list(await cursor.fetchall())


async def test_the_head_fires_a_silence_once_with_no_event_then_an_event_starts_another(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger, _, _ = await silence_trigger(conn, [
        {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
         "value": "42"}, SILENT_HOUR], {"url": "http://127.0.0.1:9/"})  # fmt: skip
    first = await feedback(conn, 1, 42, minutes=10)
    await feedback(conn, 2, 7, minutes=20)  # another agent's: no matter
    await reach(conn, 3, minutes=60)
    assert await process(conn) == 0  # silent for 50 minutes only
    await reach(conn, 4, minutes=69)
    assert await process(conn) == 0
    await reach(conn, 5, minutes=70)  # an hour after the feedback: due
    assert await process(conn) == 1
    [(event_id, key, payload)] = await silence_jobs(conn, trigger)
    assert event_id == first
    assert key.startswith(f"{trigger}:agent:42:")
    assert payload["event"]["event_type"] == "silence"
    assert payload["event"]["agent_id"] == "42"
    assert payload["event"]["block_number"] == 5
    assert payload["computed"]["silent_since"] == (T0 + timedelta(minutes=10)).isoformat()
    assert payload["computed"]["silence_seconds"] == 3600
    await reach(conn, 6, minutes=300)
    assert await process(conn) == 0  # once per silent period
    # The next feedback starts a new period; the head passes its end with no event between.
    second = await feedback(conn, 7, 42, minutes=310)
    await reach(conn, 8, minutes=400)
    assert await process(conn) == 1
    assert [job[0] for job in await silence_jobs(conn, trigger)] == [first, second]
    # The backtest over the same history shows the same two periods.
    truth = await backtest(conn, trigger)
    assert [(f.event_id, f.event_type) for f in truth.fired] == [(first, "silence"),
                                                                 (second, "silence")]  # fmt: skip


async def test_a_named_scope_is_silent_from_the_trigger_start_and_a_replay_adds_nothing(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger, _, _ = await silence_trigger(conn, [
        {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
         "value": "9"}, SILENT_HOUR], {"url": "http://127.0.0.1:9/"})  # fmt: skip
    await reach(conn, 1, minutes=59)
    assert await process(conn) == 0
    await reach(conn, 2, minutes=61)
    assert await process(conn) == 1
    [(event_id, key, payload)] = await silence_jobs(conn, trigger)
    assert event_id is None
    assert key.endswith(":")
    assert payload["computed"]["silent_since"] == T0.isoformat()
    # A replay of the history from the trigger's start covers the same period: no new job.
    await conn.execute("INSERT INTO trigger_replays (trigger_id, chain_id, from_time)"
                       " VALUES (%s, %s, %s)", [trigger, CHAIN, T0])  # fmt: skip
    await feedback(conn, 3, 9, minutes=62)
    await reach(conn, 4, minutes=63)
    assert await start_replays(conn, CHAIN) == 1
    cursor = await conn.execute("SELECT id FROM trigger_replays")
    (replay_id,) = await cursor.fetchone() or (0,)
    await replay_batch(conn, CHAIN, replay_id)
    assert len(await silence_jobs(conn, trigger)) == 1


async def test_an_unanswered_request_fires_and_an_answered_one_does_not(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger, _, _ = await silence_trigger(
        conn,
        [{**SILENT_HOUR, "config": {"scope": "request", "after": "ValidationRequest"}}],
        {"url": "http://127.0.0.1:9/"},
    )
    await conn.execute("UPDATE triggers SET registry = 'validation' WHERE id = %s", [trigger])

    async def validation(block: int, kind: str, request: int, minutes: int) -> int:
        cursor = await conn.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
            " validator_address, request_hash) VALUES (%s, 'validation', %s, %s, %s, %s, %s,"
            " %s, 0, 0, 1, %s, %s) RETURNING id",
            [CHAIN, kind, "0x" + "bb" * 20, block, f"0x{block:064x}",
             T0 + timedelta(minutes=minutes), f"0x{block:064x}", "0x" + "dd" * 20,
             f"0x{request:064x}"],
        )  # fmt: skip
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    answered = await validation(1, "ValidationRequest", 1, minutes=0)
    unanswered = await validation(2, "ValidationRequest", 2, minutes=5)
    await validation(3, "ValidationResponse", 1, minutes=50)
    await reach(conn, 4, minutes=120)
    assert await process(conn) == 1
    [(event_id, _key, payload)] = await silence_jobs(conn, trigger)
    assert event_id == unanswered != answered
    assert payload["event"]["request_hash"] == f"0x{2:064x}"


async def test_the_worker_delivers_a_silence_with_its_template_fields(migrated_url: str) -> None:
    box = SecretBox.from_spec(Settings().token_keys)
    async with (
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        serve_asgi(sink := WebhookSink(secret="")) as url,
    ):
        await conn.execute("INSERT INTO checkpoints (chain_id, block_number,"
                           " confirmed_block_number) VALUES (%s, 0, 0)", [CHAIN])  # fmt: skip
        body = {
            "text": "agent {{agent_id}} silent since {{silent_since}}"
            " ({{silence_seconds}} s), due {{timestamp}}: {{event_type}}"
        }
        _, _, secret = await silence_trigger(
            conn, [{"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
                    "value": "42"}, SILENT_HOUR],
            {"method": "POST", "url": url, "timeout_ms": 2000, "body_template": body}, box=box,
        )  # fmt: skip
        assert secret is not None
        sink.secret = secret
        await reach(conn, 1, minutes=90)
        assert await process(conn) == 1
        settings = Settings(database_url=migrated_url, allow_private_urls=True)
        async with AsyncConnectionPool(migrated_url, min_size=1, max_size=2, open=False,
                                       kwargs={"autocommit": True}) as pool:  # fmt: skip
            stop = asyncio.Event()
            task = asyncio.create_task(Worker(pool, settings).run(stop))
            await eventually(lambda: sink.received, timeout=20, what="the silence delivered")
            stop.set()
            await asyncio.wait_for(task, 20)
    [received] = sink.received
    assert received.signature_ok
    assert received.json()["text"] == (
        f"agent 42 silent since {T0.isoformat()} (3600 s),"
        f" due {(T0 + timedelta(hours=1)).isoformat()}: silence"
    )


async def test_a_head_confirmed_while_a_batch_is_read_fires_no_silence_its_events_end(
    conn: psycopg.AsyncConnection, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The indexer confirms blocks 4 and 5 (agent 42 speaks in block 4, at minute 65) while
    the processor reads a batch: the head it plans to must not be past events the batch does
    not hold, or the silence due at minute 70 fires at minute 75 although agent 42 spoke."""
    trigger, _, _ = await silence_trigger(conn, [
        {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
         "value": "42"}, SILENT_HOUR], {"url": "http://127.0.0.1:9/"})  # fmt: skip
    await feedback(conn, 1, 42, minutes=10)
    await reach(conn, 3, minutes=60)
    await process_batch(conn, CHAIN, await load_trigger_index(conn))
    await feedback(conn, 4, 42, minutes=65)  # stored, not confirmed yet
    confirmed_head = processor._confirmed_head

    async def confirmed_meanwhile(reading: psycopg.AsyncConnection, chain_id: int) -> Any:
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as other:
            await reach(other, 4, minutes=65)
            await reach(other, 5, minutes=75)
        return await confirmed_head(reading, chain_id)

    monkeypatch.setattr(processor, "_confirmed_head", confirmed_meanwhile)
    await process_batch(conn, CHAIN, await load_trigger_index(conn))
    assert await silence_jobs(conn, trigger) == []
