"""Silence conditions in memory: parsing, and plan_batch's firings against a brute-force
reference over random event times, wherever the batches are cut and the head ticks fall."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.triggers.conditions import ConditionError, Silence, parse_conditions
from erc8004_backend.triggers.index import CompiledTrigger, TriggerAction, TriggerIndex
from erc8004_backend.triggers.plan import ChainTime, Clock, Firing, batch_needs, plan_batch
from erc8004_backend.triggers.silence import SILENCE_KEY, armed, fixed_scope
from erc8004_backend.triggers.stateful import State

CHAIN = 84532
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
AGENTS = (0, 1, 2)


def silence_row(value: str = "1h", **config: Any) -> dict[str, Any]:
    return {"condition_type": "silence", "field": "silence", "operator": ">=", "value": value,
            "config": config}  # fmt: skip


def agent_is(agent: int) -> dict[str, Any]:
    return {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
            "value": str(agent)}  # fmt: skip


def test_a_silence_parses_with_its_duration_scope_and_after() -> None:
    parsed = parse_conditions(
        [agent_is(4), silence_row("6h", scope="request", after="ValidationRequest")]
    )
    assert parsed.silence == Silence(2, 6 * 3600, "request", "ValidationRequest")
    assert [c.field for c in parsed.fields] == ["agent_id"]
    assert parse_conditions([silence_row("30m")]).silence == Silence(1, 1800, "agent", None)


def test_a_fixed_scope_names_the_agent_as_its_events_do() -> None:
    """`agent_id = 42.0` (or 4.2e1) is agent 42: the silence watches the scope its events
    have, "agent:42", and an event of agent 42 ends it (with "agent:42.0" it never did)."""
    for written in ("42", "42.0", "4.2e1"):
        parsed = parse_conditions([agent_is(42) | {"value": written}, silence_row("1h")])
        assert fixed_scope(parsed) == "agent:42"
    assert parse_conditions([agent_is(7), silence_row("1h", scope="trigger")]).silence


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{**silence_row(), "field": "score"}], "field: must be 'silence', not 'score'"),
        ([{**silence_row(), "operator": "<"}], "operator: must be >="),
        ([silence_row("soon")], "value: 'soon' is not a duration"),
        ([silence_row("0h")], "value: '0h' is not a duration"),
        ([silence_row("4000d")], "value: may be at most 3660 days"),
        ([silence_row(scope="block")], "config.scope: unknown scope 'block'"),
        ([silence_row(after="Feedback")], "config.after: must be an event type"),
        ([silence_row(window="1h")], "config.window: unknown key"),
        ([silence_row(), silence_row()], "condition 2 (silence): a trigger has at most one"),
        ([silence_row(), {"condition_type": "rate_limit", "field": "n", "operator": ">",
                          "value": "1", "config": {"time_window": "1h"}}],
         "condition 2 keeps state or reads summaries"),
        ([{**silence_row(), "group_path": "any[0]"}, {**agent_is(1), "group_path": "any[1]"}],
         "a silence trigger's conditions are a flat list"),
        ([silence_row(after="ValidationRequest"),
          {"condition_type": "event_type_equals", "field": "event_type", "operator": "=",
           "value": "ValidationResponse"}], "with config.after, the silence needs both"),
    ],
)  # fmt: skip
def test_invalid_silences_name_the_problem(rows: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConditionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_conditions(rows)


# -- firings against a reference ------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    seconds: int
    scope: str  # agent or trigger
    agent: int | None  # an agent_id = condition
    after: bool  # periods start at NewFeedback, end at FeedbackRevoked
    fires_from: datetime | None


cases = st.builds(
    Case,
    st.integers(1, 90).map(lambda minutes: minutes * 60),
    st.sampled_from(("agent", "trigger")),
    st.one_of(st.none(), st.sampled_from(AGENTS)),
    st.booleans(),
    st.one_of(st.none(), st.integers(-30, 300).map(lambda m: T0 + timedelta(minutes=m))),
)
# (minutes after the last event, agent, revocation?): a history of events in chain order.
histories = st.lists(
    st.tuples(st.integers(0, 70), st.sampled_from(AGENTS), st.booleans()), max_size=30
)


def trigger_of(case: Case) -> CompiledTrigger:
    rows = [agent_is(case.agent)] if case.agent is not None else []
    config: dict[str, Any] = {"scope": case.scope}
    if case.after:
        config["after"] = "NewFeedback"
    rows.append(silence_row(f"{case.seconds}s", **config))
    return CompiledTrigger("t", "silent", CHAIN, "reputation", parse_conditions(rows),
                           (TriggerAction("a", "rest", 1),), 0, case.fires_from)  # fmt: skip


def event_rows(history: list[tuple[int, int, bool]]) -> list[dict[str, Any]]:
    rows, when = [], T0
    for number, (gap, agent, revoked) in enumerate(history, start=1):
        when += timedelta(minutes=gap)
        rows.append({"id": number, "chain_id": CHAIN, "registry": "reputation",
                     "event_type": "FeedbackRevoked" if revoked else "NewFeedback",
                     "block_number": number, "log_index": 0, "block_time": when,
                     "block_hash": f"0x{number:064x}", "agent_id": agent,
                     "client_address": "0x" + "1" * 40})  # fmt: skip
    return rows


Period = tuple[str, float, int | None]  # scope, start, the event that started it


def reference(
    case: Case, rows: list[dict[str, Any]], origin: datetime, end: datetime
) -> list[Period]:
    """The silent periods that fire, by definition: per scope, each period runs from its
    start (an event that starts one; for a scope the trigger names, also the trigger's
    start) to the next event of the scope that starts or ends one, else to `end`; it fires
    when it lasts its duration from the later of its start and fires_from."""
    starts: dict[str, list[tuple[float, int | None, bool]]] = {}  # scope -> (time, id, starts?)
    fixed = "trigger" if case.scope == "trigger" else (
        f"agent:{case.agent}" if case.agent is not None else None)  # fmt: skip
    if fixed is not None:
        begin = case.fires_from or origin
        starts[fixed] = [(begin.timestamp(), None, True)]
    for row in rows:
        if case.agent is not None and row["agent_id"] != case.agent:
            continue
        scope = "trigger" if case.scope == "trigger" else f"agent:{row['agent_id']}"
        opens = not case.after or row["event_type"] == "NewFeedback"
        starts.setdefault(scope, []).append((row["block_time"].timestamp(), row["id"], opens))
    fired: list[Period] = []
    for scope, marks in starts.items():
        # Marks are in chain order except the trigger's start, which comes first.
        for n, (since, event_id, opens) in enumerate(marks):
            if not opens:
                continue
            until = marks[n + 1][0] if n + 1 < len(marks) else end.timestamp()
            effective = max(since, case.fires_from.timestamp()) if case.fires_from else since
            if effective + case.seconds <= until:
                fired.append((scope, since, event_id))
    return sorted(fired, key=lambda f: (f[0], f[1]))


def planned(plan_firings: list[Firing]) -> list[Period]:
    periods = [f.silence for f in plan_firings if f.silence is not None]
    assert len(periods) == len(plan_firings)
    return sorted(((p.scope, p.started, p.event_id) for p in periods),
                  key=lambda f: (f[0], f[1]))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(cases, histories, st.integers(0, 200), st.lists(st.integers(1, 6), min_size=1),
       st.lists(st.booleans(), min_size=1))  # fmt: skip
def test_silences_fire_once_per_silent_period_as_the_reference_says(
    case: Case, history: list[tuple[int, int, bool]], tail: int, cuts: list[int],
    heads: list[bool],
) -> None:  # fmt: skip
    trigger = trigger_of(case)
    index = TriggerIndex([trigger])
    rows = event_rows(history)
    origin = T0 - timedelta(minutes=10)
    end = (rows[-1]["block_time"] if rows else T0) + timedelta(minutes=tail)
    head = ChainTime(CHAIN, len(rows) + 1, end)
    expected = reference(case, rows, origin, end)

    # All at once, as a backtest does.
    whole = plan_batch(rows, index, {}, Clock(origin=origin), head=head)
    assert planned(whole.firings) == expected

    # In batches, as the processor does: each from the state rows batch_needs names plus the
    # periods due by its end (trigger_state's index), some followed by a head tick between
    # their last event and the next batch's first.
    stored: dict[str, State] = {}
    fired: list[Firing] = []
    start, sizes, ticks = 0, iter(cuts * (len(rows) + 1)), iter(heads * (len(rows) + 1))
    while True:
        batch = rows[start : start + next(sizes)]
        start += len(batch)
        last = start >= len(rows)
        until = end if last else batch[-1]["block_time"] if batch else T0
        tick = head if last else None
        if not last and next(ticks):
            until = (
                batch[-1]["block_time"] + (rows[start]["block_time"] - batch[-1]["block_time"]) / 2
            )
            tick = ChainTime(CHAIN, batch[-1]["block_number"], until)
        needs = batch_needs(batch, index, chain_id=CHAIN)
        states = {scope: stored[scope] for _, scope in needs.states if scope in stored}
        for scope, state in stored.items():
            period = armed(state)
            if period is not None and period["due"] <= until.timestamp():
                states[scope] = state
        plan = plan_batch(batch, index, {"t": states}, Clock(origin=origin), head=tick)
        stored.update(plan.states_of("t"))
        fired += plan.firings
        if last:
            break
    assert planned(fired) == expected
    # Each period fired once, and left its scope without a period.
    periods = [(f.event, f.silence) for f in fired if f.silence is not None]
    assert len({(p.scope, p.started) for _, p in periods}) == len(fired)
    for event, silent in periods:
        assert event["block_time"] == silent.due
        assert SILENCE_KEY in stored[silent.scope]


def test_a_silence_reports_its_scope_and_start_to_templates() -> None:
    trigger = trigger_of(Case(3600, "agent", 2, False, T0))
    rows = event_rows([(30, 2, False), (120, 1, False)])
    plan = plan_batch(rows, TriggerIndex([trigger]), {}, Clock(),
                      head=ChainTime(CHAIN, 9, T0 + timedelta(hours=6)))  # fmt: skip
    # From the trigger's start (T0) to the first event (30 min): too short; from that event
    # (T0 + 30 min) for an hour: the second event is agent 1's, so it fires at T0 + 90 min.
    assert len(plan.firings) == 1
    firing = plan.firings[0]
    assert firing.event["id"] == 1
    assert firing.fields["agent_id"] == 2
    assert firing.fields["event_type"] == "silence"
    assert firing.fields["timestamp"] == T0 + timedelta(minutes=90)
    assert firing.computed == {"silent_since": T0 + timedelta(minutes=30), "silence_seconds": 3600}
    # Fired at the tick of the next event (block 2), before that event was evaluated.
    assert firing.position == (2, 0)


def test_a_silence_counts_from_the_trigger_start_when_its_last_event_is_older() -> None:
    # Enabled again at T0 + 5h: the period that began at T0 + 30 min fires an hour after.
    trigger = trigger_of(Case(3600, "agent", 2, False, T0 + timedelta(hours=5)))
    rows = event_rows([(30, 2, False)])
    plan = plan_batch(rows, TriggerIndex([trigger]), {}, Clock(),
                      head=ChainTime(CHAIN, 9, T0 + timedelta(hours=7)))  # fmt: skip
    assert [f.fields["timestamp"] for f in plan.firings] == [T0 + timedelta(hours=6)]
    assert plan.firings[0].computed["silent_since"] == T0 + timedelta(hours=5)
