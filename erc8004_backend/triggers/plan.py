"""One evaluation loop: what a batch of events does to the triggers, as plain data.

`plan_batch` takes events in chain order, the triggers (their candidate index), the stored
state of their stateful conditions, the clock (when each trigger last delivered a firing) and
the summaries that summary conditions compare, and returns a Plan: the firings to deliver,
the state each (trigger, scope) is left in, and the triggers' new last firings. It reads
nothing and writes nothing, so the processor (processor.py, which applies the plan in the
batch's transaction) and the backtest (backtest.py, which shows it) cannot disagree, and the
loop is tested in memory.

`batch_needs` says what plan_batch will look up for the same events and triggers (state
rows, last firings, the events whose summaries a summary condition compares), so that the
caller reads exactly those first: the inputs are complete by construction, not by a second
copy of the loop's logic.

The rules kept here, once:
- chain order: events are taken in the order given (block, log index), each event's
  candidate triggers in the index's order; a stateful condition sees the state the previous
  events left.
- history: an event older than the trigger's `fires_from` moves its state as any other (a
  rate_limit with reset_on_trigger starts again when it fills), but is not delivered and
  starts no cooldown; a trigger without state does not evaluate it at all.
- cooldown: a firing less than `cooldown_seconds` of block time after the trigger's last
  delivered firing is not delivered (its state moved all the same).
- summary conditions compare the agent's summary before and after each event, given as
  `summaries` (read from the model as of each event by summary_reads.py); change conditions
  the agent's owner, wallet or URI before and after it, given there too (change_reads.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from erc8004_backend.triggers.changes import IdentityChange
from erc8004_backend.triggers.crossings import Position, SummaryChange
from erc8004_backend.triggers.fields import event_fields
from erc8004_backend.triggers.index import CompiledTrigger, TriggerIndex, delivers
from erc8004_backend.triggers.stateful import State, evaluate_trigger, scope_key

Event = Mapping[str, Any]  # a row of `events`, by column name
# trigger id -> scope -> the stored state of that scope ({} or absent: none yet)
States = Mapping[str, Mapping[str, State]]
# (event id, trigger id) -> summary condition position -> its summary before and after (a
# change condition's position: the owner, wallet or URI before and after)
Summaries = Mapping[tuple[int, str], Mapping[int, SummaryChange | IdentityChange]]


@dataclass(frozen=True)
class Clock:
    """The triggers' time before the batch, in block time (never the wall clock: a replay of
    the same events must decide as the first run did): when each trigger last delivered a
    firing, from which its cooldown runs. Only triggers with a cooldown need an entry."""

    last_fired: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class Firing:
    """A trigger that fired for an event and is delivered: one job per action."""

    trigger: CompiledTrigger
    event: Event
    fields: Mapping[str, Any]  # the event's fields as the conditions saw them (event_fields)
    computed: Mapping[str, Any]  # ema_score, count, reputation_before, ...

    @property
    def position(self) -> Position:
        return (self.event["block_number"], self.event["log_index"])


@dataclass(frozen=True)
class StateChange:
    """The state a (trigger, scope) is left in, and the event that left it so."""

    state: State
    position: Position


@dataclass
class Plan:
    """What a batch does: its firings in chain order, the last state of every (trigger,
    scope) it moved, and the block time of each trigger's last delivered firing in it."""

    firings: list[Firing] = field(default_factory=list)
    states: dict[tuple[str, str], StateChange] = field(default_factory=dict)
    last_fired: dict[str, datetime] = field(default_factory=dict)
    matched: int = 0  # (event, trigger) pairs whose field conditions held

    def states_of(self, trigger_id: str) -> dict[str, State]:
        """One trigger's states after the batch, by scope (those the batch moved)."""
        return {scope: change.state for (tid, scope), change in self.states.items()
                if tid == trigger_id}  # fmt: skip


@dataclass
class Needs:
    """What plan_batch will look up for a batch, for the caller to read first."""

    candidates: list[tuple[Event, list[CompiledTrigger]]] = field(default_factory=list)
    states: set[tuple[str, str]] = field(default_factory=set)  # (trigger id, scope)
    last_fired: set[str] = field(default_factory=set)  # trigger ids (with a cooldown)


def batch_needs(events: Iterable[Event], triggers: TriggerIndex) -> Needs:
    """The events that have candidate triggers (with them: what summary_reads needs), the
    state rows their stateful conditions use and the triggers whose cooldown needs their last
    firing. Scopes are read from the row itself: its agent, client and validator columns are
    the fields scope_key reads."""
    needs = Needs()
    for event in events:
        candidates = _candidates(triggers, event)
        if not candidates:
            continue
        needs.candidates.append((event, candidates))
        for trigger in candidates:
            for condition in trigger.conditions.stateful:
                needs.states.add((trigger.id, scope_key(condition, event)))
            if trigger.cooldown_seconds:
                needs.last_fired.add(trigger.id)
    return needs


def plan_batch(
    events: Iterable[Event],
    triggers: TriggerIndex,
    states: States,
    clock: Clock,
    summaries: Summaries | None = None,
) -> Plan:
    """Evaluate the triggers over the events, in the order given (chain order), from the
    stored states and the clock; returns the plan and changes none of its inputs. `states`
    and `clock` must hold what batch_needs names (a missing one is taken as none yet);
    `summaries` the changes summary_reads.summary_changes computed for the same events."""
    plan = Plan()
    summaries = summaries or {}
    # States as the batch moves them: each trigger's scopes, copied from `states` when the
    # batch first touches the trigger (evaluate_trigger replaces a scope's state, never
    # changes it in place).
    working: dict[str, dict[str, State]] = {}
    last_fired = dict(clock.last_fired)
    for event in events:
        candidates = _candidates(triggers, event)
        if not candidates:
            continue
        fields = event_fields(event)
        when: datetime = event["block_time"]
        position = (event["block_number"], event["log_index"])
        for trigger in candidates:
            trigger_states = working.get(trigger.id)
            if trigger_states is None:
                trigger_states = working[trigger.id] = dict(states.get(trigger.id, {}))
            outcome = evaluate_trigger(
                trigger.conditions,
                fields,
                trigger_states,
                block_time=when,
                summaries=summaries.get((event["id"], trigger.id)),
            )
            plan.matched += outcome.matched
            for scope, state in outcome.states.items():
                trigger_states[scope] = state
                plan.states[(trigger.id, scope)] = StateChange(state, position)
            if not outcome.fired or not delivers(trigger, when, last_fired.get(trigger.id)):
                continue
            last_fired[trigger.id] = plan.last_fired[trigger.id] = when
            plan.firings.append(Firing(trigger, event, fields, outcome.computed))
    return plan


def _candidates(triggers: TriggerIndex, event: Event) -> list[CompiledTrigger]:
    """The triggers the index names for the event, less those it is history to that keep no
    state: it can fire none of them and moves nothing of theirs (a first backfill is mostly
    such events, so they cost nothing: no fields, no summaries read)."""
    found = triggers.candidates(
        event["chain_id"], event["registry"], event["event_type"], event["agent_id"]
    )
    when = event["block_time"]
    return [trigger for trigger in found
            if trigger.fires_from is None or when >= trigger.fires_from
            or trigger.conditions.stateful]  # fmt: skip
