"""Stateful conditions as plain functions over plain state (JSON-ready dicts).

The processor loads a trigger's state rows, calls `evaluate_trigger` for each event in chain
order, and writes the new state in the same transaction as the jobs it creates. Nothing here
touches a database, so the state machines are tested exhaustively in memory. Summary
conditions (reputation_threshold, validation_threshold) keep no state: the caller reads the
agent's summary before and after the event from the read model (triggers/crossings.py) and
passes it in.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from erc8004_backend.triggers.changes import IdentityChange, change_fields, change_holds
from erc8004_backend.triggers.conditions import (
    EmaThreshold,
    FieldCondition,
    ParsedConditions,
    RateLimit,
    ReputationThreshold,
    StatefulCondition,
    evaluate_field_condition,
    evaluate_tree,
)
from erc8004_backend.triggers.crossings import SummaryChange, crossed
from erc8004_backend.triggers.operators import compare

State = dict[str, Any]


def update_ema(previous: float | None, value: float, alpha: float) -> float:
    """The next exponential moving average; the first value seeds it."""
    if previous is None:
        return value
    return alpha * value + (1 - alpha) * previous


# A rate_limit keeps the times of at most this many of its window's latest events, or its
# threshold and two more, whichever is more: its count (the template's `count`) is exact up
# to there, and beyond, where it only grows, it compares with the threshold as the exact one
# would. Its threshold is at most MAX_RATE_THRESHOLD (conditions.py).
RATE_TIMES_KEPT = 1_000


def update_window(
    times: list[float],
    now: float,
    window_seconds: int,
    keep: int | None = None,
    *,
    in_place: bool = False,
) -> list[float]:
    """The block times (Unix seconds) still inside the sliding window after adding `now`
    (in chain order: never before the last), the latest `keep` of them. An event exactly
    `window_seconds` older than `now` has left the window. `in_place`: `times` itself,
    changed (the caller owns it), rather than a new list: a copy per event of a window of
    thousands cost more than all else a batch does."""
    start = bisect.bisect_right(times, now - window_seconds)
    if keep is not None:
        start = max(start, len(times) + 1 - keep)
    if in_place:
        del times[:start]
        kept = times
    else:
        kept = times[start:]
    kept.append(now)
    return kept


def owned_copy(states: Mapping[str, State]) -> dict[str, State]:
    """Scopes' states that evaluate_trigger(owned=True) may change: every rate_limit window's
    list copied (changed in place), the rest shared (replaced, never changed)."""
    return {
        scope: {key: {**part, "times": list(part["times"])}
                if isinstance(part, dict) and isinstance(part.get("times"), list) else part
                for key, part in state.items()}
        for scope, state in states.items()
    }  # fmt: skip


# A stateful condition's scope: the name of its state rows and the field that tells them apart.
_SCOPE_SOURCES = {
    "agent": ("agent", "agent_id"),
    "client": ("client", "client_address"),
    "validator": ("validator", "validator_address"),
}


def scope_key(condition: StatefulCondition, fields: Mapping[str, Any]) -> str:
    """Which state row a stateful condition uses for this event (per agent by default)."""
    source = _SCOPE_SOURCES.get(condition.scope)
    if source is None:
        return "trigger"
    name, field_name = source
    value = fields.get(field_name)
    return f"{name}:{'' if value is None else str(value).lower()}"


@dataclass
class Evaluation:
    """What one event did to one trigger."""

    matched: bool  # the field conditions held (stateful ones were then updated)
    fired: bool
    states: dict[str, State] = field(default_factory=dict)  # scope -> new state, when changed
    # ema_score, count, reputation_before / _after / _count, validation_before / ...
    computed: dict[str, Any] = field(default_factory=dict)


def evaluate_trigger(
    conditions: ParsedConditions,
    fields: Mapping[str, Any],
    states: Mapping[str, State],
    *,
    block_time: datetime,
    summaries: Mapping[int, SummaryChange | IdentityChange] | None = None,
    owned: bool = False,
) -> Evaluation:
    """Evaluate every condition of a trigger for one event.

    The field conditions of the top-level `all` (`conditions.fields`; every field condition
    of a flat list) decide whether the trigger sees the event at all; only then do the
    stateful conditions take it in (the EMA moves, the window counts it), every one of them
    wherever it is in the tree: a group that is decided without it (an `any` with a child
    that holds) does not keep it from counting the event. Then the tree decides whether the
    trigger fires (a flat list: when all conditions hold); a rate_limit with
    reset_on_trigger then starts its window again.
    `states` maps a scope to its stored state; each condition keeps its own part of it,
    under its position. `summaries` maps a summary condition's position to the agent's
    summary before and after this event; a summary condition without one (an event that
    cannot move its summary) does not hold, nor does an ema_threshold for an event without
    its field (nothing to average). A change condition's entry in `summaries` is the
    identity change at this event (none: the event changes nothing it watches, and it does
    not hold). `owned`: the caller owns the lists in `states` (plan_batch copies a trigger's
    states when a batch first touches them), and a rate_limit's window changes in place.
    """
    for field_condition in conditions.fields:
        if not evaluate_field_condition(field_condition, fields):
            return Evaluation(matched=False, fired=False)
    if conditions.tree is None and not (
        conditions.stateful or conditions.summaries or conditions.changes
    ):
        return Evaluation(matched=True, fired=True)  # the field conditions are all there is
    new_states: dict[str, State] = {}
    computed: dict[str, Any] = {}
    # Whether each stateful and summary condition holds, by position: all of them are
    # evaluated (and their state moved) before the tree is.
    held: dict[int, bool] = {}
    for summary in conditions.summaries:
        change = (summaries or {}).get(summary.position)
        if not isinstance(change, SummaryChange):
            held[summary.position] = False
            continue
        name = "reputation" if isinstance(summary, ReputationThreshold) else "validation"
        computed[f"{name}_before"] = change.before
        computed[f"{name}_after"] = change.after
        computed[f"{name}_count"] = change.count
        held[summary.position] = crossed(change, summary.operator, summary.value)
    for watch in conditions.changes:
        identity = (summaries or {}).get(watch.position)
        if not isinstance(identity, IdentityChange):
            held[watch.position] = False
            continue
        computed.update(change_fields(identity))
        held[watch.position] = change_holds(watch, identity)
    resets: list[tuple[str, RateLimit]] = []
    for condition in conditions.stateful:
        scope = scope_key(condition, fields)
        state = new_states.setdefault(scope, dict(states.get(scope, {})))
        key = str(condition.position)
        if isinstance(condition, EmaThreshold):
            value = fields.get(condition.field)
            previous = state.get(key, {}).get("ema")
            if value is None:
                # Nothing to average (a revocation, a response): the average stays as it is
                # and the condition does not hold for this event; only a new score can.
                held[condition.position] = False
                continue
            ema = update_ema(previous, float(value), condition.alpha)
            state[key] = {"ema": ema, "n": state.get(key, {}).get("n", 0) + 1}
            computed["ema_score"] = round(ema, 6)
            held[condition.position] = compare(
                Decimal(repr(ema)), condition.operator, condition.value
            )
        else:
            keep = max(RATE_TIMES_KEPT, int(condition.value) + 2)
            times = update_window(state.get(key, {}).get("times", []), block_time.timestamp(),
                                  condition.window_seconds, keep, in_place=owned)  # fmt: skip
            state[key] = {"times": times}
            computed["count"] = len(times)
            held[condition.position] = compare(
                Decimal(len(times)), condition.operator, condition.value
            )
            if condition.reset_on_trigger:
                resets.append((scope, condition))
    if conditions.tree is None:
        holds = all(held.values())  # the field conditions held above
    else:
        holds = evaluate_tree(conditions.tree, lambda condition: (
            evaluate_field_condition(condition, fields) if isinstance(condition, FieldCondition)
            else held[condition.position]
        ))  # fmt: skip
    if holds:
        for scope, condition in resets:
            new_states[scope][str(condition.position)] = {"times": []}
    return Evaluation(matched=True, fired=holds, states=new_states, computed=computed)
