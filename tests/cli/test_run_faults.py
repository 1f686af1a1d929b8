"""`erc8004 run` under faults of what it depends on: PostgreSQL restarted, the RPC node
stopped and started again, a chain reorg. Each test drives devnet activity through the
fault and ends by comparing the outcome with the chain: the events table equals the
chain's logs, and every feedback of the final chain reached the webhook exactly once,
with its delivery recorded once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import TypedDict

import psycopg
import pytest

from erc8004_backend.devnet import (
    ActivityGenerator,
    AnvilNode,
    Devnet,
    deploy_registries,
    start_anvil,
)
from tests.support.asgi import serve_asgi
from tests.support.chain_truth import assert_table_equals_chain
from tests.support.delivery_targets import WebhookSink
from tests.support.devnet import require_anvil
from tests.support.postgres_server import postgres_server
from tests.support.system import (
    Feedback,
    System,
    checkpoint_reaches,
    delivered,
    feedbacks_indexed,
    running_system,
)
from tests.support.waiting import eventually, free_port

pytestmark = pytest.mark.timeout(90)

# Failed deliveries are retried quickly, so that a fault costs seconds, not minutes. Agents'
# registration files point at a closed loopback port, so nothing leaves the machine.
NOWHERE = f"http://127.0.0.1:{free_port()}"


class Env(TypedDict):  # its keys exactly, so that mypy sees no clash with `confirmations`
    ERC8004_RETRY_INITIAL_SECONDS: str
    ERC8004_RETRY_MAX_SECONDS: str
    ERC8004_IPFS_GATEWAY: str


ENV = Env(ERC8004_RETRY_INITIAL_SECONDS="0.2", ERC8004_RETRY_MAX_SECONDS="1",
          ERC8004_IPFS_GATEWAY=f"{NOWHERE}/ipfs/")  # fmt: skip


def loopback_only(activity: ActivityGenerator) -> None:
    activity.endpoint_base = NOWHERE


@contextlib.asynccontextmanager
async def background_activity(devnet: Devnet, rate: float) -> AsyncIterator[None]:
    """Devnet activity at `rate` events/s until the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(devnet.activity.run(rate=rate, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await task


def in_flight(sink: WebhookSink) -> bool:
    """A request has arrived and not been answered yet (stalled by the sink)."""
    return len(sink.received) > len(sink.processed) + sum(sink.repeats.values())


async def assert_everything_once(
    system: System, sink: WebhookSink, devnet: Devnet, url: str, *, confirmed: int | None = None
) -> set[Feedback]:
    """Once the indexer has confirmed block `confirmed` (default: the head), the table
    equals the chain, and each NewFeedback of it arrived once, signed, recorded once."""
    head = await devnet.rpc.block_number()
    expected = await feedbacks_indexed(url, head if confirmed is None else confirmed)
    assert expected, "the activity made no feedback"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await assert_table_equals_chain(conn, devnet.rpc, devnet.chain_config())
    await eventually(lambda: len(sink.processed) >= len(expected), 30)
    assert numeric(delivered(sink)) == numeric(expected)
    assert not sink.repeats, f"{sum(sink.repeats.values())} deliveries repeated"
    assert all(r.signature_ok for r in sink.received)
    results = await system.recorded(len(expected), status="success")
    assert sum(r["status"] == "success" for r in results) == len(expected)
    assert "failed" not in {r["status"] for r in results}
    return expected


def numeric(feedbacks: set[Feedback]) -> set[tuple[str, str, str, Decimal]]:
    """Scores as numbers: messages write 99.70 (two decimals on chain) as 99.7."""
    return {(tx, log, agent, Decimal(score)) for tx, log, agent, score in feedbacks}


async def count_feedback_after(url: str, block: int) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT count(*) FROM events WHERE event_type = 'NewFeedback' AND block_number > %s",
            [block],
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


# -- PostgreSQL restarted -------------------------------------------------------------------


async def test_postgres_restarted_under_load_every_part_reconnects(
    devnet: Devnet, tmp_path: Path
) -> None:
    """A server of the test's own goes down for 1.5 s while the devnet emits and deliveries
    are in flight: the indexer, processor, worker and API reconnect; nothing is lost or
    done twice, and a request made during the outage is answered once the server is back."""
    loopback_only(devnet.activity)
    async with postgres_server() as server:
        url = await server.create_database("erc8004")
        async with (
            running_system(devnet, url, tmp_path, **ENV) as system,
            serve_asgi(sink := WebhookSink(secret="")) as sink_url,
        ):
            sink.secret = await system.every_feedback_to(sink_url)
            # Slow answers keep deliveries in flight when the server goes away: each must
            # be recorded once it is back, not delivered again after its lease.
            sink.stall_next(10_000, 0.3)
            async with background_activity(devnet, rate=40):
                await eventually(lambda: len(sink.processed) >= 3 and in_flight(sink), 10,
                                 what="3 deliveries and one in flight")  # fmt: skip
                before = len(sink.processed)
                head_at_restart = await devnet.rpc.block_number()
                await server.stop()
                during = asyncio.create_task(system.client.get("/triggers",
                                                               headers=system.headers))  # fmt: skip
                await asyncio.sleep(1.5)  # the outage; the devnet keeps emitting meanwhile
                await server.start()
                await eventually(lambda: count_feedback_after(url, head_at_restart), 30,
                                 what="feedback after the restart indexed")  # fmt: skip
            answered = await during
            assert answered.status_code == 200, answered.text
            assert len(answered.json()["items"]) == 1
            expected = await assert_everything_once(system, sink, devnet, url)
            assert len(expected) > before
            for _ in range(20):  # every pooled connection of the API works again
                page = await system.client.get("/events", headers=system.headers,
                                                params={"limit": 5})  # fmt: skip
                assert page.status_code == 200, page.text


# -- the RPC node stopped and started again ----------------------------------------------------


class RestartableAnvil:
    """anvil on a fixed port whose chain (blocks, logs, accounts) survives a restart:
    `--state` writes it to a file on exit and loads it on start."""

    def __init__(self, state_file: Path) -> None:
        self.port = free_port()
        self.args = ["--state", str(state_file)]
        self._running: contextlib.AbstractAsyncContextManager[AnvilNode] | None = None

    async def start(self) -> AnvilNode:
        self._running = start_anvil(self.port, extra_args=self.args)
        return await self._running.__aenter__()

    async def stop(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            await running.__aexit__(None, None, None)


@pytest.mark.devnet
async def test_the_rpc_node_stopped_and_started_again_is_caught_up_with(
    database_url: str, tmp_path: Path
) -> None:
    """The node goes away for 2 s between bursts of activity, then comes back on the same
    port with its chain: the indexer resumes from its checkpoint and catches up."""
    require_anvil()
    anvil = RestartableAnvil(tmp_path / "anvil-state.json")
    node = await anvil.start()
    try:
        async with node.rpc() as rpc:  # a client of the URL, which outlives the process
            registries = await deploy_registries(rpc)
            activity = ActivityGenerator(rpc, registries, seed=3, endpoint_base=NOWHERE)
            await activity.setup()
            devnet = Devnet(node, rpc, registries, activity)
            async with (
                running_system(devnet, database_url, tmp_path, **ENV) as system,
                serve_asgi(sink := WebhookSink(secret="")) as sink_url,
            ):
                sink.secret = await system.every_feedback_to(sink_url)
                async with background_activity(devnet, rate=40):
                    await eventually(lambda: len(sink.processed) >= 3, 10,
                                     what="3 deliveries before the stop")  # fmt: skip
                head_at_stop = await rpc.block_number()
                await anvil.stop()
                await asyncio.sleep(2)  # the outage: the indexer's requests fail meanwhile
                devnet.node = await anvil.start()
                assert await rpc.block_number() == head_at_stop, "anvil lost its chain"
                async with background_activity(devnet, rate=40):
                    await eventually(lambda: count_feedback_after(database_url, head_at_stop),
                                     30, what="feedback after the restart indexed")  # fmt: skip
                await assert_everything_once(system, sink, devnet, database_url)
    finally:
        await anvil.stop()


# -- a reorg -------------------------------------------------------------------------------------

CONFIRMATIONS = 8


async def test_a_reorg_within_the_confirmations_delivers_only_the_final_chain(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    """Five blocks of feedback are indexed, then replaced by seven others. Events reach the
    triggers only 8 blocks deep, so no orphaned feedback is ever delivered, and every
    feedback of the final chain is delivered once."""
    activity = devnet.activity
    loopback_only(activity)
    async with (
        running_system(
            devnet, database_url, tmp_path, confirmations=CONFIRMATIONS, **ENV
        ) as system,
        serve_asgi(sink := WebhookSink(secret="")) as sink_url,
    ):
        sink.secret = await system.every_feedback_to(sink_url)
        await activity.run(events=60)
        await devnet.rpc.call("anvil_mine", [hex(CONFIRMATIONS)])  # all of it confirmed
        fork_block = await devnet.rpc.block_number()
        confirmed_before = await feedbacks_indexed(database_url, fork_block - CONFIRMATIONS)
        await eventually(lambda: len(sink.processed) >= len(confirmed_before), 20)
        assert numeric(delivered(sink)) == numeric(confirmed_before)

        snapshot = await devnet.rpc.call("evm_snapshot")
        agent = activity.agent_ids[0]
        for score in range(5):  # five blocks of one feedback each, to be orphaned
            await activity.give_feedback(agent, 90 + score, tag1="orphan")
        orphaned = await indexed_feedback_blocks(database_url, fork_block, fork_block + 5)
        assert len(orphaned) == 5, "the indexer did not store the blocks to be orphaned"
        # An absence, so a fixed wait: the processor had their notification and a poll
        # (every second) to take them wrongly.
        await asyncio.sleep(1.5)

        assert await devnet.rpc.call("evm_revert", [snapshot]) is True
        await activity.resync()
        for score in range(7):  # a longer chain, other feedback
            await activity.give_feedback(agent, 10 + score, tag1="final")
        last_activity = await devnet.rpc.block_number()
        await devnet.rpc.call("anvil_mine", [hex(CONFIRMATIONS)])

        expected = await assert_everything_once(
            system, sink, devnet, database_url, confirmed=last_activity
        )
        assert len(expected) == len(confirmed_before) + 7
        orphaned_txs = {tx for tx, _ in orphaned.values()}
        assert not orphaned_txs & {tx for tx, *_ in delivered(sink)}
        assert {block_hash for _, block_hash in orphaned.values()}.isdisjoint(
            await stored_block_hashes(database_url, fork_block)
        )


async def indexed_feedback_blocks(url: str, above: int, head: int) -> dict[int, tuple[str, str]]:
    """Block number -> (transaction, block hash) of the NewFeedback stored above `above`,
    once the indexer has reached `head` (it stores unconfirmed events too)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await checkpoint_reaches(conn, head, confirmed=False, timeout=10)
        cursor = await conn.execute(
            "SELECT block_number, transaction_hash, block_hash FROM events"
            " WHERE event_type = 'NewFeedback' AND block_number > %s",
            [above],
        )
        return {number: (tx, block_hash) for number, tx, block_hash in await cursor.fetchall()}


async def stored_block_hashes(url: str, above: int) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT DISTINCT block_hash FROM events WHERE block_number > %s", [above]
        )
        return {row[0] for row in await cursor.fetchall()}
