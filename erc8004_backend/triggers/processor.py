"""The processor: confirmed events, in chain order, to trigger state and action jobs.

Per chain, one transaction per batch locks the processed mark (`processing_cursors`), reads
the next confirmed events and what evaluating them needs (plan.batch_needs: state rows, last
firings, summaries), plans the batch (plan.plan_batch, a pure function the backtest shares),
and applies the plan: the new trigger state, one job per action of each firing, the last
firings, and the moved mark. A crash at any instant leaves either the whole batch or none of
it, so every (event, action) gets exactly one job (the unique key on action_jobs makes even a
replay harmless).

NOTIFY only wakes the processor early: it finds work from the cursor after any restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from erc8004_backend.database.connection import RECONNECT_ERRORS
from erc8004_backend.database.queries import load_queries
from erc8004_backend.retry import run_reconnecting
from erc8004_backend.triggers.conditions import ConditionError
from erc8004_backend.triggers.crossings import Position
from erc8004_backend.triggers.fields import format_value
from erc8004_backend.triggers.index import TriggerIndex, compile_trigger
from erc8004_backend.triggers.plan import (
    HEAD_LOG_INDEX,
    ChainTime,
    Clock,
    Firing,
    Plan,
    batch_needs,
    plan_batch,
)
from erc8004_backend.triggers.stateful import State
from erc8004_backend.triggers.summary_reads import summary_changes

QUERIES = load_queries("erc8004_backend.triggers", "processor.sql")
log = structlog.get_logger(__name__)

BATCH_SIZE = 2_000
# Commits need not wait for the disk: a batch commits whole or not at all, so a crash of
# PostgreSQL can only lose the latest batches, which are evaluated again from the cursor.
ASYNC_COMMIT = "-c synchronous_commit=off"
INDEX_REFRESH_SECONDS = 30.0


async def load_trigger_index(conn: psycopg.AsyncConnection) -> TriggerIndex:
    """Every enabled trigger, compiled; one that no longer parses is skipped and logged."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(QUERIES["triggers_with_rules"], {"trigger_id": None})
    index = TriggerIndex()
    for row in await cursor.fetchall():
        try:
            index.add(compile_trigger(row))
        except ConditionError as error:
            log.error("processor.trigger_skipped", trigger_id=str(row["id"]), error=str(error))
    return index


def idempotency_key(event: Mapping[str, Any], trigger_id: str, action_id: str) -> str:
    """Stable per event, trigger and action, even if the event is stored again after a reorg
    of other blocks: it names the event by chain, block hash and log index."""
    name = (
        f"{event['chain_id']}:{event['block_hash']}:{event['log_index']}:{trigger_id}:{action_id}"
    )
    return hashlib.sha256(name.encode()).hexdigest()


def _json_default(value: Any) -> Any:
    # A number as the text templates show it (exact, no exponent, no trailing zeros): the
    # worker renders the payload's text as it is, so a score stored as 40.0 (value 400 with
    # 1 decimal) must travel as "40", as render_template shows the Decimal itself.
    if isinstance(value, Decimal):
        return format_value(value)
    if isinstance(value, bytes | memoryview):
        return "0x" + bytes(value).hex()
    raise TypeError(type(value).__name__)


def job_payload(firing: Firing) -> bytes:
    """What a worker needs besides the action's config: the event's fields (numbers as exact
    strings), the computed values and the trigger's name."""
    trigger = firing.trigger
    document = {
        "event_id": firing.event["id"],
        "event": firing.fields,
        "computed": {**firing.computed, "trigger_name": trigger.name, "trigger_id": trigger.id},
    }
    return orjson.dumps(document, default=_json_default)


@dataclass
class BatchResult:
    events: int = 0
    fired: int = 0
    jobs: int = 0
    last_position: tuple[int, int] | None = None

    def add(self, batch: BatchResult) -> None:
        """Counts `batch` in these totals."""
        self.events += batch.events
        self.fired += batch.fired
        self.jobs += batch.jobs


