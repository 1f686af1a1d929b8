"""Triggers compiled for evaluation, and the index from an event to its candidate triggers.

A trigger watches one (chain, registry); its `event_type =` and `agent_id =` conditions, when
it has them among the conditions that must all hold (a flat list, or the field conditions of a
top-level `all` group: ParsedConditions.fields), narrow it further; those inside an `any` or a
`not` cannot. The index files each trigger under
(chain, registry, event type or None, agent id or None), so an event looks in at most four
buckets instead of checking every trigger.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from erc8004_backend.triggers.conditions import FieldCondition, ParsedConditions, parse_conditions

IndexKey = tuple[int, str, str | None, Decimal | None]
# Events' (chain, registry, event type, agent) whose candidates a TriggerIndex keeps; above
# this many it starts again (a chain's agents times its event types: far fewer, usually).
MAX_REMEMBERED_CANDIDATES = 100_000


@dataclass(frozen=True)
class TriggerAction:
    id: str
    action_type: str
    priority: int
    # Attempts before its jobs are dead-lettered; None: the queue's default.
    max_attempts: int | None = None


@dataclass(frozen=True)
class CompiledTrigger:
    id: str
    name: str
    chain_id: int
    registry: str
    conditions: ParsedConditions
    actions: tuple[TriggerAction, ...]
    cooldown_seconds: int = 0
    # Events older than this (block time) are history: they move the state but queue no
    # job. None: every event may fire (a backtest, which is about history on purpose).
    fires_from: datetime | None = None

    @property
    def index_keys(self) -> tuple[str | None, Decimal | None]:
        return (
            _equality(self.conditions.fields, "event_type"),
            _equality(self.conditions.fields, "agent_id"),
        )


def _equality(conditions: Sequence[FieldCondition], field_name: str) -> Any:
    for condition in conditions:
        if condition.field == field_name and condition.operator == "=":
            return condition.value
    return None


def compile_trigger(row: Mapping[str, Any]) -> CompiledTrigger:
    """A trigger from its row plus `conditions` and `actions` lists (as the processor's query
    returns them). Raises ConditionError for conditions that do not parse."""
    conditions = sorted(row["conditions"] or [], key=lambda c: c["position"])
    actions = sorted(row["actions"] or [], key=lambda a: (a["priority"], a["position"]))
    return CompiledTrigger(
        id=str(row["id"]),
        name=row["name"],
        chain_id=int(row["chain_id"]),
        registry=row["registry"],
        conditions=parse_conditions(conditions),
        actions=tuple(
            TriggerAction(str(a["id"]), a["action_type"], int(a["priority"]), _max_attempts(a))
            for a in actions
        ),
        cooldown_seconds=int(row.get("cooldown_seconds") or 0),
        fires_from=row.get("fires_from"),
    )


def _max_attempts(action: Mapping[str, Any]) -> int | None:
    value = action.get("max_attempts")
    # The API validates configs; a hand-written bad value falls back to the default.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class TriggerIndex:
    def __init__(self, triggers: Iterable[CompiledTrigger] = ()) -> None:
        self._buckets: dict[IndexKey, list[CompiledTrigger]] = defaultdict(list)
        self._silences: dict[int, list[CompiledTrigger]] = defaultdict(list)
        self.triggers: dict[str, CompiledTrigger] = {}
        # candidates()' answers: the same few (registry, event type, agent) come again and
        # again, and each answer is looked up once per event by the plan and its needs.
        self._found: dict[tuple[int, str, str, Any], list[CompiledTrigger]] = {}
        # candidates_at()'s: per such key, the answer split by the history rule (_Split).
        self._split: dict[tuple[int, str, str, Any], _Split] = {}
        for trigger in triggers:
            self.add(trigger)

    def add(self, trigger: CompiledTrigger) -> None:
        event_type, agent_id = trigger.index_keys
        self._buckets[(trigger.chain_id, trigger.registry, event_type, agent_id)].append(trigger)
        if trigger.conditions.silence is not None:
            self._silences[trigger.chain_id].append(trigger)
        self.triggers[trigger.id] = trigger
        self._found.clear()
        self._split.clear()

    def silences(self, chain_id: int) -> list[CompiledTrigger]:
        """The chain's silence triggers: the chain's time, not only its events, fires them."""
        return self._silences.get(chain_id, [])

    def __len__(self) -> int:
        return len(self.triggers)

    def candidates(
        self, chain_id: int, registry: str, event_type: str, agent_id: Any
    ) -> list[CompiledTrigger]:
        """The triggers that may fire for such an event, each once, in the index's order (a
        list kept for the next such event: the caller must not change it)."""
        key = (chain_id, registry, event_type, agent_id)
        found = self._found.get(key)
        if found is None:
            if len(self._found) >= MAX_REMEMBERED_CANDIDATES:
                self._found.clear()
            found = self._found[key] = self._look_up(chain_id, registry, event_type, agent_id)
        return found

    def candidates_at(
        self, chain_id: int, registry: str, event_type: str, agent_id: Any, when: datetime
    ) -> list[CompiledTrigger]:
        """candidates(), less the triggers the event (of block time `when`) is history to
        that keep no state: it can fire none of them and moves nothing of theirs. In the
        index's order; a list kept for the next such event (the caller must not change it)."""
        key = (chain_id, registry, event_type, agent_id)
        split = self._split.get(key)
        if split is None:
            if len(self._split) >= MAX_REMEMBERED_CANDIDATES:
                self._split.clear()
            split = self._split[key] = _Split.of(
                self.candidates(chain_id, registry, event_type, agent_id)
            )
        if split.earliest is None or split.latest is None or when >= split.latest:
            return split.found  # history to none of them
        if when < split.earliest:  # history to every one that may skip it
            return split.kept
        return [trigger for trigger in split.found if _sees(trigger, when)]

    def _look_up(
        self, chain_id: int, registry: str, event_type: str, agent_id: Any
    ) -> list[CompiledTrigger]:
        buckets = self._buckets
        found: list[CompiledTrigger] = []
        for bucket in (
            buckets.get((chain_id, registry, None, None)),
            buckets.get((chain_id, registry, event_type, None)),
        ):
            if bucket:
                found.extend(bucket)
        # An event without an agent is in no agent's bucket (and looking up agent None would
        # find the buckets above a second time).
        if agent_id is None:
            return found
        agent = Decimal(agent_id)
        for bucket in (
            buckets.get((chain_id, registry, None, agent)),
            buckets.get((chain_id, registry, event_type, agent)),
        ):
            if bucket:
                found.extend(bucket)
        return found


