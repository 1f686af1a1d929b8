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
- silence: a silence trigger's matching events start or end its scopes' silent periods
  (triggers/silence.py); the chain's time, at each event (before it is evaluated) and at
  the head block the caller names, fires the periods due by then, each once.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from erc8004_backend.triggers.changes import IdentityChange
from erc8004_backend.triggers.conditions import evaluate_field_condition
from erc8004_backend.triggers.crossings import Position, SummaryChange
from erc8004_backend.triggers.fields import event_fields, fields_to_match
from erc8004_backend.triggers.index import CompiledTrigger, TriggerIndex, delivers
from erc8004_backend.triggers.silence import (
    SILENCE_KEY,
    SilentPeriod,
    after_event,
    armed,
    due_period,
    end_period,
    fixed_scope,
    silence_scope,
    start_period,
)
from erc8004_backend.triggers.stateful import State, evaluate_trigger, owned_copy, scope_key

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
    # Where the history evaluated starts, for triggers without fires_from (backtests,
    # replays): a silence "since the trigger started" counts from here. None: the first
    # event's time.
    origin: datetime | None = None


@dataclass(frozen=True)
class ChainTime:
    """How far a chain's time has come: a block (the confirmed head) and its time."""

    chain_id: int
    block_number: int
    block_time: datetime


SILENCE_EVENT_TYPE = "silence"  # a silence firing's event_type, as templates show it
HEAD_LOG_INDEX = 2**31 - 1  # a head block's place after all its events


@dataclass(frozen=True)
class Firing:
    """A trigger that fired for an event, or for a silent period, and is delivered: one job
    per action."""

    trigger: CompiledTrigger
    # The event, by column name; a silence's: the block whose time fired it (block_number,
    # log_index: after its events or HEAD_LOG_INDEX), block_time its due time, `id` the
    # event that started the period (None: the trigger's start).
    event: Event
    fields: Mapping[str, Any]  # the event's fields as the conditions saw them (event_fields)
    computed: Mapping[str, Any]  # ema_score, count, reputation_before, silent_since, ...
    silence: SilentPeriod | None = None

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


def batch_needs(
    events: Iterable[Event], triggers: TriggerIndex, *, chain_id: int | None = None
) -> Needs:
    """The events that have candidate triggers (with them: what summary_reads needs), the
    state rows their stateful conditions use and the triggers whose cooldown needs their last
    firing. Scopes are read from the row itself: its agent, client and validator columns are
    the fields scope_key reads. With `chain_id`, also the fixed scope of each of the chain's
    silence triggers (silence.fixed_scope) and their last firings; the periods due are the
    caller's to add (they are found by time, not by event)."""
    needs = Needs()
    if chain_id is not None:
        for trigger in triggers.silences(chain_id):
            scope = fixed_scope(trigger.conditions)
            if scope is not None:
                needs.states.add((trigger.id, scope))
            if trigger.cooldown_seconds:
                needs.last_fired.add(trigger.id)
    for event in events:
        candidates = _candidates(triggers, event)
        if not candidates:
            continue
        needs.candidates.append((event, candidates))
        for trigger in candidates:
            for condition in trigger.conditions.stateful:
                needs.states.add((trigger.id, scope_key(condition, event)))
            if trigger.conditions.silence is not None:
                needs.states.add((trigger.id, silence_scope(trigger.conditions.silence, event)))
            if trigger.cooldown_seconds:
                needs.last_fired.add(trigger.id)
    return needs


