"""Summary conditions fire exactly at crossings: the engine's sweep over the read model's
records against brute-force references that recompute the spec's summaries
(agents/summaries.py) and lenses (agents/lenses.py) after every event."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.agents.lenses import FeedbackEntry, Lens, apply_lens
from erc8004_backend.agents.summaries import (
    Feedback,
    Validation,
    reputation_summary,
    validation_summary,
)
from erc8004_backend.triggers.conditions import parse_conditions
from erc8004_backend.triggers.crossings import (
    FeedbackRecord,
    LensPoint,
    Position,
    ResponseRecord,
    SummaryChange,
    lens_changes,
    reputation_changes,
    validation_changes,
)
from erc8004_backend.triggers.stateful import evaluate_trigger

CLIENTS = [f"0x{digit * 40}" for digit in "abcd"]
VALIDATORS = [f"0x{digit * 40}" for digit in "1234"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
OPERATORS = ("<", "<=", ">", ">=")


def reference_beyond(value: Decimal | None, operator: str, threshold: Decimal) -> bool:
    if value is None:
        return False
    return {
        "<": value < threshold,
        "<=": value <= threshold,
        ">": value > threshold,
        ">=": value >= threshold,
    }[operator]


def reference_crossings(
    values: list[Decimal | None], operator: str, threshold: Decimal
) -> list[int]:
    """The events after which the summary is beyond the threshold and was not before."""
    crossings = []
    previous: Decimal | None = None
    for number, value in enumerate(values):
        if reference_beyond(value, operator, threshold) and not reference_beyond(
            previous, operator, threshold
        ):
            crossings.append(number)
        previous = value
    return crossings


def position_of(number: int) -> Position:
    """Events three to a block, so that blocks hold several."""
    return (10 + number // 3, number % 3)


# -- reputation --------------------------------------------------------------------------------


@st.composite
def decimal_values(draw: st.DrawFn) -> tuple[int, int]:
    """(value, valueDecimals): mostly scores around 0-100 with 0 to 18 decimals, sometimes
    any int128 (whose average the contract cuts to int128)."""
    decimals = draw(st.integers(min_value=0, max_value=18))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        return draw(st.integers(min_value=-(2**127), max_value=2**127 - 1)), decimals
    whole = draw(st.integers(min_value=-20, max_value=120))
    return whole * 10**decimals + draw(st.integers(0, 10**decimals - 1)), decimals


give = st.tuples(
    st.just("give"),
    st.integers(min_value=0, max_value=len(CLIENTS) - 1),
    decimal_values(),
    st.sampled_from(["", "a", "b"]),
    st.sampled_from(["", "x"]),
)
revoke = st.tuples(
    st.just("revoke"),
    st.integers(min_value=0, max_value=len(CLIENTS) - 1),
    st.integers(min_value=1, max_value=6),  # an index given, not yet, or never
)
feedback_events = st.lists(st.one_of(give, give, revoke), min_size=1, max_size=40)
thresholds = st.integers(min_value=-30, max_value=130).map(Decimal) | st.decimals(
    min_value=-30, max_value=130, places=3, allow_nan=False, allow_infinity=False
)


@dataclass
class FeedbackHistory:
    """What a sequence of feedback events makes: the read model's records (with their
    positions and the revocations that count), and the feedback as the registry holds it
    after each event."""

    records: list[FeedbackRecord]
    states: list[list[Feedback]]  # after each event
    times: dict[tuple[str, int], datetime]  # each feedback's block time


def replay_feedback(events: list[tuple[Any, ...]]) -> FeedbackHistory:
    held: dict[tuple[str, int], Feedback] = {}
    records: dict[tuple[str, int], FeedbackRecord] = {}
    last_index: dict[str, int] = {}
    times: dict[tuple[str, int], datetime] = {}
    states = []
    for number, event in enumerate(events):
        client = CLIENTS[event[1]]
        if event[0] == "give":
            _, _, (value, decimals), tag1, tag2 = event
            index = last_index.get(client, 0) + 1
            last_index[client] = index
            times[(client, index)] = T0 + timedelta(hours=number)
            held[(client, index)] = Feedback(client, index, value, decimals, tag1, tag2)
            records[(client, index)] = FeedbackRecord(client, index, value, decimals, tag1,
                                                      tag2, position_of(number),
                                                      times[(client, index)])  # fmt: skip
        else:
            key = (client, event[2])
            # The registry refuses to revoke what was not given, or twice.
            if key in held and not held[key].revoked:
                held[key] = replace(held[key], revoked=True)
                records[key] = replace(records[key], revoked_at=position_of(number))
        states.append(list(held.values()))
    return FeedbackHistory(list(records.values()), states, times)


def spec_value(
    feedback: list[Feedback], clients: list[str], tag1: str, tag2: str
) -> Decimal | None:
    summary = reputation_summary(feedback, clients, tag1, tag2)
    return None if summary.counted == 0 else Decimal(summary.value).scaleb(-summary.decimals)


def engine_crossings(
    changes: dict[Position, SummaryChange], count: int, operator: str, threshold: Decimal
) -> list[int]:
    """The events at which a trigger with a reputation_threshold fires, given the changes
    (its client list is not read here: the changes are)."""
    rows = parse_conditions([{"condition_type": "reputation_threshold", "field": "reputation",
                              "operator": operator, "value": str(threshold),
                              "config": {"clients": [CLIENTS[0]]}}])  # fmt: skip
    fired = []
    for number in range(count):
        change = changes.get(position_of(number))
        outcome = evaluate_trigger(rows, {}, {}, block_time=T0,
                                   summaries={1: change} if change else {})  # fmt: skip
        if outcome.fired:
            fired.append(number)
    return fired


@settings(max_examples=300, deadline=None)
@given(
    feedback_events,
    st.lists(st.integers(min_value=0, max_value=len(CLIENTS) - 1), min_size=1, max_size=4),
    st.sampled_from(["", "a"]),
    st.sampled_from(["", "x"]),
    st.sampled_from(OPERATORS),
    thresholds,
)
def test_reputation_threshold_fires_exactly_when_the_spec_summary_crosses(
    events: list[tuple[Any, ...]],
    listed: list[int],
    tag1: str,
    tag2: str,
    operator: str,
    threshold: Decimal,
) -> None:
    clients = [CLIENTS[number] for number in listed]  # a client listed twice counts twice
    history = replay_feedback(events)
    values = [spec_value(state, clients, tag1, tag2) for state in history.states]
    # The records are the model's after every event: later feedback and revocations too.
    changes = reputation_changes(history.records, [c.upper().replace("0X", "0x") for c in clients],
                                 [position_of(n) for n in range(len(events))], tag1, tag2)  # fmt: skip
    for number, value in enumerate(values):
        change = changes[position_of(number)]
        assert change.after == value, number
        assert change.before == (values[number - 1] if number else None), number
    assert engine_crossings(changes, len(events), operator, threshold) == reference_crossings(
        values, operator, threshold
    )


@settings(max_examples=100, deadline=None)
@given(feedback_events, st.data())
def test_a_summary_does_not_depend_on_which_events_are_asked_about(
    events: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    """A backtest over a range asks about fewer events than the processor did: each event's
    values are the same."""
    history = replay_feedback(events)
    everything = [position_of(n) for n in range(len(events))]
    some = data.draw(st.lists(st.sampled_from(everything), unique=True))
    everywhere = reputation_changes(history.records, CLIENTS[:2], everything)
    assert reputation_changes(history.records, CLIENTS[:2], some) == {
        position: everywhere[position] for position in some
    }


def test_the_summary_before_and_after_a_crossing_and_the_way_back() -> None:
    """60 from A, then 20 from B (average 40: crosses below 50), then 30 from A (36.66...:
    still below, no second firing), then B's revoked (45: still below), then 90 from B
    (60: back above), then 10 from A (45: crosses again)."""
    events: list[tuple[Any, ...]] = [
        ("give", 0, (60, 0), "", ""),
        ("give", 1, (200, 1), "", ""),
        ("give", 0, (30, 0), "", ""),
        ("revoke", 1, 1),
        ("give", 1, (90, 0), "", ""),
        ("give", 0, (10, 0), "", ""),
    ]
    history = replay_feedback(events)
    changes = reputation_changes(history.records, CLIENTS[:2],
                                 [position_of(n) for n in range(6)])  # fmt: skip
    assert [(c.before, c.after, c.count) for c in changes.values()] == [
        (None, Decimal(60), 1),
        (Decimal(60), Decimal(40), 2),  # m is 0 (a tie goes to the smaller decimals)
        (Decimal(40), Decimal(36), 3),  # 110 / 3, truncated to 0 decimals
        (Decimal(36), Decimal(45), 2),
        (Decimal(45), Decimal(60), 3),
        (Decimal(60), Decimal(47), 4),  # 190 / 4 = 47.5, truncated
    ]
    assert engine_crossings(changes, 6, "<", Decimal(50)) == [1, 5]


# -- validation --------------------------------------------------------------------------------

request = st.tuples(st.just("request"), st.integers(min_value=0, max_value=len(VALIDATORS) - 1))
respond = st.tuples(
    st.just("respond"),
    st.integers(min_value=0, max_value=8),  # a request made, not yet, or never
    st.integers(min_value=0, max_value=100),
    st.sampled_from(["", "soft", "hard"]),
)
validation_events = st.lists(st.one_of(request, respond, respond), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    validation_events,
    st.lists(st.integers(min_value=0, max_value=len(VALIDATORS) - 1), max_size=3),
    st.sampled_from(["", "soft"]),
    st.sampled_from(OPERATORS),
    st.integers(min_value=-1, max_value=101).map(Decimal),
)
def test_validation_threshold_fires_exactly_when_the_validation_summary_crosses(
    events: list[tuple[Any, ...]],
    listed: list[int],
    tag: str,
    operator: str,
    threshold: Decimal,
) -> None:
    validators = [VALIDATORS[number] for number in listed]  # none: any validator
    requests: list[list[Any]] = []  # [validator, latest response, its tag]
    records: list[ResponseRecord] = []
    values: list[Decimal | None] = []
    for number, event in enumerate(events):
        if event[0] == "request":
            requests.append([VALIDATORS[event[1]], None, ""])
        elif event[1] < len(requests):  # a response to a request not made is refused
            requests[event[1]][1:] = [event[2], event[3]]
            records.append(ResponseRecord(f"0x{event[1]:064x}", requests[event[1]][0],
                                          position_of(number), event[2], event[3]))  # fmt: skip
        summary = validation_summary(
            [Validation(v, response, t) for v, response, t in requests], validators, tag
        )
        values.append(Decimal(summary.average) if summary.counted else None)
    changes = validation_changes(records, validators,
                                 [position_of(n) for n in range(len(events))], tag)  # fmt: skip
    rows = parse_conditions([{"condition_type": "validation_threshold", "field": "validation",
                              "operator": operator, "value": str(threshold)}])  # fmt: skip
    fired = []
    for number, value in enumerate(values):
        change = changes[position_of(number)]
        assert (change.before, change.after) == (values[number - 1] if number else None, value)
        outcome = evaluate_trigger(rows, {}, {}, block_time=T0, summaries={1: change})
        if outcome.fired:
            fired.append(number)
            assert outcome.computed["validation_after"] == value
    assert fired == reference_crossings(values, operator, threshold)


# -- lenses ------------------------------------------------------------------------------------

LENSES = [
    Lens(),
    Lens(vote="latest", half_life="5h"),
    Lens(vote="average", allowlist=CLIENTS[:2], tag2="x"),
    Lens(include_revoked=True, half_life="1d"),
]


@settings(max_examples=100, deadline=None)
@given(feedback_events, st.sampled_from(LENSES))
def test_a_lens_is_applied_to_the_feedback_as_of_each_event_at_its_block_time(
    events: list[tuple[Any, ...]], lens: Lens
) -> None:
    history = replay_feedback(events)
    points = [LensPoint(position_of(n), T0 + timedelta(hours=n, minutes=30), {}, {})
              for n in range(len(events))]  # fmt: skip
    changes = lens_changes(lens, history.records, points)

    def reference(state: list[Feedback], now: datetime) -> Decimal | None:
        entries = [FeedbackEntry(f.client, f.index, f.value, f.value_decimals, f.tag1, f.tag2,
                                 f.revoked, history.times[(f.client, f.index)])
                   for f in state]  # fmt: skip
        return apply_lens(lens, entries, {}, now).score

    for number, point in enumerate(points):
        before = history.states[number - 1] if number else []
        change = changes[point.position]
        assert change.after == reference(history.states[number], point.block_time)
        assert change.before == reference(before, point.block_time)
