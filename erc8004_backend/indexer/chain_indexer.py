"""Indexing one chain: backfill from the start block, then follow the head, surviving reorgs.

The start block is the configured one, or with "auto" the block that deployed the chain's
registries (`start_block`); it is decided only while the chain has no checkpoint.

Each step reads the checkpoint, fetches the logs of the next block range, fetches the headers
it needs (blocks with logs for their timestamps; near the head every block, for the parent
hash chain), and commits events + block hashes + checkpoint together (`EventStore`), with the
read model they change. Behind the head, the next ranges are fetched and decoded while one is
written, and those already there when it is written join its transaction.

Reorgs are seen in two places: the first new block's parent hash differs from the checkpoint's
hash, or (when caught up) the checkpoint's block is no longer the canonical one. Then the fork
point is the highest stored block whose hash the node still agrees with; everything above it
is deleted and indexed again. `confirmed_block_number` trails the head by the chain's
`confirmations`, and the trigger engine reads nothing above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.decode import DecodeError, decode_log
from erc8004_backend.chain.events import IGNORED_EVENTS, EventRow
from erc8004_backend.chain.rpc import RangeTooLargeError, RpcClient, RpcError, RpcUnavailableError
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.indexer.start_block import (
    RegistriesNotDeployedError,
    find_start_block,
    remembered_start_block,
)
from erc8004_backend.indexer.store import BlockHeader, Checkpoint, EventStore, UnknownLog
from erc8004_backend.retry import wait_or_stop

log = structlog.get_logger(__name__)

# eth_getLogs answers fastest at about a thousand logs; ranges adapt towards this many.
TARGET_LOGS_PER_REQUEST = 4_000
INITIAL_BLOCK_RANGE = 16
# Ranges fetched (and decoded) ahead while one is written. Eight make larger batches than
# four (about 4% less of PostgreSQL's CPU over a 100,000-event backfill) for some 20 MB more
# at the peak, now that a waiting range holds its rows and not its logs' JSON.
PREFETCH_DEPTH = 8
# Behind the head, the ranges already fetched when one is written go into the same batch, up
# to this many events: the read model's statements cost less per event in larger batches, so
# a backfill writes as fast as the database can take them.
EVENTS_PER_WRITE = 30_000
# A lowered range ceiling doubles back after this many ranges fetched under it: a node's
# real limit costs one refused request per this many, a passing refusal (a slow query, an
# endpoint failed over to) does not cap the backfill for good.
RANGES_BEFORE_CEILING_RISES = 32
# Logs decoded between turns of the event loop: a range of thousands decoded at once held it
# for tens of milliseconds, and the batch being copied meanwhile (or, in `erc8004 run`, the
# API and the worker) waited that long.
LOGS_PER_DECODE = 256


class ReorgTooDeepError(Erc8004Error):
    """The node disagrees with every block hash the indexer kept: the reorg is deeper than the
    reorg window, and the chain's events must be re-indexed from an earlier block."""


class ChainLockedError(Erc8004Error):
    """Another indexer holds this chain."""


@dataclass
class IndexerStats:
    events: int = 0
    batches: int = 0  # transactions written
    ranges: int = 0  # eth_getLogs ranges written (several may make one batch)
    reorgs: int = 0
    deep_reorgs: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # known non-agent events, by name
    unknown_topics: Counter[str] = field(default_factory=Counter)  # kept in unknown_logs
    decode_errors: int = 0


@dataclass(frozen=True)
class Progress:
    """What a progress display needs after each step."""

    chain: str
    start_block: int
    block: int
    head: int
    events: int
    caught_up: bool


ProgressCallback = Callable[[Progress], None]


def header_from_rpc(raw: dict[str, Any]) -> BlockHeader:
    return BlockHeader(
        number=int(raw["number"], 16),
        hash=raw["hash"].lower(),
        parent_hash=raw["parentHash"].lower(),
        time=datetime.fromtimestamp(int(raw["timestamp"], 16), UTC),
    )


class ChainMovedError(Exception):
    """The node's answers within one step disagree (a reorg happened meanwhile): retry."""