def plan_batch(
    events: Iterable[Event],
    triggers: TriggerIndex,
    states: States,
    clock: Clock,
    summaries: Summaries | None = None,
    *,
    head: ChainTime | None = None,
) -> Plan:
    """Evaluate the triggers over the events, in the order given (chain order), from the
    stored states and the clock; returns the plan and changes none of its inputs. `states`
    and `clock` must hold what batch_needs names (a missing one is taken as none yet), and
    for silence triggers also every period due by the batch's end; `summaries` the changes
    summary_reads.summary_changes computed for the same events. `head`: the chain's time
    has reached this block (every event up to it is in `events` or was planned before):
    the silences due by its time fire after the events'."""
    batch = _Batch(states, clock)
    summaries = summaries or {}
    silences: _Silences | None = None
    ticking = False  # whether the chain has silence triggers, which its time fires
    for event in events:
        if silences is None:
            silences = _Silences(batch, triggers, event["chain_id"])
            ticking = bool(silences.triggers)
        when: datetime = event["block_time"]
        position = (event["block_number"], event["log_index"])
        if ticking:
            silences.tick(when, position)  # the chain's time has come to this event
        candidates = _candidates(triggers, event)
        if not candidates:
            continue
        fields = fields_to_match(event)
        shown: Mapping[str, Any] | None = None  # the event's fields in its firings
        for trigger in candidates:
            conditions = trigger.conditions
            if conditions.silence is not None:
                silences.take(trigger, event, fields, position)
                continue
            outcome = evaluate_trigger(
                conditions,
                fields,
                batch.scopes(trigger.id) if conditions.stateful else _NO_STATES,
                block_time=when,
                summaries=(summaries.get((event["id"], trigger.id))
                           if conditions.summaries or conditions.changes else None),
                owned=True,
            )  # fmt: skip
            batch.plan.matched += outcome.matched
            for scope, state in outcome.states.items():
                batch.move(trigger.id, scope, state, position)
            if outcome.fired and batch.delivers(trigger, when):
                shown = shown or event_fields(event)
                batch.fire(Firing(trigger, event, shown, outcome.computed))
    if head is not None:
        if silences is None:
            silences = _Silences(batch, triggers, head.chain_id)
        silences.tick(head.block_time, (head.block_number, HEAD_LOG_INDEX))
    return batch.plan


_NO_STATES: Mapping[str, State] = {}  # a trigger without stateful conditions' (never moved)


class _Batch:
    """A plan as the batch builds it, with the states and last firings it has moved so far.
    Each trigger's scopes are copied from `states` when first touched (`owned_copy`: the
    rate_limit windows' lists), so that the stored states (a caller's, or the memory of the
    batch before) never change while the batch changes its own windows in place."""

    def __init__(self, states: States, clock: Clock) -> None:
        self.plan = Plan()
        self.stored = states
        self.clock = clock
        self.working: dict[str, dict[str, State]] = {}
        self.last_fired = dict(clock.last_fired)

    def scopes(self, trigger_id: str) -> dict[str, State]:
        scopes = self.working.get(trigger_id)
        if scopes is None:
            scopes = self.working[trigger_id] = owned_copy(self.stored.get(trigger_id, {}))
        return scopes

    def move(self, trigger_id: str, scope: str, state: State, position: Position) -> None:
        self.scopes(trigger_id)[scope] = state
        self.plan.states[(trigger_id, scope)] = StateChange(state, position)

    def delivers(self, trigger: CompiledTrigger, when: datetime) -> bool:
        """Whether a firing of the trigger at `when` would be delivered (see fire)."""
        return delivers(trigger, when, self.last_fired.get(trigger.id))

    def fire(self, firing: Firing) -> None:
        """Deliver a firing, unless it is history or within the trigger's cooldown."""
        trigger, when = firing.trigger, firing.event["block_time"]
        if not delivers(trigger, when, self.last_fired.get(trigger.id)):
            return
        self.last_fired[trigger.id] = self.plan.last_fired[trigger.id] = when
        self.plan.firings.append(firing)


