"""Silence conditions as plain functions over plain state: when a scope falls silent, and when
its silence is due to fire.

A silence trigger (one `silence` condition beside field conditions) keeps, per scope, the
start of the current silent period and when it is due, in its state row under SILENCE_KEY:
`{"since": t, "due": t + seconds, "event_id": id}` (times in Unix seconds of block time;
`event_id` the event that started it, None: the trigger's start), or `{}` once it has fired
or been ended by an event that `after` does not name. trigger_state's index on `due` lets the
processor read only the periods due by the chain's time. plan.py moves the periods in chain
order: each event that meets the field conditions starts one (without `after`, or when it is
the `after` event) or ends it (with `after`, any other), and the chain's time, at each event
and at the confirmed head, fires those due.

A period counts from the later of its start and the trigger's `fires_from` (a trigger
created, or enabled again, does not report a silence older than itself as if it had watched
it), so no silence fires as history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from erc8004_backend.triggers.conditions import (
    SCOPE_FIELDS,
    ParsedConditions,
    Silence,
)

State = dict[str, Any]
SILENCE_KEY = "silence"


@dataclass(frozen=True)
class SilentPeriod:
    """A silence that fired: a scope without a matching event from `since` until `due`."""

    scope: str
    since: datetime  # the later of its start and the trigger's fires_from
    due: datetime  # since + the condition's duration: when it fired, in block time
    started: float  # its start as stored (Unix seconds): part of its identity
    event_id: int | None  # the event that started it; None: the trigger's start

    def key(self, trigger_id: str) -> str:
        """The period's identity among the trigger's firings: one job per action."""
        started = format(Decimal(repr(self.started)).normalize(), "f")
        return f"{trigger_id}:{self.scope}:{started}:{self.event_id or ''}"

    def fields(self) -> dict[str, Any]:
        """What templates see of the scope: its agent, client, validator or request."""
        name, _, value = self.scope.partition(":")
        field = SCOPE_FIELDS.get(name)
        if field is None:
            return {}
        return {field: Decimal(value) if field == "agent_id" else value}


def silence_scope(silence: Silence, fields: Mapping[str, Any]) -> str:
    """Which scope an event belongs to, as stateful conditions name theirs ("agent:42")."""
    field = SCOPE_FIELDS.get(silence.scope)
    if field is None:
        return "trigger"
    value = fields.get(field)
    if isinstance(value, Decimal) and value == value.to_integral_value():
        value = int(value)  # a condition's `agent_id = 42.0` names the events' agent 42
    return f"{silence.scope}:{'' if value is None else str(value).lower()}"


def fixed_scope(conditions: ParsedConditions) -> str | None:
    """The one scope a silence trigger watches when its conditions name it (scope trigger;
    or `agent_id = 42` beside scope agent, ...): that scope is silent from the trigger's
    start even before any event. None: scopes are known from their events only."""
    silence = conditions.silence
    if silence is None:
        return None
    field = SCOPE_FIELDS.get(silence.scope)
    if field is None:
        return "trigger"
    for condition in conditions.fields:
        if condition.field == field and condition.operator == "=":
            return silence_scope(silence, {field: condition.value})
    return None


def armed(state: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The scope's current silent period, or None (never started, fired, or ended)."""
    period = state.get(SILENCE_KEY)
    return period if isinstance(period, Mapping) and "due" in period else None


def start_period(
    state: Mapping[str, Any],
    silence: Silence,
    started: float,
    event_id: int | None,
    fires_from: datetime | None,
) -> State:
    """The state with a silent period starting at `started` (by `event_id`)."""
    since = max(started, fires_from.timestamp()) if fires_from else started
    period = {"since": started, "due": since + silence.seconds, "event_id": event_id}
    return {**state, SILENCE_KEY: period}


def end_period(state: Mapping[str, Any]) -> State:
    """The state with no silent period (kept as `{}`: the scope has been seen)."""
    return {**state, SILENCE_KEY: {}}


def after_event(
    silence: Silence,
    state: Mapping[str, Any],
    event_type: str,
    when: datetime,
    event_id: int,
    fires_from: datetime | None,
) -> State:
    """The state after an event that met the trigger's field conditions: without `after`, a
    new period from it; with `after`, a new period from an `after` event, and the end of the
    period at any other."""
    if silence.after is not None and event_type != silence.after:
        return end_period(state)
    return start_period(state, silence, when.timestamp(), event_id, fires_from)


def due_period(
    silence: Silence,
    scope: str,
    state: Mapping[str, Any],
    now: datetime,
    fires_from: datetime | None,
) -> SilentPeriod | State | None:
    """At block time `now`: the silent period that has lasted its duration (it fires), the
    state with the period's new due time (the trigger's start moved after it was stored),
    or None (nothing due)."""
    period = armed(state)
    if period is None or period["due"] > now.timestamp():
        return None
    started = float(period["since"])
    since = max(started, fires_from.timestamp()) if fires_from else started
    if since + silence.seconds != period["due"]:
        moved = {**period, "due": since + silence.seconds}
        if moved["due"] > now.timestamp():
            return {**state, SILENCE_KEY: moved}
    event_id = period.get("event_id")
    return SilentPeriod(
        scope,
        datetime.fromtimestamp(since, UTC),
        datetime.fromtimestamp(since + silence.seconds, UTC),
        started,
        int(event_id) if event_id is not None else None,
    )
