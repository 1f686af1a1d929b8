"""The event store beside its readers (a batch in progress must not hold up reads of events),
and the logs nothing decodes, kept with their batch."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from erc8004_backend.chain.events import EVENT_COLUMNS
from erc8004_backend.devnet import start_devnet
from erc8004_backend.indexer.chain_indexer import ChainIndexer
from erc8004_backend.indexer.store import (
    _COPY_TYPES,
    COPY_EVENTS,
    BlockHeader,
    CheckpointMovedError,
    EventStore,
    UnknownLog,
)
from erc8004_backend.triggers.processor import QUERIES as PROCESSOR_QUERIES
from tests.support.chain_truth import assert_table_equals_chain
from tests.support.waiting import lock_waited_for

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
            await lock_waited_for(reader, conn.info.backend_pid)
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


CHAIN = 84532
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
IDENTITY = "0x8004a818bfb912233c491871b3d84c89a494bd9e"
UNKNOWN_TOPIC = "0x" + "9a" * 32


def block(number: int) -> BlockHeader:
    return BlockHeader(number, f"0x{number:064x}", f"0x{number - 1:064x}", T0)


def raw_log(number: int, log_index: int, topics: list[str]) -> dict[str, Any]:
    return {"address": IDENTITY, "topics": topics, "data": "0x", "blockNumber": hex(number),
            "blockHash": f"0x{number:064x}", "transactionHash": f"0x{number:060x}{log_index:04x}",
            "transactionIndex": "0x0", "logIndex": hex(log_index), "removed": False}  # fmt: skip


async def unknown_logs(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT block_number, log_index, registry, address, topic0, decode_error"
        " FROM unknown_logs WHERE chain_id = %s ORDER BY block_number, log_index",
        [CHAIN],
    )
    return await cursor.fetchall()


async def test_unknown_logs_commit_with_their_batch_once_and_roll_back_with_it(
    migrated_url: str,
) -> None:
    store = EventStore(CHAIN)
    unknown = [
        UnknownLog.of(raw_log(3, 0, [UNKNOWN_TOPIC]), "identity", T0),
        UnknownLog.of(raw_log(8, 1, []), "identity", T0),  # an anonymous event: no topic0
        UnknownLog.of(raw_log(8, 2, [UNKNOWN_TOPIC, "0x" + "00" * 32]), "identity", T0,
                      decode_error="Transfer has 3 indexed values, the log 1"),
    ]  # fmt: skip
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        # A batch that cannot commit (the checkpoint is not where it thinks) stores none.
        with pytest.raises(CheckpointMovedError):
            await store.write_batch(conn, previous=7, rows=[], unknown=unknown,
                                    blocks=[block(10)], checkpoint=block(10), head=10,
                                    confirmed=10, keep_blocks_from=0)  # fmt: skip
        assert await unknown_logs(conn) == []

        await store.write_batch(conn, previous=None, rows=[], unknown=unknown,
                                blocks=[block(n) for n in range(1, 11)], checkpoint=block(10),
                                head=10, confirmed=10, keep_blocks_from=0)  # fmt: skip
        stored = [
            (3, 0, "identity", IDENTITY, UNKNOWN_TOPIC, None),
            (8, 1, "identity", IDENTITY, None, None),
            (8, 2, "identity", IDENTITY, UNKNOWN_TOPIC, "Transfer has 3 indexed values, the log 1"),
        ]
        assert await unknown_logs(conn) == stored

        # The same logs again (a replay of their blocks) are not counted twice.
        await store.write_batch(conn, previous=10, rows=[], unknown=unknown, blocks=[],
                                checkpoint=block(10), head=10, confirmed=10,
                                keep_blocks_from=0)  # fmt: skip
        assert await unknown_logs(conn) == stored

        # A reorg forks at block 5: the logs above it go with the orphaned blocks.
        await store.roll_back(conn, block(5))
        assert await unknown_logs(conn) == stored[:1]
        # A fork below the start forgets the chain's logs altogether.
        await store.roll_back(conn, (-1, None))
        assert await unknown_logs(conn) == []


# -- the columns ------------------------------------------------------------------------


async def test_the_copy_writes_every_event_column_in_event_row_order_with_its_type(
    migrated_url: str,
) -> None:
    """EventRow (chain/events.py) is the one list of an event's columns: the COPY names them
    from it, and `_COPY_TYPES` must give each its type in the table."""
    listed = re.search(rb"^COPY events \((.*)\) FROM STDIN \(FORMAT BINARY\)$", COPY_EVENTS, re.M)
    assert listed is not None, COPY_EVENTS
    assert [name.strip().strip(b'"').decode() for name in listed[1].split(b",")] == list(
        EVENT_COLUMNS
    )
    async with await psycopg.AsyncConnection.connect(migrated_url) as conn:
        cursor = await conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'events'::regclass AND attnum > 0 AND NOT attisdropped"
            " ORDER BY attnum"
        )
        table: dict[str, str] = dict(await cursor.fetchall())
    # Every column but those the database fills itself is an EventRow field, and back.
    assert set(table) - set(EVENT_COLUMNS) == {"id", "created_at"}
    assert set(EVENT_COLUMNS) - set(table) == set()
    spelled = {"timestamptz": "timestamp with time zone"}
    assert [spelled.get(name, name) for name in _COPY_TYPES] == [
        table[column] for column in EVENT_COLUMNS
    ]
