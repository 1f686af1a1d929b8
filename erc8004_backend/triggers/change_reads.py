"""What the change conditions of a batch's triggers read: each wallet or URI change's value
just before its event, and the registration files of a URI change.

Called by summary_reads.summary_changes, so in the processor's, the backtest's and a
replay's transaction alike, before plan_batch, in one query per batch for the old values
and one for the files. The old values come from `events` (the agent's latest earlier event
that sets the attribute), not from `agents`: the read model holds the latest value, which
the indexer may already have moved past the event being evaluated, and keeps no earlier
one. So the same events give the same old values live, in a backtest and in a replay.

The registration files are not events: the indexer's fetcher stores them later, when it has
read them. A file not stored yet leaves the change's `registration` None (the template's
`registration_pending` is "true" and the diff fields empty); nothing waits for it, and a
condition asked to fire on the files (`on`) does not hold for that event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
from psycopg.rows import dict_row

from erc8004_backend.database.queries import load_queries
from erc8004_backend.triggers.changes import (
    IdentityChange,
    change_attribute,
    owner_change,
    registration_diff,
    wallet_of,
)
from erc8004_backend.triggers.conditions import CHANGE_CONDITION_TYPES, evaluate_field_condition
from erc8004_backend.triggers.fields import event_fields

QUERIES = load_queries("erc8004_backend.triggers", "change_reads.sql")

# (event id, trigger id) -> change condition position -> the change at that event
IdentityChanges = dict[tuple[int, str], dict[int, IdentityChange]]
_Key = tuple[int, int, int, str]  # agent id, block number, log index, attribute


async def identity_changes(
    conn: psycopg.AsyncConnection[Any], chain_id: int, candidates: Iterable[tuple[Any, Any]]
) -> IdentityChanges:
    """The change at every event of `candidates` that sets what one of its triggers' change
    conditions watches and that passes the trigger's field conditions."""
    wanted: list[tuple[Mapping[str, Any], str, int]] = []  # event, trigger id, position
    for event, triggers in candidates:
        attribute = change_attribute(event)
        if attribute is None:
            continue
        fields: dict[str, Any] | None = None
        for trigger in triggers:
            watching = [c for c in trigger.conditions.changes
                        if CHANGE_CONDITION_TYPES[c.condition_type] == attribute]  # fmt: skip
            if not watching:
                continue
            fields = event_fields(event) if fields is None else fields
            if not all(evaluate_field_condition(c, fields) for c in trigger.conditions.fields):
                continue
            wanted.extend((event, trigger.id, c.position) for c in watching)
    if not wanted:
        return {}
    before = await _values_before(conn, chain_id, [event for event, _, _ in wanted])
    files = await _files(conn, chain_id, [event for event, _, _ in wanted], before)
    changes: IdentityChanges = {}
    for event, trigger_id, position in wanted:
        changes.setdefault((event["id"], trigger_id), {})[position] = _change(event, before,
                                                                              files)  # fmt: skip
    return changes


def _key(event: Mapping[str, Any]) -> _Key:
    attribute = change_attribute(event)
    assert attribute is not None
    return (int(event["agent_id"]), event["block_number"], event["log_index"], attribute)


async def _values_before(
    conn: psycopg.AsyncConnection[Any], chain_id: int, events: list[Mapping[str, Any]]
) -> dict[_Key, str | None]:
    """The wallet or URI of each wallet or URI event's agent just before it."""
    keys = sorted({_key(e) for e in events if change_attribute(e) != "owner"})
    if not keys:
        return {}
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        QUERIES["values_before"],
        {"chain_id": chain_id, "agent_ids": [k[0] for k in keys],
         "block_numbers": [k[1] for k in keys], "log_indexes": [k[2] for k in keys],
         "attributes": [k[3] for k in keys]},
    )  # fmt: skip
    values: dict[_Key, str | None] = {}
    for row in await cursor.fetchall():
        key = (int(row["agent_id"]), row["block_number"], row["log_index"], row["attribute"])
        if not row["found"]:
            values[key] = None
        elif row["attribute"] == "agent_uri":
            values[key] = row["token_uri"]
        else:
            values[key] = wallet_of(row["metadata_value"])
    return values


async def _files(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    events: list[Mapping[str, Any]],
    before: Mapping[_Key, str | None],
) -> dict[tuple[int, str], dict[str, Any]]:
    """The stored registration file of both URIs of each URI change: (agent, URI) -> file."""
    pairs: set[tuple[int, str]] = set()
    for event in events:
        if change_attribute(event) != "agent_uri":
            continue
        old = before.get(_key(event))
        for uri in (old, event.get("token_uri")):
            if uri is not None:
                pairs.add((int(event["agent_id"]), uri))
    if not pairs:
        return {}
    ordered = sorted(pairs)
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(
        QUERIES["registration_files"],
        {"chain_id": chain_id, "agent_ids": [p[0] for p in ordered],
         "uris": [p[1] for p in ordered]},
    )  # fmt: skip
    return {(int(row["agent_id"]), row["uri"]): row["document"]
            for row in await cursor.fetchall() if isinstance(row["document"], dict)}  # fmt: skip


def _change(
    event: Mapping[str, Any],
    before: Mapping[_Key, str | None],
    files: Mapping[tuple[int, str], dict[str, Any]],
) -> IdentityChange:
    attribute = change_attribute(event)
    if attribute == "owner":
        return owner_change(event)
    old = before.get(_key(event))
    if attribute == "agent_wallet":
        return IdentityChange("agent_wallet", old, wallet_of(event.get("metadata_value")))
    new = event.get("token_uri")
    agent = int(event["agent_id"])
    old_file = files.get((agent, old)) if old is not None else None
    new_file = files.get((agent, new)) if new is not None else None
    diff = None
    if old_file is not None and new_file is not None:
        diff = registration_diff(old_file, new_file)
    return IdentityChange("agent_uri", old, new, diff)
