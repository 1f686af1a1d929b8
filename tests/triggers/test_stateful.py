"""EMA and rate-limit state machines against straightforward reference computations, and the
stateful examples of trigger-examples.md."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.triggers.conditions import ConditionError, ParsedConditions, parse_conditions
from erc8004_backend.triggers.stateful import (
    Evaluation,
    State,
    evaluate_trigger,
    update_ema,
    update_window,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def reference_ema(values: list[float], alpha: float) -> float:
    average = values[0]
    for value in values[1:]:
        average = alpha * value + (1 - alpha) * average
    return average


@given(
    st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=60),
    st.floats(min_value=0.001, max_value=1.0),
)
def test_ema_after_any_sequence_equals_the_reference(values: list[float], alpha: float) -> None:
    average = None
    for value in values:
        average = update_ema(average, value, alpha)
    assert average == reference_ema(values, alpha)


@given(
    st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=80),
    st.integers(min_value=1, max_value=5_000),
)
def test_window_count_equals_a_brute_force_count(gaps: list[int], window: int) -> None:
    times: list[float] = []
    now = 0.0
    seen: list[float] = []
    for gap in gaps:  # events in block-time order
        now += gap
        seen.append(now)
        times = update_window(times, now, window)
        assert len(times) == sum(1 for t in seen if now - window < t <= now)


@given(
    st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=120),
    st.integers(min_value=1, max_value=5_000),
    st.integers(min_value=1, max_value=40),
)
def test_a_kept_window_counts_exactly_up_to_what_it_keeps(
    gaps: list[int], window: int, keep: int
) -> None:
    """Kept to its latest `keep` times, the count is the brute-force one up to `keep`, and
    beyond stays at `keep`: compared with any threshold up to keep - 2, as the exact count."""
    times: list[float] = []
    now = 0.0
    seen: list[float] = []
    for gap in gaps:
        now += gap
        seen.append(now)
        times = update_window(times, now, window, keep)
        exact = sum(1 for t in seen if now - window < t <= now)
        assert len(times) == min(exact, keep)
        for threshold in range(keep - 1):
            assert (len(times) > threshold) == (exact > threshold)


def test_a_rate_limit_compares_with_at_most_10000() -> None:
    row = {"condition_type": "rate_limit", "field": "feedback_count", "operator": ">",
           "value": "1e30", "config": {"time_window": "366d"}}  # fmt: skip
    with pytest.raises(ConditionError, match="counts up to 10,000 events in its window"):
        parse_conditions([row])
    assert parse_conditions([{**row, "value": "10000"}]).stateful


def run(
    conditions: ParsedConditions, events: list[tuple[dict[str, Any], datetime]]
) -> list[Evaluation]:
    """Feed events in order, carrying state as the processor would."""
    states: dict[str, State] = {}
    results = []
    for fields, block_time in events:
        result = evaluate_trigger(conditions, fields, states, block_time=block_time)
        states.update(result.states)
        results.append(result)
    return results


EMA_TRIGGER = parse_conditions([
    {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
    {"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "70",
     "config": {"window_size": 10}},
])  # fmt: skip


def test_example_5_fires_once_the_average_falls_below_70_not_before() -> None:
    scores = [90, 90, 90] + [40] * 10
    events = [({"agent_id": Decimal(42), "score": Decimal(s)}, T0 + timedelta(minutes=i))
              for i, s in enumerate(scores)]  # fmt: skip
    results = run(EMA_TRIGGER, events)
    alpha = 2 / 11
    fired = [r.fired for r in results]
    averages = [
        reference_ema([float(s) for s in scores[: i + 1]], alpha) for i in range(len(scores))
    ]
    assert fired == [average < 70 for average in averages]
    assert fired.index(True) > 3  # not at the first 40
    assert results[-1].computed["ema_score"] == round(averages[-1], 6)


def test_example_5_other_agents_neither_fire_nor_move_the_average() -> None:
    events = [({"agent_id": Decimal(43), "score": Decimal(0)}, T0)] * 5
    events += [({"agent_id": Decimal(42), "score": Decimal(90)}, T0)]
    results = run(EMA_TRIGGER, events)
    assert not any(r.fired for r in results)
    assert [r.matched for r in results] == [False] * 5 + [True]
    assert results[-1].computed["ema_score"] == 90


def test_example_5_an_event_without_a_score_neither_fires_nor_moves_the_average() -> None:
    """A revocation or a response for agent 42 while its average is below 70: no alert
    (its message would have no score to show), and the next score averages as before."""
    scored = [({"agent_id": Decimal(42), "score": Decimal(s)}, T0) for s in (90, 20, 20)]
    revoked = ({"agent_id": Decimal(42), "score": None}, T0)
    results = run(EMA_TRIGGER, [*scored, revoked, scored[-1]])
    assert [r.fired for r in results] == [False, False, True, False, True]
    assert results[3].matched
    assert "ema_score" not in results[3].computed
    alpha = 2 / 11
    assert results[4].computed["ema_score"] == round(reference_ema([90, 20, 20, 20], alpha), 6)


SPAM_TRIGGER = parse_conditions([
    {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
    {"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "50"},
    {"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
     "config": {"time_window": "1h", "reset_on_trigger": True}},
])  # fmt: skip


def negative(minute: float) -> tuple[dict[str, Any], datetime]:
    return {"agent_id": Decimal(42), "score": Decimal(10)}, T0 + timedelta(minutes=minute)


def test_example_6_eleven_in_fifty_minutes_fire_once_then_the_count_restarts() -> None:
    results = run(SPAM_TRIGGER, [negative(5 * i) for i in range(11)])
    assert [r.fired for r in results] == [False] * 10 + [True]
    assert results[-1].computed["count"] == 11
    # reset_on_trigger: the next ten do not fire again.
    more = run(
        SPAM_TRIGGER, [negative(5 * i) for i in range(11)] + [negative(51 + i) for i in range(10)]
    )
    assert sum(r.fired for r in more) == 1


def test_example_6_eleven_over_three_hours_never_fire() -> None:
    results = run(SPAM_TRIGGER, [negative(18 * i) for i in range(11)])
    assert not any(r.fired for r in results)


def test_example_6_only_events_passing_the_other_conditions_are_counted() -> None:
    positive = [({"agent_id": Decimal(42), "score": Decimal(90)}, T0 + timedelta(minutes=i))
                for i in range(20)]  # fmt: skip
    results = run(SPAM_TRIGGER, positive + [negative(30 + i) for i in range(10)])
    assert not any(r.fired for r in results)
    assert results[-1].computed["count"] == 10


def test_state_is_kept_per_agent_by_default() -> None:
    conditions = parse_conditions([
        {"condition_type": "rate_limit", "field": "feedback_count", "operator": ">=", "value": "2",
         "config": {"time_window": "1h"}},
    ])  # fmt: skip
    events = [({"agent_id": Decimal(a)}, T0) for a in (1, 2, 1)]
    results = run(conditions, events)
    assert [r.fired for r in results] == [False, False, True]
    assert set(results[-1].states) == {"agent:1"}
