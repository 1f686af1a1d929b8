"""What a trigger would have done over stored events, without writing anything."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row, tuple_row

from erc8004_backend.actions.preview import ActionPreview, ActionPreviews
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.index import TriggerIndex, compile_trigger
from erc8004_backend.triggers.plan import ChainTime, Clock, batch_needs, plan_batch
from erc8004_backend.triggers.processor import QUERIES, job_payload
from erc8004_backend.triggers.replay import QUERIES as REPLAY_QUERIES
from erc8004_backend.triggers.stateful import State
from erc8004_backend.triggers.summary_reads import summary_changes

MAX_EVENTS = 1_000_000
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 1, 1, tzinfo=UTC)


class TriggerNotFoundError(Erc8004Error):
    """No trigger has that id."""


@dataclass
class Firing:
    event_id: int | None  # a silence's: the event that started it (None: the trigger's start)
    block_number: int
    log_index: int
    block_time: datetime
    event_type: str
    agent_id: Any
    computed: dict[str, Any]
    score: Any = None  # the event's score (feedback), shown beside the firing
    # What its actions would have sent: Telegram messages, webhook bodies.
    messages: list[ActionPreview] = field(default_factory=list)
    # As a replay: the jobs it would queue (its actions that have none for the event yet).
    new_jobs: int | None = None


@dataclass
class BacktestResult:
    trigger_id: str
    trigger_name: str
    events_checked: int = 0
    matched: int = 0
    blocks: tuple[int, int] | None = None  # first and last block of the events checked
    fired: list[Firing] = field(default_factory=list)
    states: dict[str, State] = field(default_factory=dict)  # scope -> state reached
    # As a replay: where one requested now would end (the chain's processing cursor).
    replay_end: tuple[int, int] | None = None


async def _range_end(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    events: list[dict[str, Any]],
    to_block: int | None,
    to_time: datetime | None,
) -> ChainTime | None:
    """How far the range's time reaches, for silences: the chain's confirmed head, or
    `to_time` before it; None (the last event's time) when `to_block` ends the range
    before the head."""
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(QUERIES["confirmed_head"], {"chain_id": chain_id})
    row = await cursor.fetchone()
    head = ChainTime(chain_id, row[0], row[1]) if row else None
    if to_block is not None and (head is None or to_block < head.block_number):
        return None
    if to_time is not None and (head is None or to_time < head.block_time):
        last = events[-1]["block_number"] if events else 0
        return ChainTime(chain_id, last, to_time)
    return head


async def backtest(
    conn: psycopg.AsyncConnection[Any],
    trigger_id: str,
    *,
    from_block: int | None = None,
    to_block: int | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
    limit: int = MAX_EVENTS,
    explorers: Mapping[int, str] | None = None,
    replay: bool = False,
) -> BacktestResult:
    """Evaluate the trigger over its chain's stored events in the range, from empty state,
    honouring its cooldown, with the processor's plan_batch, and render what each firing's
    actions would send (links to the block explorer of its chain in `explorers`, chain id ->
    URL); nothing is written (the transaction is read-only) or sent.

    With `replay`, the events a replay from `from_block` or `from_time` (to `to_block` or
    `to_time`, if given) requested now would cover (up to the chain's processing cursor at
    most), and for each firing the jobs it would queue: one per action that has no job for
    the event yet."""
    try:
        trigger_id = str(uuid.UUID(trigger_id))
    except ValueError:
        raise TriggerNotFoundError(f"{trigger_id!r} is not a trigger id (a UUID)") from None
    if replay and to_block is not None and to_time is not None:
        raise Erc8004Error("a replay ends at a block or a time: give at most one of them")
    if replay and (from_block is None) == (from_time is None):
        raise Erc8004Error("a replay starts from a block or a time: give one of them")
    if from_block is not None and to_block is not None and from_block > to_block:
        raise Erc8004Error(f"from_block {from_block} is after to_block {to_block}")
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ ONLY")
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(QUERIES["triggers_with_rules"], {"trigger_id": trigger_id})
        row = await cursor.fetchone()
        if row is None:
            raise TriggerNotFoundError(f"no trigger {trigger_id}")
        # What would have fired over history: the trigger's own start does not apply.
        trigger = dataclasses.replace(compile_trigger(row), fires_from=None)
        replay_end = None
        if replay:
            await cursor.execute(
                REPLAY_QUERIES["processing_cursor"], {"chain_id": trigger.chain_id}
            )
            end = await cursor.fetchone()
            assert end is not None
            replay_end = (end["block_number"], end["log_index"])
            await cursor.execute(
                REPLAY_QUERIES["replay_events"],
                {"chain_id": trigger.chain_id, "registry": trigger.registry,
                 "cursor_block": -1, "cursor_log_index": -1, "end_block": replay_end[0],
                 "end_log_index": replay_end[1], "from_block": from_block,
                 "from_time": from_time, "to_block": to_block, "to_time": to_time,
                 "limit": limit},
            )  # fmt: skip
        else:
            await cursor.execute(
                QUERIES["backtest_events"],
                {"chain_id": trigger.chain_id, "registry": trigger.registry,
                 "from_block": from_block if from_block is not None else 0,
                 "to_block": to_block if to_block is not None else 2**63 - 1,
                 "from_time": from_time or _EARLIEST, "to_time": to_time or _LATEST,
                 "limit": limit},
            )  # fmt: skip
        events = await cursor.fetchall()
        await cursor.execute(QUERIES["backtest_actions"], {"trigger_id": trigger_id})
        previews = ActionPreviews(await cursor.fetchall())
        index = TriggerIndex([trigger])
        # The summaries as of each event, as the processor reads them (same snapshot).
        summaries = await summary_changes(
            conn, trigger.chain_id, batch_needs(events, index).candidates
        )
        # The processor's own evaluation, over the whole range at once, from empty state and
        # no earlier firing; silences as far as the range's time reaches.
        head = await _range_end(conn, trigger.chain_id, events, to_block, to_time)
        clock = Clock(origin=from_time or (events[0]["block_time"] if events else None))
        plan = plan_batch(events, index, {}, clock, summaries, head=head)
        existing: dict[int, int] = {}
        if replay and plan.firings:
            await cursor.execute(
                REPLAY_QUERIES["existing_jobs"],
                {"trigger_id": trigger_id, "event_ids": [f.event["id"] for f in plan.firings]},
            )
            existing = {row["event_id"]: row["jobs"] for row in await cursor.fetchall()}
    result = BacktestResult(trigger.id, trigger.name, events_checked=len(events),
                            matched=plan.matched, states=plan.states_of(trigger.id),
                            replay_end=replay_end)  # fmt: skip
    if events:
        result.blocks = (events[0]["block_number"], events[-1]["block_number"])
    explorer_url = (explorers or {}).get(trigger.chain_id)
    for firing in plan.firings:
        event = firing.event
        # The payload a job would carry (a replay's marked), as the worker reads it.
        payload = orjson.loads(job_payload(firing, replay=replay))
        messages = previews.render(payload, explorer_url)
        result.fired.append(Firing(event["id"], event["block_number"], event["log_index"],
                                   event["block_time"], event["event_type"],
                                   event.get("agent_id"), dict(firing.computed),
                                   event.get("score"), messages,
                                   len(trigger.actions) - existing.get(event["id"], 0)
                                   if replay else None))  # fmt: skip
    return result
