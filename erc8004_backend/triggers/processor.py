"""The processor: confirmed events, in chain order, to trigger state and action jobs.

Per chain, one transaction per batch locks the processed mark (`processing_cursors`), reads
the next confirmed events and what evaluating them needs (plan.batch_needs: state rows, last
firings, summaries), plans the batch (plan.plan_batch, a pure function the backtest shares),
and applies the plan: the new trigger state, one job per action of each firing, the last
firings, and the moved mark. A crash at any instant leaves either the whole batch or none of
it, so every (event, action) gets exactly one job (the unique key on action_jobs makes even a
replay harmless).

While it holds a chain, a Processor remembers the state rows and last firings its batches
read and wrote (ChainMemory), and reads only the others; it forgets them when the cursor is
not where its last batch left it (a deep reorg's restore), after any error, and whenever it
reloads the triggers. A live batch's jobs go by a binary COPY; should any of them exist
already, the unique key fails the COPY and an INSERT ... ON CONFLICT DO NOTHING queues them.

Processor.run works ahead (process_chain): with a second connection it reads and plans batch
N+1 while the first writes batch N, from the state batch N leaves (the memory holds it);
batch N+1's transaction then writes only if the locked cursor is where batch N left it and
N+1's last event is still stored. process_batch, which reads and writes in one transaction,
is the same batch one at a time.

NOTIFY only wakes the processor early: it finds work from the cursor after any restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import operator
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_dumps

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

# Events per batch when that many are ready. A batch writes each state row it moves once,
# however many of its events moved it, so larger batches write fewer (bench.triggers through
# history: PostgreSQL's CPU 0.36 s at 2,000, 0.22 s at 5,000 a 100,000 events).
BATCH_SIZE = 5_000
# Commits need not wait for the disk: a batch commits whole or not at all, so a crash of
# PostgreSQL can only lose the latest batches, which are evaluated again from the cursor.
ASYNC_COMMIT = "-c synchronous_commit=off"
INDEX_REFRESH_SECONDS = 30.0
# action_jobs.max_attempts' default, for an action without its own: a COPY names every column.
DEFAULT_MAX_ATTEMPTS = 8
# A chain's remembered state rows (ChainMemory) above this many are forgotten and read again.
MAX_REMEMBERED_STATES = 200_000


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
    return _hashed_key(_key_name(event, trigger_id), action_id)


def _key_name(event: Mapping[str, Any], trigger_id: str) -> str:
    """What an idempotency key hashes, less the action's id (which ends it)."""
    return f"{event['chain_id']}:{event['block_hash']}:{event['log_index']}:{trigger_id}:"


def _hashed_key(name: str, action_id: str) -> str:
    """The key of a job: its firing's name (an event's, or a silent period's) and its action."""
    return hashlib.sha256((name + action_id).encode()).hexdigest()


_NUMBER_TEXT: dict[Decimal, str] = {}


def _json_default(value: Any) -> Any:
    # A number as the text templates show it (exact, no exponent, no trailing zeros): the
    # worker renders the payload's text as it is, so a score stored as 40.0 (value 400 with
    # 1 decimal) must travel as "40", as render_template shows the Decimal itself.
    if isinstance(value, Decimal):
        # Kept by value (equal numbers have the same text): agents, scores and other
        # numbers come again and again, and formatting one costs ten lookups.
        text = _NUMBER_TEXT.get(value)
        if text is None:
            if len(_NUMBER_TEXT) > 100_000:
                _NUMBER_TEXT.clear()
            text = _NUMBER_TEXT[value] = format_value(value)
        return text
    if isinstance(value, bytes | memoryview):
        return "0x" + bytes(value).hex()
    raise TypeError(type(value).__name__)


def job_payload(firing: Firing, *, replay: bool = False) -> bytes:
    """What a worker needs besides the action's config: the event's fields (numbers as exact
    strings), the computed values and the trigger's name; `"replay": true` in a replay's."""
    trigger = firing.trigger
    document: dict[str, Any] = {
        "event_id": firing.event["id"],
        "event": firing.fields,
        "computed": {**firing.computed, "trigger_name": trigger.name, "trigger_id": trigger.id},
    }
    if replay:
        document["replay"] = True
    return orjson.dumps(document, default=_json_default)


