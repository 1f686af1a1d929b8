"""A trigger fires only for events from the moment it was created or last enabled: history
(older events, and those while it was off) warms its state but queues no job. Against a
real devnet indexed with history, and through every API path that turns a trigger on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest

from erc8004_backend.database.connection import connect
from erc8004_backend.database.migrations import Migrator, load_source
from erc8004_backend.devnet import Devnet
from erc8004_backend.indexer.runner import index_chain
from erc8004_backend.triggers.processor import load_trigger_index, process_batch
from tests.api.conftest import Account, api_client, make_account
from tests.conftest import MIGRATIONS

pytestmark = pytest.mark.timeout(120)

ALPHA = 0.5  # window_size 3
WEBHOOK = {"action_type": "rest", "priority": 1,
           "config": {"url": "https://hooks.example.com/h", "body_template": {"a": "{{agent_id}}"}}}  # fmt: skip


def ema_trigger(chain_id: int, agent: int) -> dict[str, Any]:
    """Fires on every feedback of `agent` (its average is always below 101)."""
    return {
        "name": "average of the agent", "chain_id": chain_id, "registry": "reputation",
        "is_stateful": True,
        "conditions": [
            {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
             "value": str(agent)},
            {"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "101",
             "config": {"window_size": 3}},
        ],
        "actions": [WEBHOOK],
    }  # fmt: skip


@pytest.fixture
async def api(migrated_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(migrated_url) as client:
        yield client


@pytest.fixture
async def alice(api: httpx.AsyncClient) -> Account:
    return await make_account(api, "alice_h")


async def index_to_head(url: str, devnet: Devnet) -> None:
    await index_chain(url, devnet.chain_config(), asyncio.Event(), once=True)


async def process_all(conn: psycopg.AsyncConnection, chain_id: int) -> int:
    """Every ready event through the processor; returns how many jobs it queued."""
    index = await load_trigger_index(conn)
    queued = 0
    while (batch := await process_batch(conn, chain_id, index)).events:
        queued += batch.jobs
    return queued


async def next_second() -> None:
    """Until the wall clock's next second: block times have whole seconds, so a trigger made
    in the same second as the last block would count that block as its own."""
    await asyncio.sleep(1.02 - time.time() % 1)


async def test_a_trigger_made_after_history_fires_only_for_new_events_with_a_warm_average(
    devnet: Devnet, migrated_url: str, api: httpx.AsyncClient, alice: Account
) -> None:
    activity = devnet.activity
    await activity.run(events=30)  # other agents' history, before ours exists
    agent = (await activity.register_agent("https://agents.example.com/history.json")).agent_id
    history = [90, 80, 70, 60, 50]
    for score in history:
        await activity.give_feedback(agent, score)
    await index_to_head(migrated_url, devnet)
    await next_second()

    created = await api.post("/triggers", json=ema_trigger(devnet.registries.chain_id, agent),
                             headers=alice.headers)  # fmt: skip
    assert created.status_code == 201, created.text
    trigger = created.json()["id"]
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        chain_id = devnet.registries.chain_id
        assert await process_all(conn, chain_id) == 0  # history: no job
        cursor = await conn.execute(
            "SELECT t.last_fired_at, s.state->'2'->>'n' FROM triggers t"
            " JOIN trigger_state s ON s.trigger_id = t.id WHERE t.id = %s", [trigger]
        )  # fmt: skip
        assert await cursor.fetchone() == (None, str(len(history)))  # warm, never fired

        # A new event: its block no earlier than the trigger's first second, whatever the
        # machine's load made of the time between them.
        await mine_next_block_at_or_after(devnet, await fires_from(conn, trigger))
        await activity.give_feedback(agent, 40)
        await index_to_head(migrated_url, devnet)
        assert await process_all(conn, chain_id) == 1
        cursor = await conn.execute(
            "SELECT e.score, j.payload->'computed'->>'ema_score', t.last_fired_at = e.block_time"
            " FROM action_jobs j JOIN events e ON e.id = j.event_id"
            " JOIN triggers t ON t.id = j.trigger_id"
        )
        ((score, ema, fired_at_event),) = await cursor.fetchall()
    average = float(history[0])
    for value in [*history[1:], 40]:
        average = ALPHA * value + (1 - ALPHA) * average
    assert (int(score), fired_at_event) == (40, True)
    assert float(ema) == pytest.approx(average)
    assert float(ema) != 40.0  # not a cold average seeded by the first new score


async def mine_next_block_at_or_after(devnet: Devnet, moment: datetime) -> None:
    latest = await devnet.rpc.call("eth_getBlockByNumber", ["latest", False])
    timestamp = max(int(moment.timestamp()), int(latest["timestamp"], 16) + 1)
    await devnet.rpc.call("evm_setNextBlockTimestamp", [hex(timestamp)])


# -- every way a trigger is turned on sets fires_from --------------------------------------


async def fires_from(conn: psycopg.AsyncConnection, trigger: str) -> datetime:
    cursor = await conn.execute("SELECT fires_from FROM triggers WHERE id = %s", [trigger])
    row = await cursor.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


async def database_now(conn: psycopg.AsyncConnection) -> datetime:
    cursor = await conn.execute("SELECT date_trunc('second', clock_timestamp())")
    row = await cursor.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


OFF = {
    "disabled": "UPDATE triggers SET enabled = false, fires_from = '2020-01-01' WHERE id = %s",
    "tripped": "UPDATE triggers SET disabled_at = now(), disabled_reason = 'circuit breaker: 10',"
               " fires_from = '2020-01-01' WHERE id = %s",
}  # fmt: skip


@pytest.mark.parametrize(
    ("off", "method", "path", "body"),
    [
        ("disabled", "POST", "/enable", None),
        ("tripped", "POST", "/enable", None),
        ("tripped", "POST", "/circuit-breaker/reset", None),
        ("disabled", "PATCH", "", {"enabled": True}),
        ("disabled", "PUT", "", {**ema_trigger(84532, 7), "enabled": True}),
    ],
    ids=["enable", "enable-tripped", "breaker-reset", "patch", "put"],
)
async def test_turning_a_trigger_on_starts_it_firing_from_then(
    api: httpx.AsyncClient,
    alice: Account,
    migrated_url: str,
    off: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        before = await database_now(conn)
        created = await api.post("/triggers", json=ema_trigger(84532, 7), headers=alice.headers)
        trigger = created.json()["id"]
        assert before <= await fires_from(conn, trigger) <= await database_now(conn)
        await conn.execute(OFF[off], [trigger])
        before = await database_now(conn)
        answer = await api.request(method, f"/triggers/{trigger}{path}", json=body,
                                   headers=alice.headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert before <= await fires_from(conn, trigger) <= await database_now(conn)


async def test_a_change_that_keeps_a_trigger_on_keeps_its_start(
    api: httpx.AsyncClient, alice: Account, migrated_url: str
) -> None:
    created = await api.post("/triggers", json=ema_trigger(84532, 7), headers=alice.headers)
    trigger = created.json()["id"]
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute("UPDATE triggers SET fires_from = '2020-01-01' WHERE id = %s", [trigger])
        for method, path, body in [
            ("PATCH", "", {"name": "renamed", "enabled": True}),
            ("PUT", "", ema_trigger(84532, 8)),
            ("POST", "/enable", None),  # already on
            ("POST", "/circuit-breaker/reset", None),  # already closed
        ]:
            answer = await api.request(method, f"/triggers/{trigger}{path}", json=body,
                                       headers=alice.headers)  # fmt: skip
            assert answer.status_code == 200, answer.text
            assert (await fires_from(conn, trigger)).year == 2020, (method, path)
        # Turned off (by its owner, then by the breaker too): the start stays until it is
        # turned on again.
        await api.post(f"/triggers/{trigger}/disable", headers=alice.headers)
        await conn.execute("UPDATE triggers SET disabled_at = now() WHERE id = %s", [trigger])
        assert (await fires_from(conn, trigger)).year == 2020
        await api.post(f"/triggers/{trigger}/enable", headers=alice.headers)
        assert (await fires_from(conn, trigger)).year > 2020


async def test_an_update_that_names_fires_from_itself_keeps_that_value(
    api: httpx.AsyncClient, alice: Account, migrated_url: str
) -> None:
    """An operator can replay history on purpose: enable with an explicit start."""
    created = await api.post("/triggers", json=ema_trigger(84532, 7), headers=alice.headers)
    trigger = created.json()["id"]
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute("UPDATE triggers SET enabled = false WHERE id = %s", [trigger])
        await conn.execute(
            "UPDATE triggers SET enabled = true, fires_from = '2021-06-01' WHERE id = %s",
            [trigger],
        )
        assert (await fires_from(conn, trigger)).year == 2021


def test_existing_triggers_fire_from_their_creation(database_url: str) -> None:
    """The migration's choice for triggers made before it: from their creation (to the
    second), so that what was mined while they existed but no processor had reached (one
    stopped for the upgrade) is still delivered; their updated_at is left alone."""
    source = load_source(MIGRATIONS)
    version = 20250123000017
    with connect(database_url) as conn:
        Migrator(conn, source).run(max(m.version for m in source.forward if m.version < version))
        conn.execute("INSERT INTO users (id, username, email, password_hash) VALUES"
                     " ('a11ce000-0000-4000-8000-000000000001', 'alice', 'a@example.com', 'x')")  # fmt: skip
        conn.execute(
            "INSERT INTO triggers (user_id, name, chain_id, registry, created_at, updated_at)"
            " VALUES ('a11ce000-0000-4000-8000-000000000001', 'old', 84532, 'reputation',"
            " '2024-05-06 07:08:09.75+00', '2024-06-01 00:00:00+00')"
        )
        Migrator(conn, source).run(version)
        row = conn.execute("SELECT fires_from, updated_at FROM triggers").fetchone()
    assert row == (datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), datetime(2024, 6, 1, tzinfo=UTC))
