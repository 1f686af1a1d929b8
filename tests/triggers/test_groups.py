"""Boolean groups of conditions (all, any, not): random trees evaluate as a direct recursive
reference evaluator over the tree as the API takes it, the rows that store a tree give it
back, malformed paths are refused naming the condition, and the candidate index uses only
the field conditions of a top-level all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event as hypothesis_event
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.triggers.conditions import (
    AllGroup,
    AnyGroup,
    ConditionError,
    FieldCondition,
    NotGroup,
    RateLimit,
    evaluate_field_condition,
    nest_conditions,
    parse_condition,
    parse_conditions,
    walk_conditions,
)
from erc8004_backend.triggers.fields import event_fields
from erc8004_backend.triggers.index import CompiledTrigger, TriggerIndex
from erc8004_backend.triggers.operators import compare
from erc8004_backend.triggers.stateful import State, evaluate_trigger
from tests.triggers.random_triggers import (
    CHAIN,
    condition_trees,
    event_rows,
    field_conditions,
    histories,
    tree_rows,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(condition_type: str, field_name: str, operator: str, value: str,
        config: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"condition_type": condition_type, "field": field_name, "operator": operator,
            "value": value, "config": config or {}}  # fmt: skip


AGENT_1 = row("agent_id_equals", "agent_id", "=", "1")
FEEDBACK = row("event_type_equals", "event_type", "=", "NewFeedback")
LOW = row("score_threshold", "score", "<", "30")
REFUND = row("tag_equals", "tag1", "=", "refund")


def counting(operator: str = ">=", value: int = 1, reset: bool = False) -> dict[str, Any]:
    """A rate_limit over the whole trigger (one window: the reference keeps one per leaf)."""
    return row("rate_limit", "feedback_count", operator, str(value),
               {"time_window": "10m", "reset_on_trigger": reset, "scope": "trigger"})  # fmt: skip


rate_limits = st.builds(
    counting, st.sampled_from(("<", "<=", ">", ">=", "=", "!=")), st.integers(1, 4), st.booleans()
)


# -- the reference --------------------------------------------------------------------------


class Reference:
    """A trigger evaluated straight from its tree as the API takes it: the field conditions
    of a top-level all (of a flat list) choose the events the trigger sees; every rate_limit
    of the tree counts each of them; then the tree is evaluated recursively."""

    def __init__(self, tree: Any) -> None:
        self.tree = tree
        self.windows: dict[int, list[datetime]] = {}  # id() of a rate_limit leaf -> its times

    def gate(self) -> list[dict[str, Any]]:
        top = self.tree if isinstance(self.tree, list) else self.tree.get("all", [])
        return [leaf for leaf in top if leaf.get("condition_type") in FIELD_TYPES]

    def leaves(self, node: Any) -> list[dict[str, Any]]:
        if isinstance(node, list):
            return [leaf for child in node for leaf in self.leaves(child)]
        for kind in ("all", "any"):
            if kind in node:
                return self.leaves(node[kind])
        if "not" in node:
            return self.leaves(node["not"])
        return [node]

    def holds(self, node: Any, fields: dict[str, Any]) -> bool:
        if isinstance(node, list) or "all" in node:
            return all(self.holds(child, fields) for child in
                       (node if isinstance(node, list) else node["all"]))  # fmt: skip
        if "any" in node:
            return any(self.holds(child, fields) for child in node["any"])
        if "not" in node:
            return not self.holds(node["not"], fields)
        if node["condition_type"] == "rate_limit":
            count = len(self.windows[id(node)])
            return compare(Decimal(count), node["operator"], Decimal(node["value"]))
        return evaluate_field_condition(_field(node), fields)

    def see(self, fields: dict[str, Any], now: datetime) -> bool | None:
        """Whether the trigger fires for an event; None: it does not see the event."""
        if not all(evaluate_field_condition(_field(leaf), fields) for leaf in self.gate()):
            return None
        limits = [leaf for leaf in self.leaves(self.tree) if leaf["condition_type"] == "rate_limit"]
        for leaf in limits:
            kept = [t for t in self.windows.get(id(leaf), []) if t > now - timedelta(minutes=10)]
            self.windows[id(leaf)] = [*kept, now]
        fired = self.holds(self.tree, fields)
        if fired:
            for leaf in limits:
                if leaf["config"]["reset_on_trigger"]:
                    self.windows[id(leaf)] = []
        return fired


FIELD_TYPES = {"agent_id_equals", "score_threshold", "tag_equals", "event_type_equals", "field"}


def _field(leaf: dict[str, Any]) -> FieldCondition:
    parsed = parse_condition(1, leaf)
    assert isinstance(parsed, FieldCondition)
    return parsed


@settings(max_examples=300, deadline=None)
@given(condition_trees(st.one_of(field_conditions, rate_limits)), histories(max_size=25))
def test_random_trees_evaluate_as_the_recursive_reference(tree: Any, history: list[Any]) -> None:
    conditions = parse_conditions(tree_rows(tree))
    reference = Reference(tree)
    states: dict[str, State] = {}
    outcomes = []
    for event in event_rows(history):
        fields = event_fields(event)
        when = event["block_time"]
        expected = reference.see(fields, when)
        outcome = evaluate_trigger(conditions, fields, states, block_time=when)
        assert outcome.matched == (expected is not None)
        assert outcome.fired == bool(expected)
        states.update(outcome.states)
        outcomes.append(expected)
    # What the examples covered (pytest --hypothesis-show-statistics).
    hypothesis_event(f"a group at the top: {not isinstance(tree, list)}")
    hypothesis_event(f"fired and did not: {True in outcomes and False in outcomes}")


@given(condition_trees(field_conditions))
def test_the_rows_of_a_tree_give_the_tree_back(tree: Any) -> None:
    rows = tree_rows(tree)
    nested = nest_conditions([(r.get("group_path", ""), n) for n, r in enumerate(rows)])
    assert walk_conditions(nested) == [(r.get("group_path", ""), n) for n, r in enumerate(rows)]
    assert _as_json(nested, rows) == tree


def _as_json(node: Any, rows: list[dict[str, Any]]) -> Any:
    """The nested form with the rows (without their paths) at the leaves' numbers."""
    if isinstance(node, list):
        return [_as_json(child, rows) for child in node]
    if isinstance(node, tuple):
        kind, inside = node
        return {kind: _as_json(inside, rows)}
    return {k: v for k, v in rows[node].items() if k != "group_path"}