async def process_batch(
    conn: psycopg.AsyncConnection, chain_id: int, index: TriggerIndex, *, limit: int = BATCH_SIZE
) -> BatchResult:
    """Evaluate the next batch of ready events of a chain and commit its outcome. When the
    batch takes every ready event, the chain's time has come to its confirmed head: the
    silences due by then fire too (with no event at all, if nothing else happened)."""
    result = BatchResult()
    await conn.execute(QUERIES["insert_cursor"], {"chain_id": chain_id})
    async with conn.transaction():
        cursor = await conn.execute(QUERIES["lock_cursor"], {"chain_id": chain_id})
        position = await cursor.fetchone()
        assert position is not None
        events_cursor = conn.cursor(row_factory=dict_row)
        await events_cursor.execute(
            QUERIES["ready_events"],
            {"chain_id": chain_id, "block_number": position[0], "log_index": position[1],
             "limit": limit},
        )  # fmt: skip
        events = await events_cursor.fetchall()
        silences = index.silences(chain_id)
        head = await _confirmed_head(conn, chain_id) if silences and len(events) < limit else None
        if not events and head is None:
            return result
        needs = batch_needs(events, index, chain_id=chain_id if silences else None)
        states = await _load_states(conn, needs.states)
        if silences:
            until = head.block_time if head else events[-1]["block_time"]
            await _load_due_silences(conn, [t.id for t in silences], until, states)
        clock = Clock(await _load_last_fired(conn, needs.last_fired))
        # The agents' summaries as of each event, from the read model in this transaction.
        summaries = await summary_changes(conn, chain_id, needs.candidates)
        plan = plan_batch(events, index, states, clock, summaries, head=head)
        if events or plan.states:
            # The batch: from its first event (or the head block, when only time passed)
            # to the later of its last event's block and the head.
            ends = [events[-1]["block_number"]] if events else []
            if head is not None:
                ends.append(head.block_number)
            start = ((events[0]["block_number"], events[0]["log_index"]) if events
                     else (max(ends), HEAD_LOG_INDEX))  # fmt: skip
            last_block = max(ends)
            await _remember_for_reorgs(conn, chain_id, start, last_block, plan)
            result.jobs = await _apply(conn, chain_id, plan)
        if events:
            last = events[-1]
            await conn.execute(
                QUERIES["advance_cursor"],
                {"chain_id": chain_id, "block_number": last["block_number"],
                 "log_index": last["log_index"]},
            )  # fmt: skip
            result.last_position = (last["block_number"], last["log_index"])
    result.events = len(events)
    result.fired = len(plan.firings)
    return result


async def _confirmed_head(conn: psycopg.AsyncConnection, chain_id: int) -> ChainTime | None:
    """The latest confirmed block whose time the indexer stored (None: none yet)."""
    cursor = await conn.execute(QUERIES["confirmed_head"], {"chain_id": chain_id})
    row = await cursor.fetchone()
    return ChainTime(chain_id, row[0], row[1]) if row else None


async def _load_due_silences(
    conn: psycopg.AsyncConnection,
    trigger_ids: list[str],
    until: datetime,
    states: dict[str, dict[str, State]],
) -> None:
    """Adds to `states` the scopes of these silence triggers whose silent period is due by
    `until` (the only ones plan_batch can fire that no event of the batch names)."""
    cursor = await conn.execute(
        QUERIES["due_silences"], {"trigger_ids": trigger_ids, "until": until.timestamp()}
    )
    for trigger_id, scope, state in await cursor.fetchall():
        states.setdefault(trigger_id, {})[scope] = state


async def _load_states(
    conn: psycopg.AsyncConnection, wanted: set[tuple[str, str]]
) -> dict[str, dict[str, State]]:
    """The stored state of each (trigger, scope) wanted: trigger -> scope -> state."""
    if not wanted:
        return {}
    trigger_ids, scopes = zip(*wanted, strict=True)
    cursor = await conn.execute(
        QUERIES["load_states"], {"trigger_ids": list(trigger_ids), "scopes": list(scopes)}
    )
    states: dict[str, dict[str, State]] = {}
    for trigger_id, scope, state in await cursor.fetchall():
        states.setdefault(trigger_id, {})[scope] = state
    return states