class _Silences:
    """The silent periods of a chain's silence triggers, by when they are due (a heap;
    entries a later move made stale are skipped when they come up)."""

    def __init__(self, batch: _Batch, triggers: TriggerIndex, chain_id: int) -> None:
        self.batch = batch
        self.chain_id = chain_id
        self.triggers = {trigger.id: trigger for trigger in triggers.silences(chain_id)}
        self.due: list[tuple[float, int, str, str]] = []
        self._pushed = 0
        self._started = False
        for trigger_id in self.triggers:
            for scope, state in batch.stored.get(trigger_id, {}).items():
                self._push(trigger_id, scope, state)

    def _push(self, trigger_id: str, scope: str, state: State) -> None:
        period = armed(state)
        if period is not None:
            self._pushed += 1
            heapq.heappush(self.due, (float(period["due"]), self._pushed, trigger_id, scope))

    def _move(self, trigger: CompiledTrigger, scope: str, state: State, at: Position) -> None:
        self.batch.move(trigger.id, scope, state, at)
        self._push(trigger.id, scope, state)

    def take(
        self, trigger: CompiledTrigger, event: Event, fields: Mapping[str, Any], at: Position
    ) -> None:
        """An event the index gave the silence trigger: if it meets the field conditions,
        it starts or ends the scope's period."""
        conditions = trigger.conditions
        assert conditions.silence is not None
        if not all(evaluate_field_condition(c, fields) for c in conditions.fields):
            return
        self.batch.plan.matched += 1
        scope = silence_scope(conditions.silence, fields)
        state = self.batch.scopes(trigger.id).get(scope, {})
        self._move(trigger, scope, after_event(conditions.silence, state, event["event_type"],
                                               event["block_time"], event["id"],
                                               trigger.fires_from), at)  # fmt: skip

    def tick(self, now: datetime, at: Position) -> None:
        """The chain's time has reached `now` (at the event or head block `at`): the periods
        due by then fire, in the order they fell due."""
        if not self._started:
            self._start(now, at)
        while self.due and self.due[0][0] <= now.timestamp():
            due, _, trigger_id, scope = heapq.heappop(self.due)
            state = self.batch.scopes(trigger_id).get(scope, {})
            period = armed(state)
            if period is None or float(period["due"]) != due:
                continue  # moved since it was pushed
            trigger = self.triggers[trigger_id]
            silence = trigger.conditions.silence
            assert silence is not None
            outcome = due_period(silence, scope, state, now, trigger.fires_from)
            if isinstance(outcome, dict):
                self._move(trigger, scope, outcome, at)
            elif outcome is not None:
                self.batch.move(trigger.id, scope, end_period(state), at)
                self.batch.fire(self._firing(trigger, outcome, at))

    def _start(self, now: datetime, at: Position) -> None:
        """A fixed scope never seen before is silent from the trigger's start (its
        fires_from; without one, where the history evaluated starts)."""
        self._started = True
        for trigger in self.triggers.values():
            scope = fixed_scope(trigger.conditions)
            silence = trigger.conditions.silence
            if scope is None or silence is None:
                continue
            state = self.batch.scopes(trigger.id).get(scope, {})
            if SILENCE_KEY in state:
                continue
            start = trigger.fires_from or self.batch.clock.origin or now
            self._move(trigger, scope, start_period(state, silence, start.timestamp(), None,
                                                    trigger.fires_from), at)  # fmt: skip

    def _firing(self, trigger: CompiledTrigger, period: SilentPeriod, at: Position) -> Firing:
        silence = trigger.conditions.silence
        assert silence is not None
        fields = {"chain_id": self.chain_id, "registry": trigger.registry,
                  "event_type": SILENCE_EVENT_TYPE, "block_number": at[0],
                  "timestamp": period.due, **period.fields()}  # fmt: skip
        event = {**fields, "id": period.event_id, "log_index": at[1],
                 "block_time": period.due, "block_hash": None}  # fmt: skip
        computed = {"silent_since": period.since, "silence_seconds": silence.seconds}
        return Firing(trigger, event, fields, computed, silence=period)


def _candidates(triggers: TriggerIndex, event: Event) -> list[CompiledTrigger]:
    """The triggers the index names for the event, less those it is history to that keep no
    state: it can fire none of them and moves nothing of theirs (a first backfill is mostly
    such events, so they cost nothing: no fields, no summaries read)."""
    return triggers.candidates_at(event["chain_id"], event["registry"], event["event_type"],
                                  event["agent_id"], event["block_time"])  # fmt: skip