def _keeps_state(trigger: CompiledTrigger) -> bool:
    return bool(trigger.conditions.stateful or trigger.conditions.silence)


def _sees(trigger: CompiledTrigger, when: datetime) -> bool:
    """Whether an event of block time `when` can do anything to the trigger: fire it, or
    move its state (history moves state too)."""
    return trigger.fires_from is None or when >= trigger.fires_from or _keeps_state(trigger)


@dataclass(frozen=True)
class _Split:
    """A key's candidates and, of those without state that have a fires_from (those an event
    before it can skip), the earliest and latest fires_from; `kept`: the candidates an event
    older than every such fires_from is given (the others)."""

    found: list[CompiledTrigger]
    kept: list[CompiledTrigger]
    earliest: datetime | None
    latest: datetime | None

    @classmethod
    def of(cls, found: list[CompiledTrigger]) -> _Split:
        skippable = [trigger.fires_from for trigger in found
                     if trigger.fires_from is not None and not _keeps_state(trigger)]  # fmt: skip
        if not skippable:
            return cls(found, found, None, None)
        kept = [trigger for trigger in found
                if trigger.fires_from is None or _keeps_state(trigger)]  # fmt: skip
        return cls(found, kept, min(skippable), max(skippable))


def delivers(trigger: CompiledTrigger, when: datetime, last_fired: datetime | None) -> bool:
    """Whether a firing for an event of block time `when` queues the trigger's actions (and
    so becomes the last firing, which starts the cooldown): not for history (before
    `fires_from`), nor less than `cooldown_seconds` after the last delivered firing. Either
    way the event has already moved the trigger's state, as a delivered firing does."""
    if trigger.fires_from is not None and when < trigger.fires_from:
        return False
    if not trigger.cooldown_seconds or last_fired is None:
        return True
    return (when - last_fired).total_seconds() >= trigger.cooldown_seconds