# -- examples -------------------------------------------------------------------------------


def parsed(tree: Any) -> Any:
    return parse_conditions(tree_rows(tree))


def test_a_flat_list_parses_as_before_and_has_no_tree() -> None:
    conditions = parsed([AGENT_1, LOW])
    assert conditions.tree is None
    assert [c.field for c in conditions.fields] == ["agent_id", "score"]


def test_a_tree_parses_into_groups_with_positions_in_row_order() -> None:
    tree = {"all": [AGENT_1, {"any": [LOW, {"not": REFUND}]}, counting()]}
    conditions = parsed(tree)
    assert isinstance(conditions.tree, AllGroup)
    agent, either, limit = conditions.tree.children
    assert isinstance(either, AnyGroup)
    assert isinstance(either.children[1], NotGroup)
    assert isinstance(limit, RateLimit)
    assert limit.position == 4
    # Only the top-level all's field conditions choose the events the trigger sees.
    assert conditions.fields == (agent,)
    assert conditions.stateful == (limit,)


def event(
    agent: int, score: int, tag1: str = "", minute: int = 0
) -> tuple[dict[str, Any], datetime]:
    fields = {"agent_id": Decimal(agent), "score": Decimal(score), "tag1": tag1,
              "event_type": "NewFeedback"}  # fmt: skip
    return fields, T0 + timedelta(minutes=minute)


