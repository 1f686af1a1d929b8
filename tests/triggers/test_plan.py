"""plan_batch in memory: the one evaluation loop of the processor and the backtest.

The processor plans a chain's events a batch at a time, from the state rows and last firings
that batch_needs names; planning the same events at once must give the same firings and
leave the same state, wherever the batches are cut."""

from __future__ import annotations

import copy
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.triggers.crossings import SummaryChange
from erc8004_backend.triggers.fields import event_fields
from erc8004_backend.triggers.index import TriggerIndex
from erc8004_backend.triggers.plan import Clock, Plan, batch_needs, plan_batch
from erc8004_backend.triggers.stateful import State
from tests.triggers.random_triggers import (
    CLIENTS,
    T0,
    HistoryEvent,
    TriggerSpec,
    event_rows,
    histories,
    trigger_specs,
)

LOW_SCORE = [{"condition_type": "score_threshold", "field": "score", "operator": "<",
              "value": "50"}]  # fmt: skip
THIRD_IN_AN_HOUR = [{"condition_type": "rate_limit", "field": "feedback_count", "operator": ">=",
                     "value": "3", "config": {"time_window": "1h", "reset_on_trigger": True}}]  # fmt: skip


def feedback(score: int, agent: int = 0, *, same_block: bool = False) -> HistoryEvent:
    return HistoryEvent("NewFeedback", {"agent_id": agent, "client_address": CLIENTS[0],
                                        "feedback_index": 1, "value": score,
                                        "value_decimals": 0, "score": score, "tag1": "",
                                        "tag2": ""}, same_block)  # fmt: skip


def index_of(*specs: TriggerSpec) -> TriggerIndex:
    return TriggerIndex(spec.compiled(f"t{n}") for n, spec in enumerate(specs))


def firings(plan: Plan) -> list[tuple[str, int, dict[str, Any]]]:
    return [(f.trigger.id, f.event["id"], dict(f.computed)) for f in plan.firings]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(trigger_specs(groups=True), min_size=1, max_size=4),
    histories(),
    st.lists(st.integers(1, 8), min_size=1, max_size=40),
)
def test_batches_cut_anywhere_plan_as_the_whole_history_at_once(
    specs: list[TriggerSpec], history: list[HistoryEvent], cuts: list[int]
) -> None:
    index = index_of(*specs)
    rows = event_rows(history)
    whole = plan_batch(rows, index, {}, Clock())

    # As the processor does: each batch from the rows and last firings batch_needs names,
    # as the batches before left them (trigger_state, triggers.last_fired_at).
    stored: dict[tuple[str, str], State] = {}
    last_fired: dict[str, Any] = {}
    planned: list[tuple[str, int, dict[str, Any]]] = []
    start, sizes = 0, iter(cuts * len(rows))
    while start < len(rows):
        batch = rows[start : start + next(sizes)]
        start += len(batch)
        needs = batch_needs(batch, index)
        states: dict[str, dict[str, State]] = {}
        for trigger_id, scope in needs.states:
            if (trigger_id, scope) in stored:
                states.setdefault(trigger_id, {})[scope] = stored[trigger_id, scope]
        clock = Clock({t: last_fired[t] for t in needs.last_fired if t in last_fired})
        plan = plan_batch(batch, index, states, clock)
        planned += firings(plan)
        stored.update({key: change.state for key, change in plan.states.items()})
        last_fired.update(plan.last_fired)

    assert planned == firings(whole)
    assert stored == {key: change.state for key, change in whole.states.items()}
    assert last_fired == whole.last_fired


def test_history_moves_state_but_is_neither_delivered_nor_starts_a_cooldown() -> None:
    """Before fires_from the window fills and starts again (as a firing held back by a
    cooldown does), but nothing is delivered and the cooldown starts at the first delivered
    firing."""
    spec = TriggerSpec(THIRD_IN_AN_HOUR, cooldown_seconds=600, fires_from_minute=4)
    rows = event_rows([feedback(10) for _ in range(9)])  # blocks 1-9, a minute apart
    plan = plan_batch(rows, index_of(spec), {}, Clock())
    # 1-3 fill the window in history; 4-6 fill it again and fire; 7-9 too, but at minute 9,
    # within 10 minutes of minute 6: held back, and the window starts again all the same.
    assert [(f.event["block_number"], dict(f.computed)) for f in plan.firings] == [
        (6, {"count": 3})
    ]
    assert plan.last_fired == {"t0": T0 + timedelta(minutes=6)}
    assert plan.states_of("t0") == {"agent:0": {"1": {"times": []}}}
    assert plan.states[("t0", "agent:0")].position == (9, 0)


def test_a_window_at_its_largest_costs_an_event_about_what_a_small_one_does() -> None:
    """A batch changes its own copy of a rate_limit's window in place: a copy of the window
    for every event cost ten times more at a threshold of 10,000 (10,002 times kept) than at
    10 (1,000 kept), and one account's 50 such conditions took 16.7 s a batch of 5,000."""

    def seconds_for(threshold: int) -> float:
        conditions = [{"condition_type": "rate_limit", "field": "feedback_count",
                       "operator": ">=", "value": str(threshold),
                       "config": {"time_window": "30d"}} for _ in range(5)]  # fmt: skip
        index = index_of(TriggerSpec(conditions))
        rows = event_rows([feedback(10) for _ in range(12_000)])  # a minute apart
        filled = plan_batch(rows[:10_500], index, {}, Clock())
        runs = []
        for _ in range(3):  # the fastest of three: a busy machine slows any one of them
            started = time.perf_counter()
            plan = plan_batch(rows[10_500:], index, {"t0": filled.states_of("t0")}, Clock())
            runs.append(time.perf_counter() - started)
            assert len(plan.firings) == 1_500
        return min(runs)

    small, large = seconds_for(10), seconds_for(10_000)
    assert large < 3 * small