@dataclass
class BatchResult:
    events: int = 0
    fired: int = 0
    jobs: int = 0
    last_position: tuple[int, int] | None = None

    def add(self, batch: BatchResult) -> None:
        """Counts `batch` in these totals (and its last position, if it moved the cursor)."""
        self.events += batch.events
        self.fired += batch.fired
        self.jobs += batch.jobs
        self.last_position = batch.last_position or self.last_position


@dataclass
class ChainMemory:
    """What a processor holding a chain knows of it between its batches: the position its
    last batch committed and, as they stand since that commit, the state rows and last
    firings it has read or written, so that the next batch reads from PostgreSQL only those
    it has not seen (None: absent). Only the processor holding the chain's lock writes them,
    except a deep reorg's restore (the indexer's store), which also rewinds the cursor: a
    cursor found elsewhere than `position` makes the memory worthless, as does any error
    (the batch's transaction may not have committed) and any reload of the triggers (a
    trigger changed or a replay began): the caller forgets it then."""

    position: tuple[int, int] | None = None
    states: dict[tuple[str, str], State | None] = field(default_factory=dict)
    last_fired: dict[str, datetime | None] = field(default_factory=dict)
    # The state rows the latest planned batch moved: the only ones PostgreSQL may not hold
    # yet (that batch may still be committing), which due silences are read from.
    latest: dict[tuple[str, str], State] = field(default_factory=dict)

    def forget(self) -> None:
        self.position = None
        self.states.clear()
        self.last_fired.clear()
        self.latest = {}

    def planned(self, plan: Plan | None) -> None:
        """Takes in what `plan` leaves (None: a batch without events): the next batch is
        planned from it, whether or not this one has committed yet (if it does not, the
        caller forgets the memory)."""
        if plan is None:
            return
        if len(self.states) > MAX_REMEMBERED_STATES:
            self.states.clear()
        self.latest = {key: change.state for key, change in plan.states.items()}
        self.states.update(self.latest)
        self.last_fired.update(plan.last_fired)

    def committed(self, position: tuple[int, int]) -> None:
        """The batch leaving the cursor at `position` committed (its plan taken in before)."""
        self.position = position


@dataclass
class _Batch:
    """A batch read and planned, not yet written: the cursor position it follows, how many
    events it read (the cursor moves past them all) with the first and last of them, the
    events the plan saw (see _ready_batch), the chain's head when the batch reaches it
    (silences), and its plan (None: nothing to do)."""

    after: Position
    count: int
    first: Mapping[str, Any] | None
    last: Mapping[str, Any] | None
    events: list[dict[str, Any]]
    head: ChainTime | None
    plan: Plan | None

    @property
    def end(self) -> Position:
        """Where the batch leaves the cursor."""
        if self.last is None:
            return self.after
        return (self.last["block_number"], self.last["log_index"])


async def process_batch(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    index: TriggerIndex,
    *,
    limit: int = BATCH_SIZE,
    memory: ChainMemory | None = None,
) -> BatchResult:
    """Evaluate the next batch of ready events of a chain and commit its outcome, reading
    and writing in one transaction. When the batch takes every ready event, the chain's
    time has come to its confirmed head: the silences due by then fire too (with no event
    at all, if nothing else happened). `memory` (the caller's, for the chain it holds)
    saves reading the state it has seen again."""
    await conn.execute(QUERIES["insert_cursor"], {"chain_id": chain_id})
    try:
        async with conn.transaction():
            position = await _lock_cursor(conn, chain_id)
            if memory is not None and memory.position != position:
                memory.forget()  # a reorg's restore moved the cursor, or first batch
            batch = await _read_and_plan(conn, chain_id, index, position, limit, memory)
            result = await _write(conn, chain_id, batch)
    except BaseException:
        if memory is not None:
            memory.forget()
        raise
    if memory is not None:
        memory.planned(batch.plan)
        memory.committed(batch.end)
    return result


class _CursorMovedError(Exception):
    """The cursor is not where the batches planned ahead assumed (a deep reorg's restore
    rewound it), or their events are gone (a reorg removed them): plan again."""


