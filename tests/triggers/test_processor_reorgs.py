"""Reorgs deeper than the confirmations, through the processor: with confirmations 0, random
reputation activity is processed in batches of random sizes and reorged (depth 1-10) again
and again, by the store's roll-back directly and by the indexer on a devnet; afterwards
every trigger's state, firings and last firing equal the backtest's over the canonical
chain, and every job of an orphaned event is cancelled with a result that says so."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.rest import RETRACTED_HEADER
from erc8004_backend.actions.worker import Worker
from erc8004_backend.config import Settings
from erc8004_backend.devnet import start_devnet
from erc8004_backend.encryption import SecretBox
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from erc8004_backend.indexer.store import EventStore
from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.processor import ChainMemory, load_trigger_index, process_batch
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import create_trigger
from tests.support.waiting import eventually

CHAIN = 84532
USER = "a11ce000-0000-4000-8000-000000000001"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TRIGGERS: dict[str, tuple[list[tuple[str, str, str, str, dict[str, Any]]], int]] = {
    # name: (conditions, cooldown in seconds)
    "ema": ([("ema_threshold", "score", "<", "50", {"window_size": 4})], 0),
    "burst": ([("rate_limit", "feedback_count", ">=", "3",
                {"time_window": "10m", "reset_on_trigger": True})], 0),
    "cooldown": ([("score_threshold", "score", "<", "30", {})], 300),
}  # fmt: skip


async def add_trigger(
    conn: psycopg.AsyncConnection,
    name: str,
    conditions: list[Any],
    cooldown: int,
    chain_id: int = CHAIN,
) -> str:
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, is_stateful, cooldown_seconds,"
        " fires_from) VALUES (%s, %s, %s, 'reputation', true, %s, %s) RETURNING id::text",
        [USER, name, chain_id, cooldown, T0 - timedelta(days=1)],
    )
    (trigger_id,) = await cursor.fetchone() or ("",)
    for position, (kind, field, operator, value, config) in enumerate(conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
            " operator, value, config) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [trigger_id, position, kind, field, operator, value, json.dumps(config)],
        )
    await conn.execute(
        "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
        " VALUES (%s, 0, 'rest', 1, '{}')",
        [trigger_id],
    )
    return str(trigger_id)


class Chain:
    """Blocks of random feedback, written as the indexer writes them (events and the block
    hashes of the reorg window), confirmed as soon as stored (confirmations 0)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.head = 0
        self.generation = 0  # in the block hashes: a reorged block has another hash

    def block_hash(self, number: int) -> str:
        return f"0x{self.generation:08x}{number:056x}"

    async def grow(self, conn: psycopg.AsyncConnection, blocks: int) -> None:
        for _ in range(blocks):
            self.head += 1
            number, block_hash = self.head, self.block_hash(self.head)
            when = T0 + timedelta(minutes=2 * number + self.rng.random())
            await conn.execute(
                "INSERT INTO indexed_blocks (chain_id, block_number, block_hash, parent_hash,"
                " block_time) VALUES (%s, %s, %s, %s, %s)",
                [CHAIN, number, block_hash, self.block_hash(number - 1), when],
            )
            for log_index in range(self.rng.randint(0, 3)):
                score = self.rng.choice([5, 20, 40, 60, 90])
                await conn.execute(
                    "INSERT INTO events (chain_id, registry, event_type, contract_address,"
                    " block_number, block_hash, block_time, transaction_hash, transaction_index,"
                    " log_index, agent_id, client_address, value, value_decimals, score, tag1)"
                    " VALUES (%s, 'reputation', 'NewFeedback', %s, %s, %s, %s, %s, 0, %s, %s,"
                    " %s, %s, 0, %s, '')",
                    [CHAIN, "0x" + "aa" * 20, number, block_hash, when, block_hash, log_index,
                     self.rng.randint(1, 3), "0x" + "cc" * 20, score, score],
                )  # fmt: skip
        await conn.execute(
            "UPDATE checkpoints SET block_number = %s, block_hash = %s,"
            " confirmed_block_number = %s WHERE chain_id = %s",
            [self.head, self.block_hash(self.head), self.head, CHAIN],
        )

    async def reorg(self, conn: psycopg.AsyncConnection, depth: int) -> bool:
        """The indexer's roll-back of the last `depth` blocks; True when the trigger engine
        had processed some of them."""
        fork = max(0, self.head - depth)
        processed = await EventStore(CHAIN).roll_back(conn, (fork, self.block_hash(fork)))
        self.head = fork
        self.generation += 1
        return processed


async def process_all(
    conn: psycopg.AsyncConnection,
    rng: random.Random,
    chain_id: int = CHAIN,
    memory: ChainMemory | None = None,
) -> None:
    """Every ready event, in batches of random sizes; with `memory`, as a processor that held
    the chain all along remembers it between batches."""
    index = await load_trigger_index(conn)
    while (
        await process_batch(conn, chain_id, index, limit=rng.randint(1, 8), memory=memory)
    ).events:
        pass