@dataclass(frozen=True)
class FetchedRange:
    from_block: int
    to_block: int
    head: int
    # How many logs eth_getLogs gave (the adaptive range's measure). The logs themselves are
    # dropped once decoded and checked against the headers: a range waits in the prefetch
    # queue, and their JSON is several times the size of the rows.
    log_count: int
    headers: dict[int, BlockHeader]
    near_head: list[int]  # blocks within the reorg window, whose hashes are kept
    # Decoded as soon as fetched, so that a prefetched range is decoded while the previous
    # one is written: the CPU of decoding overlaps PostgreSQL's work on the batch.
    rows: list[EventRow]
    unknown: list[UnknownLog]  # logs no decoder turned into an event
    skipped: Counter[str]  # the registries' known non-agent events, by name
    ranges: int = 1  # eth_getLogs ranges joined in this one

    def continued_by(self, following: FetchedRange) -> bool:
        """Whether `following` starts where this range ends, on the same chain."""
        last, first = self.headers[self.to_block], following.headers[following.from_block]
        return following.from_block == self.to_block + 1 and first.parent_hash == last.hash

    def joined(self, following: FetchedRange) -> FetchedRange:
        """This range and the one that continues it, as one."""
        return FetchedRange(
            self.from_block, following.to_block, max(self.head, following.head),
            self.log_count + following.log_count, self.headers | following.headers,
            self.near_head + following.near_head, self.rows + following.rows,
            self.unknown + following.unknown, self.skipped + following.skipped,
            self.ranges + following.ranges,
        )  # fmt: skip