async def process_chain(
    conn: psycopg.AsyncConnection,
    reader: psycopg.AsyncConnection,
    chain_id: int,
    index: TriggerIndex,
    memory: ChainMemory,
    *,
    limit: int = BATCH_SIZE,
) -> BatchResult:
    """Every ready event of a chain, as process_batch's batches would, with two connections
    at work at once: while `conn` writes and commits batch N (its jobs, state and cursor in
    one transaction, as process_batch does), batch N+1 is read on `reader` and planned from
    the state batch N leaves, which `memory` already holds. Before batch N+1 is written, its
    transaction locks the cursor and checks that it is where batch N left it and that batch
    N+1's last event is still stored (a reorg removes the events above its fork, so the
    last one goes with any other); if not, the batch is planned again from the cursor. A
    failure anywhere forgets the memory (batch N may not have committed). Returns the
    totals; `last_position` is the last batch's."""
    totals = BatchResult()
    await conn.execute(QUERIES["insert_cursor"], {"chain_id": chain_id})
    while True:
        try:
            await _process_ahead(conn, reader, chain_id, index, memory, limit, totals)
            return totals
        except _CursorMovedError:
            log.info("processor.cursor_moved", chain_id=chain_id)
            memory.forget()
        except BaseException:
            memory.forget()
            raise


async def _process_ahead(
    conn: psycopg.AsyncConnection,
    reader: psycopg.AsyncConnection,
    chain_id: int,
    index: TriggerIndex,
    memory: ChainMemory,
    limit: int,
    totals: BatchResult,
) -> None:
    cursor = await conn.execute(QUERIES["cursor"], {"chain_id": chain_id})
    row = await cursor.fetchone()
    assert row is not None
    after = (row[0], row[1])
    if memory.position != after:
        memory.forget()  # a reorg's restore moved the cursor, or first batch
        memory.committed(after)
    writing: asyncio.Task[BatchResult] | None = None
    try:
        while True:
            async with reader.transaction():
                batch = await _read_and_plan(reader, chain_id, index, after, limit, memory)
            memory.planned(batch.plan)
            if writing is not None:
                totals.add(await writing)
                writing = None
            if batch.plan is None and not batch.count:
                return
            writing = asyncio.create_task(_commit(conn, chain_id, batch, memory))
            after = batch.end
            if batch.count < limit:
                totals.add(await writing)
                writing = None
                return
    finally:
        if writing is not None:  # an error while the batch was written: let it end
            with contextlib.suppress(Exception):
                await writing


async def _commit(
    conn: psycopg.AsyncConnection, chain_id: int, batch: _Batch, memory: ChainMemory
) -> BatchResult:
    """Writes a batch planned ahead in its own transaction, if the cursor and its events
    are as it was planned from (else _CursorMovedError)."""
    last = batch.last or {"id": None, "block_time": None}
    async with conn.transaction():
        cursor = await conn.execute(
            QUERIES["lock_cursor_ahead"],
            {"chain_id": chain_id, "id": last["id"], "block_time": last["block_time"]},
        )
        row = await cursor.fetchone()
        assert row is not None
        if (row[0], row[1]) != batch.after or not row[2]:
            raise _CursorMovedError
        result = await _write(conn, chain_id, batch)
    memory.committed(batch.end)
    return result


async def _lock_cursor(conn: psycopg.AsyncConnection, chain_id: int) -> Position:
    cursor = await conn.execute(QUERIES["lock_cursor"], {"chain_id": chain_id})
    row = await cursor.fetchone()
    assert row is not None
    return (row[0], row[1])


async def _read_and_plan(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    index: TriggerIndex,
    after: Position,
    limit: int,
    memory: ChainMemory | None,
) -> _Batch:
    """The next batch after `after`, read and planned (in the caller's transaction)."""
    # The confirmed head before the events (each statement sees what was committed when it
    # began): a batch that drains them then holds every event up to that head. Read after,
    # the head could be past events the indexer confirmed in between, which the batch does
    # not hold, and silences they end would fire at its time.
    head = await _confirmed_head(conn, chain_id) if index.silences(chain_id) else None
    count, first, last, events = await _ready_batch(conn, chain_id, index, after, limit)
    if count >= limit:
        head = None  # not drained: the events after this batch come before the head
    plan = None
    if events or head is not None:
        plan = await _plan(conn, chain_id, index, events, head, memory)
    return _Batch(after, count, first, last, events, head, plan)