async def add_user(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(
        "INSERT INTO users (id, username, email, password_hash)"
        " VALUES (%s, 'alice', 'a@example.com', 'x')",
        [USER],
    )


def as_floats(value: Any) -> Any:
    """Numbers as floats, as the state holds them (jsonb gives 1.47e+34 back as an int)."""
    if isinstance(value, dict):
        return {key: as_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_floats(item) for item in value]
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


async def assert_as_recomputed(conn: psycopg.AsyncConnection, ids: dict[str, str]) -> None:
    """Each trigger's firings (its jobs of stored events), state and last firing are the
    backtest's over the stored (canonical) events; every job of an event no longer stored is
    cancelled (no worker runs here) with a result that says why."""
    for name, trigger_id in ids.items():
        expected = await backtest(conn, trigger_id)
        cursor = await conn.execute(
            "SELECT e.id FROM action_jobs j JOIN events e ON e.id = j.event_id"
            " WHERE j.trigger_id = %s AND j.status <> 'cancelled'",
            [trigger_id],
        )
        fired = sorted(row[0] for row in await cursor.fetchall())
        assert fired == sorted(f.event_id or 0 for f in expected.fired), name
        cursor = await conn.execute(
            "SELECT scope, state FROM trigger_state WHERE trigger_id = %s", [trigger_id]
        )
        states = {scope: state for scope, state in await cursor.fetchall()}
        assert as_floats(states) == as_floats(expected.states), name
        cursor = await conn.execute(
            "SELECT last_fired_at FROM triggers WHERE id = %s", [trigger_id]
        )
        (last_fired,) = await cursor.fetchone() or (None,)
        if TRIGGERS[name][1]:
            assert last_fired == max((f.block_time for f in expected.fired), default=None)
    cursor = await conn.execute(
        "SELECT j.status, r.status, r.error_message FROM action_jobs j"
        " LEFT JOIN action_results r ON r.job_id = j.id"
        " WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = j.event_id)"
    )
    orphaned = await cursor.fetchall()
    assert orphaned, "some firings were reorged out"
    assert set(orphaned) == {("cancelled", "cancelled", "cancelled: reorged out")}
    cursor = await conn.execute(
        "SELECT count(*) FROM action_jobs j WHERE j.status = 'cancelled'"
        " AND EXISTS (SELECT 1 FROM events e WHERE e.id = j.event_id)"
    )
    assert await cursor.fetchone() == (0,)


@pytest.mark.parametrize(
    ("seed", "remembering"), [(1, False), (2, False), (3, False), (4, False), (5, True), (6, True)]
)
async def test_after_deep_reorgs_state_and_firings_equal_a_recompute(
    migrated_url: str, seed: int, remembering: bool
) -> None:
    """`remembering`: one memory of the chain across every batch, as a processor keeps while
    it holds the chain, which each reorg's restore of the state (with its rewound cursor)
    must make it forget."""
    rng = random.Random(seed)
    memory = ChainMemory() if remembering else None
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await add_user(conn)
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)",
            [CHAIN],
        )
        ids = {name: await add_trigger(conn, name, *spec) for name, spec in TRIGGERS.items()}
        chain = Chain(rng)
        await chain.grow(conn, 12)
        deep = 0
        for _ in range(6):
            await process_all(conn, rng, memory=memory)
            deep += await chain.reorg(conn, rng.randint(1, 10))
            await chain.grow(conn, rng.randint(1, 12))
        await process_all(conn, rng, memory=memory)
        assert deep >= 5  # the reorgs reached processed events
        await assert_as_recomputed(conn, ids)


@pytest.mark.devnet
@pytest.mark.timeout(180)
@pytest.mark.parametrize("seed", [21, 22])
async def test_after_reorgs_on_a_devnet_state_and_firings_equal_a_recompute(
    migrated_url: str, seed: int
) -> None:
    """The indexer finds the reorgs (anvil's snapshots and reverts while activity goes on),
    with confirmations 0; the processor runs after each sync."""
    rng = random.Random(seed)
    async with start_devnet(seed=seed) as devnet:
        await devnet.activity.run(events=150)
        chain = devnet.chain_config(confirmations=0, reorg_window=64)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            await add_user(conn)
            ids = {name: await add_trigger(conn, name, *spec, chain_id=chain.chain_id)
                   for name, spec in TRIGGERS.items()}  # fmt: skip
            indexer = ChainIndexer(chain, conn, devnet.rpc)
            await indexer.prepare()
            await indexer.sync_to_head()
            await process_all(conn, rng, chain.chain_id)
            for reorg in range(1, 5):
                snapshot = await devnet.rpc.call("evm_snapshot")
                for _ in range(rng.randint(1, 10)):
                    await devnet.activity.run(events=rng.randint(1, 12))
                    await indexer.sync_to_head()
                    await process_all(conn, rng, chain.chain_id)
                assert await devnet.rpc.call("evm_revert", [snapshot]) is True
                await devnet.activity.resync()
                await devnet.activity.run(events=rng.randint(5, 40))
                await indexer.sync_to_head()
                await process_all(conn, rng, chain.chain_id)
                assert indexer.stats.reorgs == reorg
            await assert_as_recomputed(conn, ids)


