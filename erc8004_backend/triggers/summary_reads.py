"""What the summary conditions of a batch's triggers read from the read model.

The processor (for a batch of events) and the backtest (for its range) call `summary_changes`
with each event and its candidate triggers, in the same transaction as the events: it reads
the records of the agents those events name, up to the last of them, and computes with
triggers/crossings.py each summary condition's value just before and just after each event
that can move it. The values are the model's as of each event, whatever the model holds past
it, so the same events give the same values live and in a backtest. It also returns the change
conditions' changes (change_reads.py: an owner, wallet or URI before and after an identity
event), under their positions, so that every caller reads both before plan_batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from erc8004_backend.agents.lenses import ClientHistory, Lens
from erc8004_backend.database.queries import load_queries
from erc8004_backend.triggers.change_reads import identity_changes
from erc8004_backend.triggers.changes import IdentityChange
from erc8004_backend.triggers.conditions import (
    ReputationThreshold,
    SummaryCondition,
    evaluate_field_condition,
)
from erc8004_backend.triggers.crossings import (
    REPUTATION_EVENTS,
    VALIDATION_EVENTS,
    FeedbackRecord,
    LensPoint,
    Position,
    ResponseRecord,
    SummaryChange,
    lens_changes,
    reputation_changes,
    validation_changes,
)
from erc8004_backend.triggers.fields import event_fields
from erc8004_backend.triggers.index import CompiledTrigger

QUERIES = load_queries("erc8004_backend.triggers", "summary_reads.sql")

# An event (a row of `events`) and the triggers it may fire.
EventCandidates = tuple[Mapping[str, Any], Sequence[CompiledTrigger]]
# (event id, trigger id) -> summary (or change) condition position -> its change at that event
SummaryChanges = dict[tuple[int, str], dict[int, SummaryChange | IdentityChange]]


@dataclass
class _Wanted:
    """One summary condition of one trigger, for one agent: the events it is needed at."""

    condition: SummaryCondition
    agent_id: int
    events: list[tuple[int, str, Position, datetime]]  # event id, trigger id, position, time


def moves(condition: SummaryCondition, event: Mapping[str, Any]) -> bool:
    """Whether the event can move the condition's summary: an agent's feedback or its
    revocation for a reputation summary, a validation response for a validation summary."""
    if event.get("agent_id") is None:
        return False
    if isinstance(condition, ReputationThreshold):
        return event["registry"] == "reputation" and event["event_type"] in REPUTATION_EVENTS
    return event["registry"] == "validation" and event["event_type"] in VALIDATION_EVENTS


async def summary_changes(
    conn: psycopg.AsyncConnection[Any], chain_id: int, candidates: Iterable[EventCandidates]
) -> SummaryChanges:
    """Every summary condition's change (see _summary_changes) and every change condition's
    (change_reads.identity_changes), by (event id, trigger id) and condition position."""
    candidates = list(candidates)
    changes = await _summary_changes(conn, chain_id, candidates)
    for key, by_position in (await identity_changes(conn, chain_id, candidates)).items():
        changes.setdefault(key, {}).update(by_position)
    return changes


async def _summary_changes(
    conn: psycopg.AsyncConnection[Any], chain_id: int, candidates: Iterable[EventCandidates]
) -> SummaryChanges:
    """Every summary condition's change at every event of `candidates` that can move it and
    that passes its trigger's field conditions (the others cannot fire the trigger, and the
    values of an event never depend on the events read before it)."""
    wanted: dict[tuple[str, int, int], _Wanted] = {}
    last: Position | None = None
    for event, triggers in candidates:
        fields: dict[str, Any] | None = None
        for trigger in triggers:
            if not trigger.conditions.summaries:
                continue
            fields = event_fields(event) if fields is None else fields
            if not all(evaluate_field_condition(c, fields) for c in trigger.conditions.fields):
                continue
            for condition in trigger.conditions.summaries:
                if not moves(condition, event):
                    continue
                agent = int(event["agent_id"])
                position = (event["block_number"], event["log_index"])
                key = (trigger.id, condition.position, agent)
                entry = wanted.setdefault(key, _Wanted(condition, agent, []))
                entry.events.append((event["id"], trigger.id, position, event["block_time"]))
                last = position if last is None or position > last else last
    if last is None:
        return {}
    reputation = [w for w in wanted.values() if isinstance(w.condition, ReputationThreshold)]
    validation = [w for w in wanted.values() if not isinstance(w.condition, ReputationThreshold)]
    feedback = await _feedback(conn, chain_id, reputation, last) if reputation else {}
    responses = await _responses(conn, chain_id, validation, last) if validation else {}
    histories: dict[tuple[int, Position], tuple[dict[str, ClientHistory], ...]] = {}
    changes: SummaryChanges = {}
    for item in wanted.values():
        condition = item.condition
        positions = [position for _, _, position, _ in item.events]
        if isinstance(condition, ReputationThreshold) and condition.lens is not None:
            records = feedback.get(item.agent_id, [])
            points = [
                await _lens_point(conn, chain_id, condition.lens, item.agent_id, records,
                                  position, time, histories)
                for _, _, position, time in item.events
            ]  # fmt: skip
            found = lens_changes(condition.lens, records, points)
        elif isinstance(condition, ReputationThreshold):
            found = reputation_changes(feedback.get(item.agent_id, []), condition.clients,
                                       positions, condition.tag1, condition.tag2)  # fmt: skip
        else:
            found = validation_changes(responses.get(item.agent_id, []), condition.validators,
                                       positions, condition.tag)  # fmt: skip
        for event_id, trigger_id, position, _ in item.events:
            changes.setdefault((event_id, trigger_id), {})[condition.position] = found[position]
    return changes


async def _feedback(
    conn: psycopg.AsyncConnection[Any], chain_id: int, wanted: list[_Wanted], last: Position
) -> dict[int, list[FeedbackRecord]]:
    """The feedback records of the agents, by agent; only of the listed clients unless a
    lens reads them all."""
    clients: set[str] | None = set()
    for item in wanted:
        condition = item.condition
        assert isinstance(condition, ReputationThreshold)
        if condition.lens is not None:
            clients = None
            break
        assert clients is not None
        clients.update(condition.clients)
    rows = await _rows(
        conn,
        "feedback_through",
        {"chain_id": chain_id, "agent_ids": sorted({item.agent_id for item in wanted}),
         "clients": None if clients is None else sorted(clients),
         "block_number": last[0], "log_index": last[1]},
    )  # fmt: skip
    records: defaultdict[int, list[FeedbackRecord]] = defaultdict(list)
    for row in rows:
        revoked = row["revoked_block"]
        records[int(row["agent_id"])].append(
            FeedbackRecord(
                client=row["client_address"].lower(),
                index=int(row["feedback_index"]),
                value=int(row["value"]),
                value_decimals=int(row["value_decimals"]),
                tag1=row["tag1"],
                tag2=row["tag2"],
                position=(row["block_number"], row["log_index"]),
                block_time=row["block_time"],
                revoked_at=None if revoked is None else (revoked, row["revoked_log_index"]),
            )
        )
    return records


async def _responses(
    conn: psycopg.AsyncConnection[Any], chain_id: int, wanted: list[_Wanted], last: Position
) -> dict[int, list[ResponseRecord]]:
    rows = await _rows(
        conn,
        "responses_through",
        {"chain_id": chain_id, "agent_ids": sorted({item.agent_id for item in wanted}),
         "block_number": last[0], "log_index": last[1]},
    )  # fmt: skip
    records: defaultdict[int, list[ResponseRecord]] = defaultdict(list)
    for row in rows:
        records[int(row["agent_id"])].append(
            ResponseRecord(
                request_hash=row["request_hash"],
                validator=row["validator_address"].lower(),
                position=(row["block_number"], row["log_index"]),
                response=int(row["response"]),
                tag=row["tag"],
            )
        )
    return records


async def _rows(
    conn: psycopg.AsyncConnection[Any], query: str, values: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A query's rows by column name, whatever rows the connection makes by default (the
    API's pool makes dicts, the processor's connection tuples)."""
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(QUERIES[query], values)
    return await cursor.fetchall()


async def _lens_point(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    lens: Lens,
    agent_id: int,
    records: Sequence[FeedbackRecord],
    position: Position,
    block_time: datetime,
    histories: dict[tuple[int, Position], tuple[dict[str, ClientHistory], ...]],
) -> LensPoint:
    """A lens's inputs at one event; the clients' histories are read only when the lens
    needs them, once per (agent, event)."""
    if not lens.needs_client_history:
        return LensPoint(position, block_time, {}, {})
    if (agent_id, position) not in histories:
        clients = sorted({record.client for record in records if record.position <= position})
        before: dict[str, ClientHistory] = {}
        through: dict[str, ClientHistory] = {}
        if clients:
            rows = await _rows(
                conn,
                "client_histories",
                {"chain_id": chain_id, "clients": clients, "block_number": position[0],
                 "log_index": position[1]},
            )  # fmt: skip
            for row in rows:
                client = row["client_address"].lower()
                before[client] = ClientHistory(row["feedback_before"], row["agents_before"])
                through[client] = ClientHistory(row["feedback_through"], row["agents_through"])
        histories[(agent_id, position)] = (before, through)
    before, through = histories[(agent_id, position)]
    return LensPoint(position, block_time, before, through)
