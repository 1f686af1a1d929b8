"""Replays: a trigger's history asked for on purpose, queued through the live path's jobs.

A replay (a row of `trigger_replays`, made by the API) covers the stored events of its
trigger's chain from a block or a time up to its end: the chain's processing cursor when the
processor took it up. The processor takes replays up between its live batches, while it holds
the chain, and then reloads its triggers: every event after the end is evaluated live with the
trigger as it is now, every event up to it by the replay, so none falls between them. A replay
given an end of its own (a block or a time) covers the events up to that one too, and only
them: the live processor fires none of the older events for it.

Each batch of a replay is one transaction: its events in chain order, evaluated by the same
plan_batch as live and backtests for the trigger alone, from the replay's own state and last
firing (empty at its start; the trigger's live `trigger_state` and `last_fired_at` are not
read or written) and without its `fires_from` (history is what was asked for); the jobs,
through the live insert, so an (event, action) that has a job already (delivered live, or by
an earlier replay) gets none; and the replay's progress. A crash leaves the whole batch or
none of it, and the next run resumes from the replay's cursor.

A reorg deeper than the confirmation depth moves the processing cursor back (the indexer's
store): a running open-ended replay then ends where the cursor now is (the live processor
fires the events after it from the replay's start), and one that had replayed past it, its
state holding orphaned events, starts again from its beginning.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from erc8004_backend.database.queries import load_queries
from erc8004_backend.triggers.conditions import ConditionError
from erc8004_backend.triggers.index import TriggerIndex, compile_trigger
from erc8004_backend.triggers.plan import Clock, batch_needs, plan_batch
from erc8004_backend.triggers.processor import BATCH_SIZE, BatchResult, queue_jobs
from erc8004_backend.triggers.processor import QUERIES as PROCESSOR_QUERIES
from erc8004_backend.triggers.summary_reads import summary_changes

QUERIES = load_queries("erc8004_backend.triggers", "replay.sql")
log = structlog.get_logger(__name__)

# Replays take turns with live events: after this long, the processor goes back to them.
TIME_SLICE_SECONDS = 1.0


async def start_replays(conn: psycopg.AsyncConnection, chain_id: int) -> int:
    """Take up the chain's pending replays of triggers that are on: fix each one's end at the
    processing cursor and let the live processor fire, from the replay's start, the events it
    has not passed yet (unless the replay has an end of its own). The caller holds the chain
    and must reload its triggers before its next live batch if any was taken up; returns how
    many."""
    cursor = await conn.execute(QUERIES["pending_replays"], {"chain_id": chain_id})
    started = 0
    for (replay_id,) in await cursor.fetchall():
        async with conn.transaction():
            taken = await conn.execute(
                QUERIES["start_replay"], {"chain_id": chain_id, "replay_id": replay_id}
            )
            row = await taken.fetchone()
            if row is None:
                continue
            trigger_id, from_block, start_time, open_ended = row
            # A replay with an end of its own asked for that range only: the live processor
            # fires no older events for it (those of the range it had not passed yet are left
            # to it, and fire if they are newer than the trigger's start).
            if open_ended:
                await _fire_from_replay_start(conn, chain_id, trigger_id, from_block, start_time)
        started += 1
        log.info("replay.started", replay_id=replay_id, trigger_id=str(trigger_id))
    return started


async def _fire_from_replay_start(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    trigger_id: Any,
    from_block: int | None,
    start_time: Any,
) -> None:
    if from_block is not None:
        found = await conn.execute(
            QUERIES["replay_start_time"], {"chain_id": chain_id, "from_block": from_block}
        )
        first = await found.fetchone()
        start_time = first[0] if first else None
    if start_time is not None:
        await conn.execute(
            QUERIES["fire_from_replay_start"], {"trigger_id": trigger_id, "start_time": start_time}
        )


async def run_replays(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    *,
    limit: int = BATCH_SIZE,
    time_slice: float = TIME_SLICE_SECONDS,
) -> tuple[BatchResult, bool]:
    """Batches of the chain's running replays, oldest first, until they are done or the time
    slice is spent; returns what they did and whether any has more to do."""
    total = BatchResult()
    deadline = time.monotonic() + time_slice
    cursor = await conn.execute(QUERIES["running_replays"], {"chain_id": chain_id})
    for (replay_id,) in await cursor.fetchall():
        while True:
            if time.monotonic() >= deadline:
                return total, True
            batch, more = await replay_batch(conn, chain_id, replay_id, limit=limit)
            total.events += batch.events
            total.fired += batch.fired
            total.jobs += batch.jobs
            if not more:
                break
    return total, False


async def replay_batch(
    conn: psycopg.AsyncConnection, chain_id: int, replay_id: int, *, limit: int = BATCH_SIZE
) -> tuple[BatchResult, bool]:
    """The replay's next batch and its outcome, in one transaction; returns it and whether the
    replay has more to do (False when it is done, or waits for its trigger to be on)."""
    result = BatchResult()
    async with conn.transaction():
        rows = conn.cursor(row_factory=dict_row)
        await rows.execute(QUERIES["lock_replay"], {"replay_id": replay_id})
        replay = await rows.fetchone()
        if replay is None:
            return result, False  # done, cancelled, or its trigger is off: it waits
        await rows.execute(
            PROCESSOR_QUERIES["triggers_with_rules"], {"trigger_id": replay["trigger_id"]}
        )
        row = await rows.fetchone()
        assert row is not None  # the replay's row goes with its trigger's
        try:
            # History on purpose: the trigger's own start does not apply.
            trigger = dataclasses.replace(compile_trigger(row), fires_from=None)
        except ConditionError as error:
            await conn.execute(QUERIES["cancel_replay_broken"],
                               {"replay_id": replay_id, "error": str(error)})  # fmt: skip
            log.error("replay.cancelled", replay_id=replay_id, error=str(error))
            return result, False
        await rows.execute(
            QUERIES["replay_events"],
            {"chain_id": chain_id, "registry": trigger.registry, "limit": limit,
             **{key: replay[key] for key in ("cursor_block", "cursor_log_index", "end_block",
                                             "end_log_index", "from_block", "from_time",
                                             "to_block", "to_time")}},
        )  # fmt: skip
        events = await rows.fetchall()
        index = TriggerIndex([trigger])
        state: dict[str, Any] = dict(replay["state"])
        last_fired = replay["last_fired_at"]
        summaries = await summary_changes(conn, chain_id, batch_needs(events, index).candidates)
        plan = plan_batch(
            events,
            index,
            {trigger.id: state},
            # A silence from the trigger's start counts from the replay's.
            Clock({trigger.id: last_fired} if last_fired else {}, origin=replay["from_time"]),
            summaries,
        )
        result.jobs = await queue_jobs(conn, chain_id, plan.firings, replay=True)
        state.update(plan.states_of(trigger.id))
        done = len(events) < limit
        last = events[-1] if events else None
        await conn.execute(
            QUERIES["advance_replay"],
            {"replay_id": replay_id, "done": done,
             "cursor_block": last["block_number"] if last else replay["cursor_block"],
             "cursor_log_index": last["log_index"] if last else replay["cursor_log_index"],
             "state": Jsonb(state), "last_fired_at": plan.last_fired.get(trigger.id, last_fired),
             "events": len(events), "firings": len(plan.firings), "jobs": result.jobs},
        )  # fmt: skip
    result.events = len(events)
    result.fired = len(plan.firings)
    if last:
        result.last_position = (last["block_number"], last["log_index"])
    if done:
        log.info("replay.done", replay_id=replay_id, trigger_id=trigger.id)
    return result, not done
