"""The indexer's writes: a batch of events with its checkpoint, and reorg rollbacks.

Each batch commits in one transaction: events, the hashes of the blocks it covered, pending
registration files and the checkpoint. After a crash at any instant the database holds either
the whole batch or none of it, and the indexer resumes from the checkpoint. Events are copied
straight into `events` (no ON CONFLICT): nothing above the checkpoint can be stored yet, and
the checkpoint only moves from the value this indexer read, so a second indexer on the same
chain makes the transaction fail instead of writing twice. The weekly partitions a batch needs
are created before it, in a short transaction of their own.

The logs at registry addresses that no decoder turned into an event go to `unknown_logs` in
the batch's transaction too, and a reorg rollback deletes them above the fork with the events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg.types.json import Jsonb

from erc8004_backend.chain.events import EVENT_COLUMNS, EventRow
from erc8004_backend.database.queries import compose, identifiers, load_queries
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.indexer.registration import enqueue_registrations

QUERIES = load_queries("erc8004_backend.indexer", "store.sql")
COPY_EVENTS = compose(QUERIES["copy_events"], event_columns=identifiers(EVENT_COLUMNS))
# After every log of a block: the processing cursor's (block, log index) for "all of it".
MAX_LOG_INDEX = 2**31 - 1

# Binary COPY needs the type of every column, in EVENT_COLUMNS order (a test checks them
# against the table).
_COPY_TYPES = [
    "bigint", "text", "text", "text", "bigint", "text", "timestamptz", "text", "integer",
    "integer", "numeric", "text", "text", "text", "bytea", "text", "text", "text", "text",
    "numeric", "numeric", "smallint", "numeric", "text", "text", "text", "text", "text", "text",
    "text", "text", "text", "smallint", "text", "text", "text", "jsonb",
]  # fmt: skip


def _dumps_data(data: dict[str, Any]) -> str:
    # Most rows carry no extra data; skipping the encoder for them is a tenth of the copy time.
    return orjson.dumps(data).decode() if data else "{}"


class UnknownLog(NamedTuple):
    """A log at a registry's address that is no event we index: its topic0 is unknown (None
    for a log without topics), or known but its layout did not decode (`decode_error`)."""

    registry: str
    address: str
    block_number: int
    block_hash: str
    block_time: datetime
    transaction_hash: str
    log_index: int
    topic0: str | None
    decode_error: str | None = None

    @classmethod
    def of(
        cls,
        log: Mapping[str, Any],
        registry: str,
        block_time: datetime,
        *,
        decode_error: str | None = None,
    ) -> UnknownLog:
        """From a log as `eth_getLogs` returns it."""
        topics = log.get("topics") or ()
        return cls(registry, log["address"].lower(), int(log["blockNumber"], 16),
                   log["blockHash"].lower(), block_time, log["transactionHash"].lower(),
                   int(log["logIndex"], 16), topics[0].lower() if topics else None,
                   decode_error)  # fmt: skip


class CheckpointMovedError(Erc8004Error):
    """Another process moved this chain's checkpoint: two indexers are running on one chain."""


@dataclass(frozen=True)
class Checkpoint:
    block_number: int | None  # None: nothing indexed yet
    block_hash: str | None
    confirmed_block_number: int | None