async def job_keys(conn: psycopg.AsyncConnection, action_id: str, status: str) -> set[str]:
    cursor = await conn.execute(
        "SELECT idempotency_key FROM action_jobs"
        " WHERE action_id = %s AND status = %s AND NOT retraction",
        [action_id, status],
    )
    return {key for (key,) in await cursor.fetchall()}


@pytest.mark.devnet
@pytest.mark.timeout(180)
async def test_a_reorg_retracts_delivered_webhooks_and_cancels_queued_ones(
    migrated_url: str,
) -> None:
    """An anvil reorg removes events whose webhooks were delivered and events whose jobs are
    still queued: the action with notify_retractions sends a retraction for each delivered
    one (same key, marked), the other action sends none, the queued ones are cancelled and
    never sent, and nothing else is sent twice."""
    rng = random.Random(5)
    box = SecretBox.from_spec(Settings().token_keys)
    async with (
        start_devnet(seed=5) as devnet,
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        serve_asgi(sink := WebhookSink(secret="")) as url,
    ):
        config = {"method": "POST", "url": url, "timeout_ms": 2000}
        trigger, told, secret = await create_trigger(
            conn, "rest", {**config, "notify_retractions": True}, box=box
        )
        assert secret is not None
        sink.secret = secret
        cursor = await conn.execute(
            "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
            " VALUES (%s, 1, 'rest', 2, %s) RETURNING id::text",
            [trigger, json.dumps(config)],
        )
        (untold,) = await cursor.fetchone() or ("",)
        settings = Settings(database_url=migrated_url, allow_private_urls=True,
                            retry_initial_seconds=0.05, retry_max_seconds=0.2)  # fmt: skip
        chain = devnet.chain_config(confirmations=0, reorg_window=64)
        indexer = ChainIndexer(chain, conn, devnet.rpc)
        await indexer.prepare()

        async def index_and_process() -> None:
            await indexer.sync_to_head()
            await process_all(conn, rng, chain.chain_id)

        async def deliver_all() -> None:
            async with AsyncConnectionPool(migrated_url, min_size=1, max_size=2, open=False,
                                           kwargs={"autocommit": True}) as pool:  # fmt: skip
                stop = asyncio.Event()
                task = asyncio.create_task(Worker(pool, settings).run(stop))
                await eventually(lambda: job_counts(conn), timeout=30, what="a drained queue")
                stop.set()
                await asyncio.wait_for(task, 20)

        async def job_counts(conn: psycopg.AsyncConnection) -> bool:
            cursor = await conn.execute(
                "SELECT count(*) FROM action_jobs WHERE status IN ('queued', 'running')"
            )
            return await cursor.fetchone() == (0,)

        await devnet.activity.run(events=30)  # before the fork: delivered, kept
        await index_and_process()
        await deliver_all()
        kept = await job_keys(conn, told, "succeeded")
        snapshot = await devnet.rpc.call("evm_snapshot")
        await devnet.activity.run(events=30)  # delivered, then reorged out
        await index_and_process()
        await deliver_all()
        delivered_then_gone = await job_keys(conn, told, "succeeded") - kept
        await devnet.activity.run(events=30)  # queued, then reorged out
        await index_and_process()
        queued_then_gone = await job_keys(conn, told, "queued")
        assert delivered_then_gone
        assert queued_then_gone
        sent_before = len(sink.received)

        assert await devnet.rpc.call("evm_revert", [snapshot]) is True
        await devnet.activity.resync()
        await devnet.activity.run(events=20)
        await index_and_process()
        assert indexer.stats.reorgs == 1
        assert await job_keys(conn, told, "cancelled") == queued_then_gone
        assert await job_keys(conn, untold, "cancelled")  # its queued ones too
        await deliver_all()

    after = sink.received[sent_before:]
    retractions = [r for r in after if r.headers.get(RETRACTED_HEADER.lower()) == "true"]
    assert {r.key for r in retractions} == delivered_then_gone  # the told action's only
    assert all(r.json()["retracted"] is True and r.signature_ok for r in retractions)
    assert len(retractions) == len(delivered_then_gone)
    assert not {r.key for r in sink.received} & queued_then_gone  # never sent
    assert sum(sink.repeats.values()) == len(retractions)  # nothing else twice
