"""Rebuilding the read model from stored events (`erc8004 db rebuild-read-model`).

The indexer keeps the model as it stores each batch, with the SQL function
`read_model_apply` over the batch's blocks (migration 20). A rebuild forgets a chain's model
and applies the same function over the chain's stored events, a chunk of blocks at a time
for progress, in one transaction per chain: the model a rebuild makes is the one the indexer
would have made, and a failure leaves the chain's model as it was. The rebuild locks the
chain's checkpoint row, so a running indexer waits for it instead of writing in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.indexer", "read_model.sql")

# Events per read_model_apply call of a rebuild: large enough for set-based work to pay, small
# enough for the progress to move.
EVENTS_PER_CHUNK = 50_000


@dataclass(frozen=True)
class BlockRange:
    from_block: int
    to_block: int
    events: int


@dataclass(frozen=True)
class ChainRebuild:
    """What a rebuild made of one chain's events."""

    chain_id: int
    events: int
    first_block: int | None
    last_block: int | None
    agents: int
    feedback: int
    revoked: int
    responses: int
    validation_requests: int
    seconds: float


def block_ranges(
    events_per_block: Iterable[tuple[int, int]], events_per_range: int = EVENTS_PER_CHUNK
) -> list[BlockRange]:
    """Consecutive block ranges of at least `events_per_range` events each (the last may have
    fewer), from (block, events) pairs in block order. A block is never split."""
    ranges: list[BlockRange] = []
    start: int | None = None
    last = 0
    count = 0
    for block, events in events_per_block:
        if start is None:
            start = block
        last = block
        count += events
        if count >= events_per_range:
            ranges.append(BlockRange(start, block, count))
            start, count = None, 0
    if start is not None:
        ranges.append(BlockRange(start, last, count))
    return ranges


def chains_with_events(conn: psycopg.Connection) -> list[int]:
    """The chains with stored events or a model."""
    return [chain_id for (chain_id,) in conn.execute(QUERIES["chains_with_events"]).fetchall()]


def rebuild_chain(
    conn: psycopg.Connection,
    chain_id: int,
    *,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ChainRebuild:
    """Rebuilds one chain's model from its events, in one transaction. `on_start` gets the
    number of events to apply, `on_progress` each chunk's."""
    started = time.perf_counter()
    params = {"chain_id": chain_id}
    with conn.transaction():
        conn.execute(QUERIES["lock_checkpoint"], params)
        conn.execute(QUERIES["clear"], params)
        counts: Sequence[tuple[int, int]] = conn.execute(
            QUERIES["events_per_block"], params
        ).fetchall()
        ranges = block_ranges(counts)
        total = sum(r.events for r in ranges)
        if on_start is not None:
            on_start(total)
        for chunk in ranges:
            conn.execute(
                QUERIES["apply"],
                {"chain_id": chain_id, "from_block": chunk.from_block, "to_block": chunk.to_block},
            )
            if on_progress is not None:
                on_progress(chunk.events)
        with conn.cursor(row_factory=dict_row) as cursor:
            sizes = cursor.execute(QUERIES["sizes"], params).fetchone()
    assert sizes is not None
    return ChainRebuild(
        chain_id=chain_id,
        events=total,
        first_block=ranges[0].from_block if ranges else None,
        last_block=ranges[-1].to_block if ranges else None,
        seconds=time.perf_counter() - started,
        **sizes,
    )