@dataclass(frozen=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    time: datetime


@dataclass
class PartitionCover:
    """The weeks for which event partitions are known to exist, to skip asking again."""

    start: datetime | None = None
    end: datetime | None = None

    def covers(self, first: datetime, last: datetime) -> bool:
        return (
            self.start is not None
            and self.end is not None
            and (self.start <= first and last < self.end)
        )


class EventStore:
    def __init__(self, chain_id: int) -> None:
        self.chain_id = chain_id
        self._partitions = PartitionCover()

    async def lock_chain(self, conn: psycopg.AsyncConnection) -> bool:
        """Take this chain for the session; also sets the session up for batch writes."""
        await conn.execute(QUERIES["relax_commit_flush"])
        cursor = await conn.execute(QUERIES["lock_chain"], {"chain_id": self.chain_id})
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def checkpoint(self, conn: psycopg.AsyncConnection) -> Checkpoint:
        cursor = await conn.execute(QUERIES["get_checkpoint"], {"chain_id": self.chain_id})
        row = await cursor.fetchone()
        if row is None:
            return Checkpoint(None, None, None)
        return Checkpoint(row[0], row[1], row[2])

    async def recent_blocks(
        self, conn: psycopg.AsyncConnection, from_block: int, limit: int
    ) -> list[tuple[int, str, str]]:
        """(number, hash, parent hash) of stored blocks at or below `from_block`, newest first."""
        params = {"chain_id": self.chain_id, "from_block": from_block, "limit": limit}
        cursor = await conn.execute(QUERIES["recent_blocks"], params)
        return [
            (number, block_hash, parent) for number, block_hash, parent in await cursor.fetchall()
        ]

    async def write_batch(
        self,
        conn: psycopg.AsyncConnection,
        *,
        previous: int | None,
        rows: Sequence[EventRow],
        blocks: Sequence[BlockHeader],
        checkpoint: BlockHeader,
        head: int,
        confirmed: int | None,
        keep_blocks_from: int,
        unknown: Sequence[UnknownLog] = (),
    ) -> None:
        """Store one batch and move the checkpoint from `previous` to `checkpoint`, atomically.
        `unknown`: the batch's logs that no decoder turned into a row."""
        if rows:
            await self._ensure_partitions(conn, rows)
        async with conn.transaction():
            cursor = await conn.execute(QUERIES["lock_checkpoint"], {"chain_id": self.chain_id})
            current = await cursor.fetchone()
            if (current[0] if current else None) != previous:
                raise self._moved()
            if previous is None:
                # The chain starts afresh: whatever model it had (its events deleted by
                # hand, say) goes, as a rebuild from its events would have it.
                await conn.execute(QUERIES["clear_read_model"], {"chain_id": self.chain_id})
            if rows:
                async with conn.cursor().copy(COPY_EVENTS) as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
                        await copy.write_row((*row[:-1], Jsonb(row[-1], dumps=_dumps_data)))
                await conn.execute(
                    QUERIES["apply_read_model"],
                    {
                        "chain_id": self.chain_id,
                        "from_block": min(rows[0].block_number, rows[-1].block_number),
                        "to_block": max(rows[0].block_number, rows[-1].block_number),
                        "from_time": min(rows[0].block_time, rows[-1].block_time),
                        "to_time": max(rows[0].block_time, rows[-1].block_time),
                        "event_types": list({row.event_type for row in rows}),
                    },
                )
                registrations = [
                    (row.agent_id, row.token_uri)
                    for row in rows
                    if row.event_type in ("Registered", "URIUpdated")
                    and row.agent_id is not None
                    and row.token_uri is not None
                ]
                if registrations:
                    await enqueue_registrations(conn, self.chain_id, registrations)
            if unknown:
                await self._insert_unknown_logs(conn, unknown)
            if blocks:
                await conn.execute(
                    QUERIES["insert_blocks"],
                    {
                        "chain_id": self.chain_id,
                        "numbers": [b.number for b in blocks],
                        "hashes": [b.hash for b in blocks],
                        "parents": [b.parent_hash for b in blocks],
                        "times": [b.time for b in blocks],
                    },
                )
            await conn.execute(
                QUERIES["prune_blocks"], {"chain_id": self.chain_id, "below": keep_blocks_from}
            )
            cursor = await conn.execute(
                QUERIES["advance_checkpoint"],
                {
                    "chain_id": self.chain_id,
                    "block_number": checkpoint.number,
                    "block_hash": checkpoint.hash,
                    "head": head,
                    "confirmed": confirmed,
                    "previous": previous,
                },
            )
            if await cursor.fetchone() is None:
                raise self._moved()
            if not rows and confirmed is not None:
                await conn.execute(QUERIES["notify_confirmed"])

    async def _insert_unknown_logs(
        self, conn: psycopg.AsyncConnection, logs: Sequence[UnknownLog]
    ) -> None:
        columns = {name: [log[i] for log in logs] for i, name in enumerate(UnknownLog._fields)}
        await conn.execute(QUERIES["insert_unknown_logs"], {"chain_id": self.chain_id, **columns})

    def _moved(self) -> CheckpointMovedError:
        return CheckpointMovedError(
            f"the checkpoint of chain {self.chain_id} moved under this indexer:"
            " is another indexer running for this chain?"
        )

    async def roll_back(
        self,
        conn: psycopg.AsyncConnection,
        fork: BlockHeader | tuple[int, str | None],
        *,
        forget_deployments: bool = False,
    ) -> bool:
        """Forget everything above the fork block (-1: everything, no checkpoint stays), and
        with `forget_deployments` the registries' deployment blocks found on the chain, in
        the same transaction. True when the trigger engine had already processed orphaned
        events (a reorg deeper than the confirmation depth)."""
        number, block_hash = (fork.number, fork.hash) if isinstance(fork, BlockHeader) else fork
        params = {"chain_id": self.chain_id, "fork_block": number, "fork_hash": block_hash}
        async with conn.transaction():
            # As a batch does: a rebuild of the read model (which holds this row) waits.
            await conn.execute(QUERIES["lock_checkpoint"], params)
            await conn.execute(QUERIES["roll_back_read_model"], params)
            await conn.execute(QUERIES["cancel_orphaned_jobs"], params)
            await conn.execute(QUERIES["mark_reorged_out_deliveries"], params)
            await conn.execute(QUERIES["queue_retractions"], params)
            resume = await self._restore_trigger_state(conn, number)
            await conn.execute(QUERIES["delete_events_above"], params)
            await conn.execute(QUERIES["delete_unknown_logs_above"], params)
            await conn.execute(QUERIES["delete_blocks_above"], params)
            rewind = "rewind_checkpoint" if number >= 0 else "delete_checkpoint"
            await conn.execute(QUERIES[rewind], params)
            if forget_deployments:
                await conn.execute(QUERIES["forget_deployments"], params)
            position = {"chain_id": self.chain_id, "block_number": resume[0],
                        "log_index": resume[1]}  # fmt: skip
            await conn.execute(QUERIES["rewind_replays"], position)
            cursor = await conn.execute(QUERIES["rewind_processing_cursor"], position)
            return await cursor.fetchone() is not None

    async def _restore_trigger_state(
        self, conn: psycopg.AsyncConnection, fork_block: int
    ) -> tuple[int, int]:
        """The trigger state and last firings as they were before the first processed batch
        holding an event above the fork (from trigger_state_undo); returns the position the
        trigger engine resumes after: the end of the fork block, or just before that batch."""
        resume = (fork_block, MAX_LOG_INDEX)
        cursor = await conn.execute(
            QUERIES["first_orphaned_batch"], {"chain_id": self.chain_id, "fork_block": fork_block}
        )
        batch = await cursor.fetchone()
        if batch is None:
            return resume
        start = {"chain_id": self.chain_id, "block_number": batch[0], "log_index": batch[1]}
        for query in ("restore_trigger_state", "restore_last_fired", "forget_undone"):
            await conn.execute(QUERIES[query], start)
        return min(resume, (batch[0], batch[1] - 1))

    async def deployment_blocks(self, conn: psycopg.AsyncConnection) -> dict[str, int]:
        """Registry address -> the block of its deployment, as found on this chain before."""
        cursor = await conn.execute(QUERIES["deployment_blocks"], {"chain_id": self.chain_id})
        return {address: block for address, block in await cursor.fetchall()}

    async def remember_deployment(
        self, conn: psycopg.AsyncConnection, address: str, block_number: int
    ) -> None:
        params = {"chain_id": self.chain_id, "address": address, "block_number": block_number}
        await conn.execute(QUERIES["remember_deployment"], params)

    async def record_error(
        self, conn: psycopg.AsyncConnection, error: str, head: int | None
    ) -> None:
        await conn.execute(
            QUERIES["record_error"],
            {"chain_id": self.chain_id, "error": error[:2000], "head": head},
        )

    async def _ensure_partitions(
        self, conn: psycopg.AsyncConnection, rows: Sequence[EventRow]
    ) -> None:
        first = min(rows[0].block_time, rows[-1].block_time)
        last = max(rows[0].block_time, rows[-1].block_time)
        if self._partitions.covers(first, last):
            return
        # A little ahead, so that following the head rarely needs to ask.
        start, end = first, last + timedelta(days=14)
        # In a transaction of its own, before the batch's: attaching a partition locks the
        # default partition exclusively until commit, and every read of events that cannot
        # skip it by block_time (the trigger engine's, in chain order) would wait that long.
        async with conn.transaction():
            await conn.execute(QUERIES["ensure_partitions"], {"from_time": start, "to_time": end})
        self._partitions = PartitionCover(start, end)  # every week in [start, end] exists now