async def _load_last_fired(conn: psycopg.AsyncConnection, ids: set[str]) -> dict[str, datetime]:
    if not ids:
        return {}
    cursor = await conn.execute(QUERIES["last_fired"], {"trigger_ids": list(ids)})
    return {trigger_id: fired for trigger_id, fired in await cursor.fetchall() if fired}


async def _remember_for_reorgs(
    conn: psycopg.AsyncConnection, chain_id: int, start: Position, last_block: int, plan: Plan
) -> None:
    """Before the plan is applied: if the batch reaches into the reorg window (the blocks
    whose hashes the indexer keeps), the trigger state and last firings it moves, as they
    were, for a reorg deeper than the confirmations to restore (see the indexer's store);
    and the records no reorg can reach any more go. The batch starts at `start` (its first
    event, or the head block that fired silences) and ends in block `last_block`."""
    cursor = await conn.execute(QUERIES["reorg_window_start"], {"chain_id": chain_id})
    row = await cursor.fetchone()
    window_start = row[0] if row else None
    if window_start is None:
        return
    await conn.execute(QUERIES["prune_undo"], {"chain_id": chain_id, "window_start": window_start})
    if last_block < window_start or not (plan.states or plan.last_fired):
        return
    batch = {
        "chain_id": chain_id,
        "batch_block": start[0],
        "batch_log_index": start[1],
        "batch_last_block": last_block,
    }
    if plan.states:
        keys = list(plan.states)
        await conn.execute(
            QUERIES["remember_states"],
            {**batch, "trigger_ids": [k[0] for k in keys], "scopes": [k[1] for k in keys]},
        )
    if plan.last_fired:
        await conn.execute(
            QUERIES["remember_last_fired"], {**batch, "trigger_ids": list(plan.last_fired)}
        )


async def _apply(conn: psycopg.AsyncConnection, chain_id: int, plan: Plan) -> int:
    """Writes the plan (in the caller's transaction); returns how many jobs it queued."""
    if plan.states:
        keys = list(plan.states)
        await conn.execute(
            QUERIES["save_states"],
            {
                "trigger_ids": [k[0] for k in keys],
                "scopes": [k[1] for k in keys],
                "states": [Jsonb(plan.states[k].state) for k in keys],
                "block_numbers": [plan.states[k].position[0] for k in keys],
                "log_indexes": [plan.states[k].position[1] for k in keys],
            },
        )
    await queue_jobs(conn, chain_id, plan.firings)
    if plan.last_fired:
        await conn.execute(
            QUERIES["mark_fired"],
            {"trigger_ids": list(plan.last_fired), "fired_at": list(plan.last_fired.values())},
        )
    return sum(len(firing.trigger.actions) for firing in plan.firings)


async def queue_jobs(conn: psycopg.AsyncConnection, chain_id: int, firings: list[Firing]) -> int:
    """One job per action of each firing (in the caller's transaction), but none for an
    (event, action), or (silent period, action), that has one already; returns how many were
    queued. Replays share it."""
    jobs: list[tuple[str, str, int | None, int, str, bytes, int | None, str | None]] = []
    for firing in firings:
        payload = job_payload(firing)
        silence = firing.silence.key(firing.trigger.id) if firing.silence else None
        for action in firing.trigger.actions:
            if silence is None:
                key = idempotency_key(firing.event, firing.trigger.id, action.id)
            else:
                key = hashlib.sha256(
                    f"{chain_id}:silence:{silence}:{action.id}".encode()
                ).hexdigest()
            jobs.append((firing.trigger.id, action.id, firing.event["id"], action.priority, key,
                         payload, action.max_attempts, silence))  # fmt: skip
    if jobs:
        columns = list(zip(*jobs, strict=True))
        inserted = await conn.execute(
            QUERIES["insert_jobs"],
            {
                "chain_id": chain_id,
                "trigger_ids": list(columns[0]),
                "action_ids": list(columns[1]),
                "event_ids": list(columns[2]),
                "priorities": list(columns[3]),
                "keys": list(columns[4]),
                "payloads": [payload.decode() for payload in columns[5]],
                "max_attempts": list(columns[6]),
                "silence_keys": list(columns[7]),
            },
        )
        return max(inserted.rowcount, 0)
    return 0