async def _write(conn: psycopg.AsyncConnection, chain_id: int, batch: _Batch) -> BatchResult:
    """Writes a planned batch in the caller's transaction, which holds the cursor's lock: the
    plan's state, jobs and last firings, and the cursor moved past its events."""
    result = BatchResult(events=batch.count)
    plan, first, last, head = batch.plan, batch.first, batch.last, batch.head
    if plan is not None and (batch.events or plan.states):
        # The batch: from its first event (or the head block, when only time passed) to
        # the later of its last event's block and the head.
        ends = [last["block_number"]] if last is not None else []
        if head is not None:
            ends.append(head.block_number)
        start = ((first["block_number"], first["log_index"]) if first is not None
                 else (max(ends), HEAD_LOG_INDEX))  # fmt: skip
        await _remember_for_reorgs(conn, chain_id, start, max(ends), plan)
        result.jobs = await _apply(conn, chain_id, plan)
        result.fired = len(plan.firings)
    if batch.count:
        result.last_position = batch.end
        await conn.execute(
            QUERIES["advance_cursor"],
            {"chain_id": chain_id, "block_number": batch.end[0], "log_index": batch.end[1]},
        )
    return result


async def _plan(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    index: TriggerIndex,
    events: list[dict[str, Any]],
    head: ChainTime | None,
    memory: ChainMemory | None,
) -> Plan:
    """The batch's plan, from what it needs read first (in the batch's transaction)."""
    silences = index.silences(chain_id)
    needs = batch_needs(events, index, chain_id=chain_id if silences else None)
    states = await _load_states(conn, needs.states, memory)
    if silences:
        until = head.block_time if head else events[-1]["block_time"]
        await _load_due_silences(conn, [t.id for t in silences], until, states)
        if memory is not None:
            # The stored rows may be older than the latest batch's (still committing).
            silent = {trigger.id for trigger in silences}
            for (trigger_id, scope), state in memory.latest.items():
                if trigger_id in silent:
                    states.setdefault(trigger_id, {})[scope] = state
    clock = Clock(await _load_last_fired(conn, needs.last_fired, memory))
    # The agents' summaries as of each event, from the read model in this transaction.
    summaries = await summary_changes(conn, chain_id, needs.candidates)
    # In a thread: plan_batch is pure Python, tens of milliseconds for a full batch, and
    # meanwhile the event loop goes on with the previous batch's writes (process_chain),
    # whose every round trip would otherwise wait for the plan to end.
    return await asyncio.to_thread(plan_batch, events, index, states, clock, summaries,
                                   head=head)  # fmt: skip


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
    `until` (the only ones plan_batch can fire that no event of the batch names). Only the
    processor holding the chain writes them: they equal what its memory holds."""
    cursor = await conn.execute(
        QUERIES["due_silences"],
        {"trigger_ids": [_uuid(t) for t in trigger_ids], "until": until.timestamp()},
    )
    for trigger_id, scope, state in await cursor.fetchall():
        states.setdefault(trigger_id, {})[scope] = state


async def _ready_batch(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    index: TriggerIndex,
    after: Position,
    limit: int,
) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
    """The next `limit` confirmed events after the position, as _ready_events reads them:
    how many, the first and the last, and those the plan must see, by column name. On a
    chain with silence triggers that is every event (its time fires them); else only those
    with candidate triggers (index.candidates_at), the others doing nothing: a backfill's
    history is mostly such events, and making each row's dict is the reading's larger part."""
    await conn.execute(QUERIES["sort_off"])
    cursor = conn.cursor()
    await cursor.execute(
        QUERIES["ready_events"],
        {"chain_id": chain_id, "block_number": after[0], "log_index": after[1], "limit": limit},
    )
    rows = await cursor.fetchall()
    await conn.execute(QUERIES["sort_on"])
    if not rows or cursor.description is None:
        return 0, None, None, []
    names = [column.name for column in cursor.description]
    if index.silences(chain_id):
        events = [dict(zip(names, row, strict=True)) for row in rows]
        return len(rows), events[0], events[-1], events
    key = operator.itemgetter(*(names.index(name) for name in _CANDIDATE_KEY))
    candidates_at = index.candidates_at
    events = [dict(zip(names, row, strict=True)) for row in rows if candidates_at(*key(row))]
    first, last = (dict(zip(names, row, strict=True)) for row in (rows[0], rows[-1]))
    return len(rows), first, last, events


# The columns that name an event's candidate triggers (TriggerIndex.candidates_at's order).
_CANDIDATE_KEY = ("chain_id", "registry", "event_type", "agent_id", "block_time")


async def _ready_events(
    conn: psycopg.AsyncConnection, chain_id: int, after: tuple[int, int], limit: int
) -> list[dict[str, Any]]:
    """The next `limit` confirmed events after the position, in chain order (rows by column
    name), read with sorts off (see sort_off in processor.sql) and on again after."""
    await conn.execute(QUERIES["sort_off"])
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        QUERIES["ready_events"],
        {"chain_id": chain_id, "block_number": after[0], "log_index": after[1], "limit": limit},
    )
    events = await cursor.fetchall()
    await conn.execute(QUERIES["sort_on"])
    return events


async def _load_states(
    conn: psycopg.AsyncConnection,
    wanted: set[tuple[str, str]],
    memory: ChainMemory | None = None,
) -> dict[str, dict[str, State]]:
    """The stored state of each (trigger, scope) wanted: trigger -> scope -> state; those in
    `memory` from there, the others read (and remembered)."""
    known: dict[tuple[str, str], State | None] = memory.states if memory is not None else {}
    unknown = [key for key in wanted if key not in known]
    read: dict[tuple[str, str], State | None] = {}
    if unknown:
        cursor = await conn.execute(
            QUERIES["load_states"],
            {"trigger_ids": [_uuid(k[0]) for k in unknown], "scopes": [k[1] for k in unknown]},
        )
        read = dict.fromkeys(unknown)
        for trigger_id, scope, state in await cursor.fetchall():
            read[(trigger_id, scope)] = state
        if memory is not None:
            known.update(read)
    states: dict[str, dict[str, State]] = {}
    for key in wanted:
        state = read[key] if key in read else known[key]
        if state is not None:
            states.setdefault(key[0], {})[key[1]] = state
    return states


async def _load_last_fired(
    conn: psycopg.AsyncConnection, ids: set[str], memory: ChainMemory | None = None
) -> dict[str, datetime]:
    """Each trigger's last delivered firing, of those that have one; from `memory` when it
    knows the trigger (and remembered there when read)."""
    known: dict[str, datetime | None] = memory.last_fired if memory is not None else {}
    unknown = [trigger_id for trigger_id in ids if trigger_id not in known]
    read: dict[str, datetime | None] = {}
    if unknown:
        cursor = await conn.execute(
            QUERIES["last_fired"], {"trigger_ids": [_uuid(t) for t in unknown]}
        )
        read = dict.fromkeys(unknown)
        read.update(await cursor.fetchall())
        if memory is not None:
            known.update(read)
    fired = {trigger_id: read[trigger_id] if trigger_id in read else known[trigger_id]
             for trigger_id in ids}  # fmt: skip
    return {trigger_id: when for trigger_id, when in fired.items() if when is not None}


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
            {**batch, "trigger_ids": [_uuid(k[0]) for k in keys], "scopes": [k[1] for k in keys]},
        )
    if plan.last_fired:
        await conn.execute(
            QUERIES["remember_last_fired"],
            {**batch, "trigger_ids": [_uuid(t) for t in plan.last_fired]},
        )


async def _apply(conn: psycopg.AsyncConnection, chain_id: int, plan: Plan) -> int:
    """Writes the plan (in the caller's transaction); returns how many jobs it queued."""
    if plan.states:
        keys = list(plan.states)
        await conn.execute(
            QUERIES["save_states"],
            {
                "trigger_ids": [_uuid(k[0]) for k in keys],
                "scopes": [k[1] for k in keys],
                "states": [
                    Jsonb(_state_json(plan.states[k].state), dumps=_as_encoded) for k in keys
                ],
                "block_numbers": [plan.states[k].position[0] for k in keys],
                "log_indexes": [plan.states[k].position[1] for k in keys],
            },
        )
    await queue_new_jobs(conn, chain_id, plan.firings)
    if plan.last_fired:
        await conn.execute(
            QUERIES["mark_fired"],
            {"trigger_ids": [_uuid(t) for t in plan.last_fired],
             "fired_at": list(plan.last_fired.values())},
        )  # fmt: skip
    return sum(len(firing.trigger.actions) for firing in plan.firings)


# A job as queued: trigger, action, event id (None: a silence from its trigger's start),
# priority, idempotency key, payload (JSON), max_attempts (None: the default), silence key.
_Job = tuple[uuid.UUID, uuid.UUID, int | None, int, str, Jsonb, int | None, str | None]
_UUIDS: dict[str, uuid.UUID] = {}


def _uuid(text: str) -> uuid.UUID:
    """The UUID of a trigger's or an action's id (kept: each is sent in every batch), which
    psycopg sends in binary, where the text of an array needs quoting and parsing."""
    value = _UUIDS.get(text)
    if value is None:
        if len(_UUIDS) > 100_000:
            _UUIDS.clear()
        value = _UUIDS[text] = uuid.UUID(text)
    return value


def _state_json(state: State) -> bytes:
    """A state row's JSON, by orjson; by the json module for what orjson refuses: integers
    beyond 64 bits (an average stored as 1e20 comes back from jsonb as an integer)."""
    try:
        return orjson.dumps(state)
    except TypeError:
        return json.dumps(state).encode()


def _as_encoded(document: bytes) -> bytes:
    return document  # a payload or a state is encoded once, by orjson


def _jobs(firings: list[Firing], chain_id: int, *, replay: bool = False) -> Iterator[_Job]:
    for firing in firings:
        payload = Jsonb(job_payload(firing, replay=replay), dumps=_as_encoded)
        trigger_id = _uuid(firing.trigger.id)
        silence = firing.silence.key(firing.trigger.id) if firing.silence else None
        for action in firing.trigger.actions:
            if silence is None:
                key = idempotency_key(firing.event, firing.trigger.id, action.id)
            else:
                key = _hashed_key(f"{chain_id}:silence:{silence}:", action.id)
            yield (trigger_id, _uuid(action.id), firing.event["id"], action.priority, key,
                   payload, action.max_attempts, silence)  # fmt: skip


async def queue_jobs(
    conn: psycopg.AsyncConnection, chain_id: int, firings: list[Firing], *, replay: bool = False
) -> int:
    """One job per action of each firing (in the caller's transaction), but none for an
    (event, action), or (silent period, action), that has one already; returns how many
    were queued. Replays use it, whose events may have their jobs already: `replay` marks
    their jobs (the column and the payload), whose keys are those live jobs would have."""
    jobs = list(_jobs(firings, chain_id, replay=replay))
    return await _insert_jobs(conn, chain_id, jobs, replay=replay)


async def _insert_jobs(
    conn: psycopg.AsyncConnection, chain_id: int, jobs: list[_Job], *, replay: bool
) -> int:
    if not jobs:
        return 0
    columns = list(zip(*jobs, strict=True))
    inserted = await conn.execute(
        QUERIES["insert_jobs"],
        {
            "chain_id": chain_id,
            "replay": replay,
            "trigger_ids": list(columns[0]),
            "action_ids": list(columns[1]),
            "event_ids": list(columns[2]),
            "priorities": list(columns[3]),
            "keys": list(columns[4]),
            "payloads": list(columns[5]),
            "max_attempts": list(columns[6]),
            "silence_keys": list(columns[7]),
        },
    )
    return max(inserted.rowcount, 0)


async def queue_new_jobs(
    conn: psycopg.AsyncConnection, chain_id: int, firings: list[Firing]
) -> int:
    """As queue_jobs, for live events, which have no job yet: by a binary COPY (two fifths
    cheaper than the INSERT of arrays), in a savepoint. The unique key on (event, action)
    still holds: should any job exist already, the COPY fails whole, its savepoint is rolled
    back, and queue_jobs' INSERT ... ON CONFLICT DO NOTHING queues the others."""
    # A silence's job is the period's: one that fired before a deep reorg's restore fires
    # again with the same key, so its jobs go by the INSERT.
    silent = [firing for firing in firings if firing.silence is not None]
    firings = [firing for firing in firings if firing.silence is None]
    queued = await queue_jobs(conn, chain_id, silent) if silent else 0
    if not firings:
        return queued
    try:
        async with conn.transaction():
            cursor = conn.cursor()
            # The payloads are sent as job_payload encoded them (no Jsonb wrapper each).
            set_json_dumps(_as_encoded, cursor)
            async with cursor.copy(QUERIES["copy_jobs"]) as copy:
                copy.set_types(["uuid", "uuid", "int8", "int8", "int4", "text", "jsonb", "int4"])
                # Each row is made (its payload, its key) as it is sent: PostgreSQL inserts
                # the rows already sent, 32 kB at a time, on its core while Python makes the
                # next ones on this one.
                for firing in firings:
                    trigger, event = firing.trigger, firing.event
                    payload = job_payload(firing)
                    trigger_id = _uuid(trigger.id)
                    name = _key_name(event, trigger.id)
                    for action in trigger.actions:
                        key = _hashed_key(name, action.id)
                        attempts = action.max_attempts or DEFAULT_MAX_ATTEMPTS
                        await copy.write_row((trigger_id, _uuid(action.id), event["id"],
                                              chain_id, action.priority, key, payload,
                                              attempts))  # fmt: skip
                        queued += 1
    except psycopg.errors.UniqueViolation:
        log.info("processor.jobs_exist", chain_id=chain_id, firings=len(firings))
        return queued + await queue_jobs(conn, chain_id, firings)
    return queued


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
        # Per chain held: what the last batches left (see ChainMemory); forgotten with every
        # reload of the triggers.
        self._memory: dict[int, ChainMemory] = {}
        self.replay_totals = BatchResult()
        self._replays_pending = False  # a replay has batches left: do not wait for a notice
        self._reload_now = False  # a batch met a deleted trigger: run again, not wait

    async def run(self, stop: asyncio.Event) -> None:
        async with (
            await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, options=ASYNC_COMMIT
            ) as conn,
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as reader,
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listener,
        ):
            await listener.execute("LISTEN new_event")
            await listener.execute("LISTEN trigger_changed")
            while not stop.is_set():
                await self.run_once(conn, reader)
                await self._wait(listener, stop)

    async def run_once(
        self, conn: psycopg.AsyncConnection, reader: psycopg.AsyncConnection | None = None
    ) -> int:
        """Process every ready event of every chain this processor holds; returns the count.
        With `reader` (a second connection), each chain's next batch is read and planned on
        it while `conn` writes the previous one (process_chain); without, batch by batch."""
        if self._index_stale or time.monotonic() - self._index_loaded_at > INDEX_REFRESH_SECONDS:
            self.index = await load_trigger_index(conn)
            self._index_loaded_at, self._index_stale = time.monotonic(), False
            self._memory.clear()
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
            memory = self._memory.setdefault(chain_id, ChainMemory())
            try:
                processed += await self._process(conn, reader, chain_id, memory)
            except psycopg.errors.ForeignKeyViolation as error:
                # A trigger or action deleted since the triggers were loaded (the notice is
                # read between runs, and a catch-up may take many batches): nothing of the
                # batch was written. The next run loads the triggers anew, at once.
                log.info("processor.triggers_changed", chain_id=chain_id,
                         error=str(error).splitlines()[0])  # fmt: skip
                self._index_stale = self._reload_now = True
                continue
            replays_pending = await self._replay(conn, chain_id) or replays_pending
        self._replays_pending = replays_pending
        return processed

    async def _process(
        self,
        conn: psycopg.AsyncConnection,
        reader: psycopg.AsyncConnection | None,
        chain_id: int,
        memory: ChainMemory,
    ) -> int:
        """The chain's ready events, batch by batch (or ahead, with `reader`); their count."""
        processed = 0
        while reader is None:
            batch = await process_batch(conn, chain_id, self.index, limit=self.batch_size,
                                        memory=memory)  # fmt: skip
            processed += batch.events
            self.totals.add(batch)
            if batch.events:
                log.debug("processor.batch", chain_id=chain_id, events=batch.events,
                          fired=batch.fired, jobs=batch.jobs)  # fmt: skip
            if batch.events < self.batch_size:
                return processed
        batch = await process_chain(conn, reader, chain_id, self.index, memory,
                                    limit=self.batch_size)  # fmt: skip
        self.totals.add(batch)
        if batch.events:
            log.debug("processor.batches", chain_id=chain_id, events=batch.events,
                      fired=batch.fired, jobs=batch.jobs)  # fmt: skip
        return processed + batch.events

    async def _replay(self, conn: psycopg.AsyncConnection, chain_id: int) -> bool:
        """After the chain's live events: take up its new replays (and reload the triggers
        before any later live batch, as their end requires), then run replays for a time
        slice; returns whether any has batches left."""
        # Imported here: replay.py builds on this module (its queries and job insert).
        from erc8004_backend.triggers.replay import run_replays, start_replays

        if await start_replays(conn, chain_id):
            self.index = await load_trigger_index(conn)
            self._index_loaded_at = time.monotonic()
            self._memory.clear()
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
        timeout = 0.0 if self._replays_pending or self._reload_now else self.poll_interval
        self._reload_now = False
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