def test_a_cooldown_runs_from_the_clock() -> None:
    spec = TriggerSpec(LOW_SCORE, cooldown_seconds=300)
    rows = event_rows([feedback(10) for _ in range(6)])  # minutes 1-6
    clock = Clock({"t0": T0 + timedelta(minutes=1)})  # fired at minute 1, in the last batch
    plan = plan_batch(rows[1:], index_of(spec), {}, clock)
    assert [f.event["block_number"] for f in plan.firings] == [6]
    assert plan.last_fired == {"t0": T0 + timedelta(minutes=6)}
    assert plan.states == {}  # no stateful condition: nothing to keep


def test_stored_state_is_where_the_batch_starts_and_inputs_stay_as_they_were() -> None:
    spec = TriggerSpec(THIRD_IN_AN_HOUR)
    rows = event_rows([feedback(10), feedback(10, agent=1), feedback(10)])
    earlier = (T0 + timedelta(seconds=30)).timestamp()
    states = {"t0": {"agent:0": {"1": {"times": [earlier]}}}}
    clock = Clock({"t0": T0})
    before = copy.deepcopy((states, clock))
    plan = plan_batch(rows, index_of(spec), states, clock)
    # Agent 0's window held one event already: its second new one is the third.
    assert [(f.event["block_number"], f.event["agent_id"]) for f in plan.firings] == [
        (3, Decimal(0))
    ]
    assert plan.states_of("t0") == {"agent:0": {"1": {"times": []}},
                                    "agent:1": {"1": {"times": [rows[1]["block_time"].timestamp()]}}}  # fmt: skip
    assert (states, clock) == before


def test_summary_conditions_compare_the_summaries_given() -> None:
    spec = TriggerSpec([{"condition_type": "reputation_threshold", "field": "reputation",
                         "operator": "<", "value": "50", "config": {"clients": [CLIENTS[0]]}}])  # fmt: skip
    rows = event_rows([feedback(10), feedback(80), feedback(10)])
    summaries = {
        (1, "t0"): {1: SummaryChange(None, Decimal(10), 1)},  # from nothing to 10: crosses
        (2, "t0"): {1: SummaryChange(Decimal(10), Decimal(45), 2)},  # stays below
        # event 3 has none: a summary it cannot move never holds
    }
    plan = plan_batch(rows, index_of(spec), {}, Clock(), summaries)
    assert [(f.event["id"], dict(f.computed)) for f in plan.firings] == [
        (1, {"reputation_before": None, "reputation_after": Decimal(10), "reputation_count": 1})
    ]
    assert plan.matched == 3


def test_a_firing_carries_its_event_fields_and_computed_values() -> None:
    spec = TriggerSpec([*LOW_SCORE, {"condition_type": "ema_threshold", "field": "score",
                                     "operator": "<", "value": "50", "config": {"alpha": 1}}])  # fmt: skip
    rows = event_rows([feedback(70), feedback(20, same_block=True)])
    (firing,) = plan_batch(rows, index_of(spec), {}, Clock()).firings
    assert firing.event is rows[1]
    assert firing.fields == event_fields(rows[1])
    assert firing.position == (1, 1)
    assert firing.computed == {"ema_score": 20.0}


def test_an_event_without_an_agent_is_evaluated_once_per_trigger() -> None:
    spec = TriggerSpec([{"condition_type": "rate_limit", "field": "events", "operator": ">=",
                         "value": "1", "config": {"time_window": "1h", "scope": "trigger"}}])  # fmt: skip
    row = {**event_rows([feedback(10)])[0], "agent_id": None}
    plan = plan_batch([row], index_of(spec), {}, Clock())
    assert [dict(f.computed) for f in plan.firings] == [{"count": 1}]
    assert batch_needs([row], index_of(spec)).states == {("t0", "trigger")}


def test_batch_needs_names_the_rows_and_firings_the_plan_reads() -> None:
    ema = TriggerSpec([{"condition_type": "ema_threshold", "field": "score", "operator": "<",
                        "value": "50", "config": {"alpha": 1, "scope": "client"}}],
                      cooldown_seconds=60)  # fmt: skip
    agent_two = TriggerSpec([{"condition_type": "agent_id_equals", "field": "agent_id",
                              "operator": "=", "value": "2"}])  # fmt: skip
    rows = event_rows([feedback(10), feedback(10, agent=1)])
    needs = batch_needs(rows, index_of(ema, agent_two))
    assert [event["id"] for event, _ in needs.candidates] == [1, 2]  # agent 2 has none
    assert needs.states == {("t0", f"client:{CLIENTS[0]}")}
    assert needs.last_fired == {"t0"}