def test_a_rate_limit_counts_every_event_even_when_its_group_is_decided_without_it() -> None:
    """any[low score, third event in ten minutes]: the low scores fire by themselves, and
    still count in the window, so the third event fires even with a high score."""
    conditions = parsed({"all": [AGENT_1, {"any": [LOW, counting(">=", 3)]}]})
    states: dict[str, State] = {}
    fired = []
    for fields, when in [event(1, 10, minute=0), event(1, 10, minute=1), event(1, 90, minute=2),
                         event(2, 90, minute=3), event(1, 90, minute=20)]:  # fmt: skip
        outcome = evaluate_trigger(conditions, fields, states, block_time=when)
        states.update(outcome.states)
        fired.append(outcome.fired)
        assert outcome.matched == (fields["agent_id"] == 1)
    assert fired == [True, True, True, False, False]
    assert len(states["trigger"]["3"]["times"]) == 1  # agent 2's event was not seen


def test_a_stateful_condition_under_not_moves_its_state_and_is_negated() -> None:
    conditions = parsed({"not": counting(">=", 2)})
    states: dict[str, State] = {}
    fired = []
    for minute in (0, 1, 30):
        fields, when = event(1, 50, minute=minute)
        outcome = evaluate_trigger(conditions, fields, states, block_time=when)
        states.update(outcome.states)
        fired.append(outcome.fired)
    assert fired == [True, False, True]


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["any[0]", ""], "condition 2: group path a flat list's does not fit"),
        (["any[0]", "any[1].al[0]"], "condition 2: group path 'any[1].al[0]' does not fit"),
        (["any[0]", "all[1]"], "condition 2: its group path contradicts another's"),
        (["any[0]", "any[1].all[0]", "any[1].not"], "condition 3: its group path contradicts"),
        (["all[0]", "all[0]"], "condition 2: 'all[0]' is given to more than one condition"),
        (["not", "not.any[0]"], "condition 2: 'not' is given to more than one condition"),
    ],
)
def test_paths_that_do_not_make_a_tree_are_refused_naming_the_condition(
    paths: list[str], message: str
) -> None:
    rows = [{**AGENT_1, "group_path": path} for path in paths]
    with pytest.raises(ConditionError) as raised:
        parse_conditions(rows)
    assert str(raised.value).startswith(message)


def test_a_condition_in_a_tree_is_named_by_its_path() -> None:
    tree = {"any": [AGENT_1, {"all": [{**LOW, "operator": "LIKE"}]}]}
    with pytest.raises(ConditionError, match=r"^conditions\.any\[1\]\.all\[0\] \(score_threshold\)"
                       r": unknown operator 'LIKE'"):  # fmt: skip
        parsed(tree)


# -- the candidate index --------------------------------------------------------------------


def compiled(tree: Any) -> CompiledTrigger:
    return CompiledTrigger("t", "t", CHAIN, "reputation", parsed(tree), ())


@pytest.mark.parametrize(
    ("tree", "keys"),
    [
        ([FEEDBACK, AGENT_1], ("NewFeedback", Decimal(1))),
        ({"all": [FEEDBACK, {"any": [AGENT_1, LOW]}]}, ("NewFeedback", None)),
        ({"any": [FEEDBACK, AGENT_1]}, (None, None)),
        ({"not": {"all": [FEEDBACK, AGENT_1]}}, (None, None)),
        ({"all": [{"not": FEEDBACK}, {"all": [AGENT_1]}]}, (None, None)),
    ],
)
def test_only_a_top_level_all_narrows_the_candidates(tree: Any, keys: tuple[Any, Any]) -> None:
    trigger = compiled(tree)
    assert trigger.index_keys == keys
    index = TriggerIndex([trigger])
    found = index.candidates(CHAIN, "reputation", "FeedbackRevoked", 7)
    assert found == ([] if keys[0] or keys[1] is not None else [trigger])


def test_summary_conditions_in_a_tree_are_listed_for_the_summary_reads() -> None:
    summary = row("reputation_threshold", "reputation", "<", "50",
                  {"clients": ["0x" + "1" * 40]})  # fmt: skip
    conditions = parsed({"any": [LOW, {"not": summary}]})
    assert [c.position for c in conditions.summaries] == [2]
    assert conditions.fields == ()
    assert tree_rows({"any": [LOW, {"not": summary}]})[1]["group_path"] == "any[1].not"