class Processor:
    """Processes every chain it can lock, until stopped; several processors share the work."""

    def __init__(
        self, url: str, *, poll_interval: float = 1.0, batch_size: int = BATCH_SIZE
    ) -> None:
        self.url = url
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.index = TriggerIndex()
        self.totals = BatchResult()
        self._index_loaded_at = 0.0
        self._index_stale = True
        self._held: set[int] = set()
        self.replay_totals = BatchResult()
        self._replays_pending = False  # a replay has batches left: do not wait for a notice

    async def run(self, stop: asyncio.Event) -> None:
        async with (
            await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, options=ASYNC_COMMIT
            ) as conn,
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listener,
        ):
            await listener.execute("LISTEN new_event")
            await listener.execute("LISTEN trigger_changed")
            while not stop.is_set():
                await self.run_once(conn)
                await self._wait(listener, stop)

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        """Process every ready event of every chain this processor holds; returns the count."""
        if self._index_stale or time.monotonic() - self._index_loaded_at > INDEX_REFRESH_SECONDS:
            self.index = await load_trigger_index(conn)
            self._index_loaded_at, self._index_stale = time.monotonic(), False
            log.info("processor.triggers_loaded", triggers=len(self.index))
        processed = 0
        replays_pending = False
        cursor = await conn.execute(QUERIES["chains_with_events"])
        for (chain_id,) in await cursor.fetchall():
            if chain_id not in self._held:
                locked = await conn.execute(QUERIES["lock_chain"], {"chain_id": chain_id})
                row = await locked.fetchone()
                if not (row and row[0]):
                    continue  # another processor has this chain
                self._held.add(chain_id)
            while True:
                batch = await process_batch(conn, chain_id, self.index, limit=self.batch_size)
                processed += batch.events
                self.totals.add(batch)
                if batch.events:
                    log.debug("processor.batch", chain_id=chain_id, events=batch.events,
                              fired=batch.fired, jobs=batch.jobs)  # fmt: skip
                if batch.events < self.batch_size:
                    break
            replays_pending = await self._replay(conn, chain_id) or replays_pending
        self._replays_pending = replays_pending
        return processed

    async def _replay(self, conn: psycopg.AsyncConnection, chain_id: int) -> bool:
        """After the chain's live events: take up its new replays (and reload the triggers
        before any later live batch, as their end requires), then run replays for a time
        slice; returns whether any has batches left."""
        # Imported here: replay.py builds on this module (its queries and job insert).
        from erc8004_backend.triggers.replay import run_replays, start_replays

        if await start_replays(conn, chain_id):
            self.index = await load_trigger_index(conn)
            self._index_loaded_at = time.monotonic()
        batch, pending = await run_replays(conn, chain_id, limit=self.batch_size)
        self.replay_totals.add(batch)
        if batch.events:
            log.debug("processor.replay", chain_id=chain_id, events=batch.events,
                      fired=batch.fired, jobs=batch.jobs)  # fmt: skip
        return pending

    async def _wait(self, listener: psycopg.AsyncConnection, stop: asyncio.Event) -> None:
        """Until a notification, the poll interval, or stop; then take in every notification
        already queued. A trigger change applies to the events processed after its
        notification arrives, a few milliseconds after it commits."""
        if stop.is_set():
            return
        timeout = 0.0 if self._replays_pending else self.poll_interval
        async for notice in listener.notifies(timeout=timeout, stop_after=1):
            self._note(notice.channel)
        async for notice in listener.notifies(timeout=0):
            self._note(notice.channel)

    def _note(self, channel: str) -> None:
        if channel == "trigger_changed":
            self._index_stale = True


async def run_processor(
    url: str, stop: asyncio.Event, *, poll_interval: float = 1.0, batch_size: int = BATCH_SIZE
) -> None:
    """A processor until `stop`, reconnecting after database failures: the cursor is durable,
    so a new session resumes exactly where the last commit left off."""

    async def process() -> None:
        await Processor(url, poll_interval=poll_interval, batch_size=batch_size).run(stop)

    await run_reconnecting(process, stop, event="processor.database_unavailable",
                           retry_on=RECONNECT_ERRORS)  # fmt: skip