class ChainIndexer:
    def __init__(
        self,
        chain: ChainConfig,
        conn: psycopg.AsyncConnection,
        rpc: RpcClient,
        *,
        on_progress: ProgressCallback | None = None,
        events_per_write: int = EVENTS_PER_WRITE,
    ) -> None:
        self.chain = chain
        self.conn = conn
        self.rpc = rpc
        self.store = EventStore(chain.chain_id)
        self.stats = IndexerStats()
        # Start small and let the range grow while logs are sparse: a first request over the
        # whole maximum range could be far too large on a busy chain.
        self.block_range = min(chain.max_block_range, INITIAL_BLOCK_RANGE)
        self.on_progress = on_progress
        self.events_per_write = events_per_write
        self._registries = chain.registry_addresses
        self._addresses = list(self._registries)
        self._log = log.bind(chain=chain.name, chain_id=chain.chain_id)
        # Fetches of the ranges that follow the one being stored, in block order; the last
        # one ends at _prefetched_to.
        self._prefetch: deque[asyncio.Task[FetchedRange]] = deque()
        self._prefetched_to = -1
        self._range_ceiling = chain.max_block_range
        self._ranges_under_ceiling = 0  # fetched since the ceiling was last lowered or raised
        # The block indexing began at (configured, found or remembered), for progress; None
        # until the first step of an "auto" chain.
        self.start_block: int | None = _configured_start(chain)
        self._found_start: int | None = None  # the "auto" chain's, once found

    # -- running --------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Take the chain's lock and check that the endpoints serve this chain."""
        if not await self.store.lock_chain(self.conn):
            raise ChainLockedError(
                f"another indexer is already indexing chain {self.chain.name}"
                f" ({self.chain.chain_id})"
            )
        await self.rpc.check_chain_id(self.chain.chain_id)

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        """Index until `stop` is set (or, with `once`, until caught up with the head); errors
        are logged, recorded and retried with backoff."""
        await self.prepare()
        try:
            await self._run_steps(stop, once)
        finally:
            await self.close()

    async def _run_steps(self, stop: asyncio.Event, once: bool) -> None:
        failures = 0
        while not stop.is_set():
            try:
                caught_up = await self.step()
                failures = 0
                if caught_up and once:
                    return
            except (RpcUnavailableError, RpcError, DecodeError) as error:
                self._drop_prefetch()
                failures += 1
                await self._record_failure(error, failures)
                caught_up = True  # wait before trying again
            except RegistriesNotDeployedError as error:
                # A devnet may answer before its registries are deployed (again): wait for
                # them. On any other chain the configuration is wrong.
                if not self.chain.restartable or once:
                    raise
                failures += 1
                await self._record_failure(error, failures)
                caught_up = True
            if caught_up:
                delay = self.chain.poll_interval if failures == 0 else min(30.0, 2.0**failures)
                await wait_or_stop(stop, delay)

    async def sync_to_head(self, *, max_steps: int = 1_000_000) -> int:
        """Index until caught up with the head as it is now; returns the checkpoint."""
        for _ in range(max_steps):
            if await self.step():
                checkpoint = await self.store.checkpoint(self.conn)
                return checkpoint.block_number if checkpoint.block_number is not None else -1
        raise Erc8004Error(f"{self.chain.name}: not caught up after {max_steps} steps")

    # -- one step -------------------------------------------------------------------------

    async def step(self) -> bool:
        """Index the next block range. True when there was nothing new to index."""
        checkpoint = await self.store.checkpoint(self.conn)
        head_header: BlockHeader | None = None
        if checkpoint.block_number is None:
            head, tip = await self.rpc.block_number(), None
            next_block = await self._first_block(head)
        else:
            # The checkpoint block's header comes with the head's, in one request: at the
            # head, where the indexer polls, every step checks that block is still the
            # chain's, and a range that ends at the head has its header before its logs.
            latest, tip = await self.rpc.head_and_header(checkpoint.block_number)
            head_header = header_from_rpc(latest)
            head = head_header.number
            next_block = checkpoint.block_number + 1
            if self.start_block is None:  # a resumed "auto" chain: for the progress display
                remembered = await remembered_start_block(self.chain, self.conn, self.store)
                self.start_block = remembered if remembered is not None else next_block
        if next_block > head:
            self._drop_prefetch()
            return not await self._rolled_back_at_tip(checkpoint, head, tip)
        try:
            fetched = await self._take_prefetched(next_block)
            if fetched is None:
                fetched = await self._fetch(
                    next_block, min(head, next_block + self.block_range - 1), head,
                    head_header=head_header,
                )  # fmt: skip
        except RangeTooLargeError:
            if self.block_range == 1:
                raise
            self.block_range = max(1, self.block_range // 2)
            # The node limits the range: stop growing back past what it accepted (for a while:
            # the refusal may have been a slow query, or another endpoint's).
            self._range_ceiling = self.block_range
            self._ranges_under_ceiling = 0
            self._log.info("indexer.range_shrunk", block_range=self.block_range)
            return False
        except ChainMovedError as moved:
            self._log.info("indexer.chain_moved", reason=str(moved))
            return False
        except RpcUnavailableError:
            # Timeouts on a dense range: ask for less next time (the run loop backs off).
            self.block_range = max(1, self.block_range // 2)
            raise
        self._adapt_range(fetched.log_count, fetched.to_block - fetched.from_block + 1)
        # Fetch the next ranges while this one is stored. Prefetched data is checked against
        # the checkpoint when it is stored, like any other, so a reorg meanwhile is still seen.
        if not self._prefetch:
            self._prefetched_to = fetched.to_block
        self._fill_prefetch(head)
        # Behind the head, the ranges fetched meanwhile join this batch. (At the head there is
        # nothing to prefetch: each new block is written as soon as it is fetched.)
        while len(fetched.rows) < self.events_per_write:
            following = self._take_ready(fetched)
            if following is None:
                break
            self._adapt_range(following.log_count, following.to_block - following.from_block + 1)
            fetched = fetched.joined(following)
            self._fill_prefetch(head)
        try:
            await self._store_range(checkpoint, fetched)
        except ChainMovedError as moved:
            self._drop_prefetch()
            self._log.info("indexer.chain_moved", reason=str(moved))
            return False
        return fetched.to_block >= head

    async def _first_block(self, head: int) -> int:
        """Where a chain without a checkpoint (yet, or again) starts."""
        configured = _configured_start(self.chain)
        if configured is None:
            if self._found_start is None:
                self._found_start = await find_start_block(
                    self.chain, self.conn, self.rpc, self.store, head
                )
            configured = self._found_start
        self.start_block = configured
        return configured

    async def _fetch(
        self, from_block: int, to_block: int, head: int, *, head_header: BlockHeader | None = None
    ) -> FetchedRange:
        """The logs of a block range and the headers that go with them. `head_header`: the
        head's header, asked for before (a range that ends there need not ask again)."""
        window_start = max(from_block, head - self.chain.reorg_window + 1)
        near_head = range(window_start, to_block + 1)
        # A range that ends at the head polled for has that block's header already: it is not
        # asked for again. Otherwise, near the head, the last block's hash before and after
        # eth_getLogs proves that the logs belong to the chain the headers describe.
        known: dict[int, BlockHeader] = {}
        before = None
        if head_header is not None and head_header.number == to_block:
            known[to_block] = head_header
        elif near_head:
            before = (await self.rpc.get_block_headers([to_block]))[0]["hash"]
        logs = await self.rpc.get_logs(self._addresses, from_block, to_block)
        # The first block's header too, always: its parent hash must be the checkpoint's, or
        # the chain changed below us while we were away (a restart after a reorg).
        wanted = sorted(({int(entry["blockNumber"], 16) for entry in logs}
                         | set(near_head) | {from_block, to_block}) - known.keys())  # fmt: skip
        raw_headers = await self.rpc.get_block_headers(wanted) if wanted else []
        headers = known | {h.number: h for h in map(header_from_rpc, raw_headers)}
        if before is not None and before.lower() != headers[to_block].hash:
            raise ChainMovedError(f"block {to_block} changed during eth_getLogs")
        # Logs and headers come from separate requests: a reorg in between shows as a mismatch
        # (the polled head's included). A head replaced after the poll without logs of ours
        # is stored, and found replaced at the next poll, which asks for its hash again.
        for entry in logs:
            header = headers[int(entry["blockNumber"], 16)]
            if entry["blockHash"].lower() != header.hash:
                raise ChainMovedError(f"block {header.number} changed between requests")
        rows: list[EventRow] = []
        unknown: list[UnknownLog] = []
        skipped: Counter[str] = Counter()
        for start in range(0, len(logs), LOGS_PER_DECODE):
            if start:
                await asyncio.sleep(0)
            self._decode(logs[start : start + LOGS_PER_DECODE], headers, rows, unknown, skipped)
        return FetchedRange(
            from_block, to_block, head, len(logs), headers, list(near_head), rows, unknown,
            skipped,
        )  # fmt: skip

    def _fill_prefetch(self, head: int) -> None:
        """Start fetching the ranges after the last one asked for, up to PREFETCH_DEPTH."""
        while len(self._prefetch) < PREFETCH_DEPTH and self._prefetched_to < head:
            start = self._prefetched_to + 1
            end = min(head, start + self.block_range - 1)
            self._prefetch.append(asyncio.create_task(self._fetch(start, end, head)))
            self._prefetched_to = end

    async def _take_prefetched(self, from_block: int) -> FetchedRange | None:
        """The prefetched range that starts at `from_block`, once fetched; None (and no
        prefetch left) when the next one starts elsewhere."""
        if not self._prefetch:
            return None
        task = self._prefetch.popleft()
        if task.done() and task.exception() is None and task.result().from_block != from_block:
            self._drop_prefetch()
            return None
        try:
            fetched = await task
        except BaseException:
            self._drop_prefetch()
            raise
        if fetched.from_block != from_block:
            self._drop_prefetch()
            return None
        return fetched

    def _take_ready(self, fetched: FetchedRange) -> FetchedRange | None:
        """The prefetched range that continues `fetched`, if it is already fetched and decoded;
        None otherwise."""
        if not self._prefetch:
            return None
        task = self._prefetch[0]
        if not task.done() or task.cancelled() or task.exception() is not None:
            return None
        following = task.result()
        if not fetched.continued_by(following):
            return None
        self._prefetch.popleft()
        return following

    def _drop_prefetch(self) -> None:
        while self._prefetch:
            task = self._prefetch.popleft()
            if task.done() and not task.cancelled():
                task.exception()  # a failure of a range no longer wanted: seen, not reported
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._prefetch)
        self._prefetch.clear()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _store_range(self, checkpoint: Checkpoint, fetched: FetchedRange) -> None:
        from_block, to_block, head = fetched.from_block, fetched.to_block, fetched.head
        headers = fetched.headers
        recent = [headers[n] for n in fetched.near_head]
        for parent, child in itertools.pairwise(recent):
            if child.parent_hash != parent.hash:
                raise ChainMovedError(f"block {child.number} does not extend {parent.number}")
        first = headers.get(from_block)
        if (
            first is not None
            and checkpoint.block_hash is not None
            and checkpoint.block_number == from_block - 1
            and first.parent_hash != checkpoint.block_hash
        ):
            await self._roll_back_reorg(checkpoint, head)
            raise ChainMovedError(f"reorg below block {from_block}")

        rows, unknown = fetched.rows, fetched.unknown
        self._count_undecoded(fetched)
        confirmed = min(to_block, head - self.chain.confirmations)
        if checkpoint.confirmed_block_number is not None:
            confirmed = max(confirmed, checkpoint.confirmed_block_number)
        await self.store.write_batch(
            self.conn,
            previous=checkpoint.block_number,
            rows=rows,
            blocks=recent,
            checkpoint=headers[to_block],
            head=head,
            confirmed=confirmed if confirmed >= 0 else None,
            keep_blocks_from=head - self.chain.reorg_window + 1,
            unknown=unknown,
        )
        self.stats.events += len(rows)
        self.stats.batches += 1
        self.stats.ranges += fetched.ranges
        if self.on_progress:
            start = self.start_block if self.start_block is not None else from_block
            self.on_progress(
                Progress(self.chain.name, start, to_block, head, self.stats.events,
                         to_block >= head)
            )  # fmt: skip

    def _decode(
        self,
        logs: Sequence[dict[str, Any]],
        headers: dict[int, BlockHeader],
        rows: list[EventRow],
        unknown: list[UnknownLog],
        skipped: Counter[str],
    ) -> None:
        """Adds the events of the logs to `rows`; the logs that are neither events nor the
        registries' known non-agent events to `unknown`; and to `skipped`, how many of those
        there were, by name (they are only counted)."""
        chain_id = self.chain.chain_id
        registries = self._registries
        for entry in logs:
            if entry.get("removed"):
                continue
            registry = registries.get(entry["address"].lower())
            if registry is None:
                continue
            block_time = headers[int(entry["blockNumber"], 16)].time
            try:
                row = decode_log(entry, chain_id=chain_id, registry=registry, block_time=block_time)
            except DecodeError as error:
                # A known topic with a layout we cannot read: a contract we do not know.
                unknown.append(UnknownLog.of(entry, registry, block_time, decode_error=str(error)))
                continue
            if row is None:
                topic0 = (entry.get("topics") or ["0x"])[0].lower()
                name = IGNORED_EVENTS.get(topic0)
                if name is not None:
                    skipped[name] += 1
                    continue
                unknown.append(UnknownLog.of(entry, registry, block_time))
                continue
            rows.append(row)

    def _count_undecoded(self, fetched: FetchedRange) -> None:
        """Count (and report) a range's logs that are no event, when the range is stored: a
        prefetched range may be dropped and fetched again."""
        self.stats.skipped.update(fetched.skipped)
        for log in fetched.unknown:
            if log.decode_error is not None:
                self.stats.decode_errors += 1
                self._log.warning("indexer.undecodable_log", error=log.decode_error,
                                  transaction=log.transaction_hash)  # fmt: skip
                continue
            topic0 = log.topic0 or "0x"
            if not self.stats.unknown_topics[topic0]:
                # Once per topic0 and process: a new ABI version, or a contract upgrade.
                self._log.warning("indexer.unknown_event", registry=log.registry, topic0=topic0,
                                  block=log.block_number,
                                  transaction=log.transaction_hash)  # fmt: skip
            self.stats.unknown_topics[topic0] += 1

    def _adapt_range(self, log_count: int, span: int) -> None:
        if self._range_ceiling < self.chain.max_block_range:
            self._ranges_under_ceiling += 1
            if self._ranges_under_ceiling >= RANGES_BEFORE_CEILING_RISES:
                self._range_ceiling = min(self.chain.max_block_range, self._range_ceiling * 2)
                self._ranges_under_ceiling = 0
        if log_count < TARGET_LOGS_PER_REQUEST // 2:
            self.block_range = min(self._range_ceiling, self.block_range * 2)
        elif log_count > TARGET_LOGS_PER_REQUEST * 2:
            self.block_range = max(1, span * TARGET_LOGS_PER_REQUEST // log_count)

    # -- reorgs ---------------------------------------------------------------------------

    async def _rolled_back_at_tip(
        self, checkpoint: Checkpoint, head: int, tip_header: dict[str, Any] | None
    ) -> bool:
        """Caught up: check that the checkpoint block is still canonical (else roll back and
        say so), and let the confirmed block follow the head. `tip_header`: the checkpoint
        block's header as the node gave it with the head."""
        if checkpoint.block_number is None:
            return False
        if checkpoint.block_number > head:
            # Either the canonical chain got shorter, or this node lags behind the one that
            # served the checkpoint (failover, load-balanced endpoints). Only a different
            # hash at the node's head says reorg; otherwise wait for the node to catch up.
            stored = await self.store.recent_blocks(self.conn, head, 1)
            if not stored or stored[0][0] != head:
                if not self.chain.restartable:
                    return False
                # A local devnet does not lag behind itself: it was started again.
                await self._roll_back_reorg(checkpoint, head)
                return True
            (raw,) = await self.rpc.get_block_headers([head])
            if header_from_rpc(raw).hash == stored[0][1]:
                self._log.info("indexer.node_behind", head=head, checkpoint=checkpoint.block_number)
                return False
            await self._roll_back_reorg(checkpoint, head)
            return True
        if tip_header is None:
            raise RpcError("eth_getBlockByNumber", -32001,
                           f"block {checkpoint.block_number} not found")  # fmt: skip
        tip = header_from_rpc(tip_header)
        if checkpoint.block_hash is not None and tip.hash != checkpoint.block_hash:
            await self._roll_back_reorg(checkpoint, head)
            return True
        confirmed = min(checkpoint.block_number, head - self.chain.confirmations)
        if confirmed >= 0 and confirmed != checkpoint.confirmed_block_number:
            await self.store.write_batch(
                self.conn, previous=checkpoint.block_number, rows=[], blocks=[],
                checkpoint=tip, head=head, confirmed=confirmed,
                keep_blocks_from=head - self.chain.reorg_window + 1,
            )  # fmt: skip
        return False

    async def _roll_back_reorg(self, checkpoint: Checkpoint, head: int) -> None:
        assert checkpoint.block_number is not None
        stored = await self.store.recent_blocks(
            self.conn, min(checkpoint.block_number, head), self.chain.reorg_window
        )
        candidates = [(number, block_hash) for number, block_hash, _ in stored]
        if stored and stored[-1][0] > 0:
            # The oldest stored block's parent is known too: a reorg right at the start
            # block (or at the edge of the window) still finds its fork point.
            candidates.append((stored[-1][0] - 1, stored[-1][2]))
        canonical: dict[int, str] = {}
        if candidates:
            headers = await self.rpc.get_block_headers([number for number, _ in candidates])
            canonical = {h.number: h.hash for h in map(header_from_rpc, headers)}
        fork = next(((n, h) for n, h in candidates if canonical.get(n) == h), None)
        if fork is None and self.chain.restartable:
            # A local devnet started again is a new chain with the same id: index it afresh,
            # as never before. Its registries were deployed again, likely at other blocks:
            # with "auto", the start block is found again.
            self._log.warning("indexer.devnet_restarted", checkpoint=checkpoint.block_number)
            await self.store.roll_back(self.conn, (-1, None), forget_deployments=True)
            self._found_start = None
            self.start_block = _configured_start(self.chain)
            return
        if fork is None:
            raise ReorgTooDeepError(
                f"{self.chain.name}: the node agrees with none of the last {len(stored)} stored"
                f" blocks below {checkpoint.block_number}; re-index from an earlier block"
            )
        depth = checkpoint.block_number - fork[0]
        deep = await self.store.roll_back(self.conn, fork)
        self.stats.reorgs += 1
        self.block_range = max(1, min(self.block_range, depth or 1))
        self._log.warning("indexer.reorg", fork_block=fork[0], depth=depth)
        if deep:
            self.stats.deep_reorgs += 1
            self._log.error(
                "indexer.reorg_deeper_than_confirmations",
                fork_block=fork[0],
                depth=depth,
                confirmations=self.chain.confirmations,
            )

    async def _record_failure(self, error: Exception, failures: int) -> None:
        self._log.warning("indexer.step_failed", error=str(error), failures=failures)
        # When the database itself is the problem, the retry loop will tell.
        with contextlib.suppress(psycopg.Error):
            await self.store.record_error(self.conn, str(error), None)


def _configured_start(chain: ChainConfig) -> int | None:
    return chain.start_block if isinstance(chain.start_block, int) else None
