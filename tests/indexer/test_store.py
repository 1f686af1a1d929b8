"""The event store beside its readers: a batch in progress must not hold up reads of events."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from erc8004_backend.devnet import start_devnet
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from erc8004_backend.triggers.processor import QUERIES as PROCESSOR_QUERIES
from tests.support.chain_truth import assert_table_equals_chain

pytestmark = pytest.mark.timeout(120)

# Far enough ahead that no weekly partition exists yet (the migrations make four weeks).
WEEKS_AHEAD = 10


async def test_chain_order_reads_do_not_wait_for_a_batch_that_created_a_partition(
    migrated_url: str,
) -> None:
    async with (
        start_devnet(seed=4) as devnet,
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as blocker,
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as reader,
    ):
        await devnet.activity.run(events=30)
        chain = devnet.chain_config()
        indexer = ChainIndexer(chain, conn, devnet.rpc)
        await indexer.prepare()
        await indexer.sync_to_head()
        indexed = await ready_events(reader, chain.chain_id)
        assert len(indexed) == 30
        partitions = await event_partitions(reader)
        # The next blocks are weeks ahead: the batch that stores them creates their partitions.
        await devnet.rpc.call("evm_increaseTime", [WEEKS_AHEAD * 7 * 24 * 3600])
        await devnet.activity.register_agent("https://agent.example/later.json")

        await reader.execute("SET lock_timeout = '5s'")
        async with blocker.transaction():
            # Holds the batch open after its events are written, before its block hashes.
            await blocker.execute("LOCK TABLE indexed_blocks IN SHARE MODE")
            backfill = asyncio.create_task(indexer.sync_to_head())
            await waiting_for_a_lock(reader, conn.info.backend_pid)
            try:
                # The trigger engine's read: by chain, in chain order, no block_time to prune by.
                read_meanwhile = await ready_events(reader, chain.chain_id)
            except psycopg.errors.LockNotAvailable:
                read_meanwhile = None
        await backfill

        assert read_meanwhile == indexed, "the read waited for the batch's transaction"
        assert len(await event_partitions(reader)) > len(partitions)
        # Everything stored once: the 30 events and the registration's 3.
        assert await assert_table_equals_chain(conn, devnet.rpc, chain) == 33


async def ready_events(conn: psycopg.AsyncConnection, chain_id: int) -> list[tuple[int, int]]:
    cursor = await conn.execute(
        PROCESSOR_QUERIES["ready_events"],
        {"chain_id": chain_id, "block_number": -1, "log_index": -1, "limit": 1000},
    )
    columns = [column.name for column in cursor.description or []]
    number, index = columns.index("block_number"), columns.index("log_index")
    return [(row[number], row[index]) for row in await cursor.fetchall()]


async def event_partitions(conn: psycopg.AsyncConnection) -> list[str]:
    cursor = await conn.execute(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'events'::regclass"
    )
    return [name for (name,) in await cursor.fetchall()]


async def waiting_for_a_lock(conn: psycopg.AsyncConnection, pid: int) -> None:
    for _ in range(200):
        cursor = await conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
        )
        if await cursor.fetchone() == ("Lock",):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the indexer's session {pid} never waited for the lock")
