"""The spec's summaries against a deliberately naive reading of the reference contracts (exact
fractions, truncation spelled out, the int128 cut through bytes), and by hand on the edges."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.agents.summaries import (
    INT128_MAX,
    INT128_MIN,
    Feedback,
    ReputationSummary,
    Validation,
    ValidationSummary,
    clients_by_first_feedback,
    read_all_feedback,
    reputation_summary,
    validation_summary,
)

CLIENTS = ["0xaaa", "0xbbb", "0xccc", "0xddd"]
STRANGER = "0xeee"  # never gives feedback
TAGS = ["", "starred", "Starred", "uptime", "信頼性", "🚀 rápido"]

# -- the naive reference ------------------------------------------------------------------------


def naive_reputation_summary(
    feedback: list[Feedback], clients: list[str], tag1: str, tag2: str
) -> tuple[int, int, int]:
    counted = [
        item
        for client in clients
        for item in feedback
        if item.client == client
        and not item.revoked
        and (tag1 == "" or item.tag1 == tag1)
        and (tag2 == "" or item.tag2 == tag2)
    ]
    if not counted:
        return (0, 0, 0)
    decimals = [item.value_decimals for item in counted]
    mode, best = 0, 0
    for d in range(19):
        if decimals.count(d) > best:
            mode, best = d, decimals.count(d)
    wad_sum = sum(item.value * 10 ** (18 - item.value_decimals) for item in counted)
    average = math.trunc(Fraction(wad_sum, len(counted)))
    value = math.trunc(Fraction(average, 10 ** (18 - mode)))
    cut = int.from_bytes(value.to_bytes(64, "big", signed=True)[-16:], "big", signed=True)
    return (len(counted), cut, mode)


def naive_read_all(
    feedback: list[Feedback],
    order: list[str],
    clients: list[str],
    tag1: str,
    tag2: str,
    include_revoked: bool,
) -> list[Feedback]:
    rows = []
    for client in clients or order:
        for index in range(1, len(feedback) + 1):
            for item in feedback:
                if item.client != client or item.index != index:
                    continue
                if item.revoked and not include_revoked:
                    continue
                if (tag1 and item.tag1 != tag1) or (tag2 and item.tag2 != tag2):
                    continue
                rows.append(item)
    return rows


def naive_validation_summary(
    validations: list[Validation], validators: list[str], tag: str
) -> tuple[int, int]:
    counted = [
        v.response
        for v in validations
        if v.response is not None
        and (not validators or any(v.validator == w for w in validators))
        and (tag == "" or v.tag == tag)
    ]
    if not counted:
        return (0, 0)
    return (len(counted), math.floor(Fraction(sum(counted), len(counted))))


# -- strategies ---------------------------------------------------------------------------------

values = st.one_of(
    st.integers(-1_000, 1_000),
    st.integers(INT128_MIN, INT128_MAX),
    st.sampled_from([INT128_MIN, INT128_MIN + 1, -1, 0, 1, INT128_MAX - 1, INT128_MAX]),
)


@st.composite
def agent_feedback(draw: st.DrawFn) -> list[Feedback]:
    """One agent's feedback in chain order, indexes numbered per client."""
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(CLIENTS),
                values,
                st.integers(0, 18),
                st.sampled_from(TAGS),
                st.sampled_from(TAGS),
                st.booleans(),
            ),
            max_size=25,
        )
    )
    last: dict[str, int] = {}
    feedback = []
    for client, value, decimals, tag1, tag2, revoked in rows:
        last[client] = last.get(client, 0) + 1
        feedback.append(Feedback(client, last[client], value, decimals, tag1, tag2, revoked))
    return feedback


client_lists = st.lists(st.sampled_from([*CLIENTS, STRANGER]), max_size=6)
validations = st.lists(
    st.builds(
        Validation,
        st.sampled_from(["0xv1", "0xv2", "0xv3"]),
        st.one_of(st.none(), st.integers(0, 100), st.sampled_from([0, 100, 255])),
        st.sampled_from(TAGS),
    ),
    max_size=20,
)

# -- properties ---------------------------------------------------------------------------------


@given(
    agent_feedback(),
    client_lists.filter(bool),
    st.sampled_from(TAGS),
    st.sampled_from(TAGS),
    st.randoms(),
)
def test_reputation_summary_is_the_naive_one(
    feedback: list[Feedback], clients: list[str], tag1: str, tag2: str, rng: random.Random
) -> None:
    expected = naive_reputation_summary(feedback, clients, tag1, tag2)
    assert reputation_summary(feedback, clients, tag1, tag2) == expected
    shuffled = rng.sample(feedback, len(feedback))  # records in any order
    assert reputation_summary(shuffled, clients, tag1, tag2) == expected


@given(
    agent_feedback(),
    client_lists,
    st.sampled_from(TAGS),
    st.sampled_from(TAGS),
    st.booleans(),
    st.randoms(),
)
def test_read_all_feedback_is_the_naive_one(
    feedback: list[Feedback],
    clients: list[str],
    tag1: str,
    tag2: str,
    include_revoked: bool,
    rng: random.Random,
) -> None:
    order = list(clients_by_first_feedback(feedback))
    expected = naive_read_all(feedback, order, clients, tag1, tag2, include_revoked)
    shuffled = rng.sample(feedback, len(feedback))
    assert read_all_feedback(shuffled, order, clients, tag1, tag2, include_revoked) == expected


@given(validations, st.lists(st.sampled_from(["0xv1", "0xv2", "0xv4"])), st.sampled_from(TAGS))
def test_validation_summary_is_the_naive_one(
    requests: list[Validation], validators: list[str], tag: str
) -> None:
    expected = naive_validation_summary(requests, validators, tag)
    assert validation_summary(requests, validators, tag) == expected


# -- reputation by hand -------------------------------------------------------------------------


def fb(
    value: int,
    decimals: int = 0,
    *,
    client: str = "0xaaa",
    index: int = 1,
    tag1: str = "",
    tag2: str = "",
    revoked: bool = False,
) -> Feedback:
    return Feedback(client, index, value, decimals, tag1, tag2, revoked)


def test_negative_averages_truncate_toward_zero_not_down() -> None:
    feedback = [fb(-1, index=1), fb(-2, index=2)]  # -1.5: Solidity says -1, // says -2
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(2, -1, 0)
    # -1/3: each division truncates toward zero (0 here), where floor division gives -1.
    feedback = [fb(-1, index=1), fb(0, index=2), fb(0, index=3)]
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(3, 0, 0)
    feedback = [fb(-5, 1, index=1), fb(-1, 18, index=2), fb(0, 1, index=3)]
    # (-5e17 - 1 + 0) / 3 = -166666666666666667 (toward zero), then / 1e17 -> -1 (not -2).
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(3, -1, 1)


def test_the_decimals_are_the_most_frequent_and_the_smallest_on_a_tie() -> None:
    feedback = [fb(1234, 2, index=1), fb(5, 5, index=2)]  # 12.34 and 0.00005
    # WAD average (12.34e18 + 5e13) / 2 = 6.170025e18 -> 2 decimals: 617.
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(2, 617, 2)
    feedback = [fb(1234, 2, index=1), fb(5, 5, index=2), fb(7, 5, index=3)]
    # Mode 5: (12.34e18 + 5e13 + 7e13) / 3 = 4.11337333...e18 -> 411337 (5 decimals).
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(3, 411337, 5)
    feedback = [fb(9, 18, index=1), fb(1, 0, index=2)]  # a tie between 18 and 0: 0
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(2, 0, 0)


def test_tags_empty_filter_matches_any_and_others_match_exactly() -> None:
    feedback = [
        fb(10, index=1, tag1="starred", tag2="day"),
        fb(20, index=2, tag1="Starred", tag2=""),
        fb(30, index=3, tag1="", tag2="day"),
        fb(40, index=4, tag1="信頼性", tag2="🚀 rápido"),
    ]
    clients = ["0xaaa"]
    assert reputation_summary(feedback, clients) == ReputationSummary(4, 25, 0)
    assert reputation_summary(feedback, clients, "starred") == ReputationSummary(1, 10, 0)
    assert reputation_summary(feedback, clients, "", "day") == ReputationSummary(2, 20, 0)
    assert reputation_summary(feedback, clients, "信頼性", "🚀 rápido") == (1, 40, 0)
    assert reputation_summary(feedback, clients, "starred", "week") == (0, 0, 0)


def test_revoked_feedback_and_unlisted_clients_do_not_count() -> None:
    feedback = [
        fb(100, client="0xaaa", index=1, revoked=True),
        fb(50, client="0xaaa", index=2),
        fb(-70, client="0xbbb", index=1),
    ]
    assert reputation_summary(feedback, ["0xaaa"]) == ReputationSummary(1, 50, 0)
    assert reputation_summary(feedback, ["0xbbb", "0xaaa"]) == ReputationSummary(2, -10, 0)
    assert reputation_summary(feedback, ["0xeee"]) == ReputationSummary(0, 0, 0)
    assert reputation_summary([], ["0xaaa"]) == ReputationSummary(0, 0, 0)
    only_revoked = [fb(100, index=1, revoked=True)]
    assert reputation_summary(only_revoked, ["0xaaa"]) == ReputationSummary(0, 0, 0)


def test_a_client_listed_twice_counts_twice() -> None:
    feedback = [fb(10, client="0xaaa"), fb(40, client="0xbbb")]
    assert reputation_summary(feedback, ["0xaaa", "0xbbb"]) == ReputationSummary(2, 25, 0)
    assert reputation_summary(feedback, ["0xaaa", "0xaaa", "0xbbb"]) == (3, 20, 0)


def test_empty_client_list_is_refused_as_the_contract_reverts() -> None:
    with pytest.raises(ValueError, match="clientAddresses required"):
        reputation_summary([fb(1)], [])


def test_extreme_int128_values() -> None:
    assert reputation_summary([fb(INT128_MAX)], ["0xaaa"]) == (1, INT128_MAX, 0)
    assert reputation_summary([fb(INT128_MIN)], ["0xaaa"]) == (1, INT128_MIN, 0)
    assert reputation_summary([fb(INT128_MIN, 18)], ["0xaaa"]) == (1, INT128_MIN, 18)
    both = [fb(INT128_MAX, index=1), fb(INT128_MIN, index=2)]
    assert reputation_summary(both, ["0xaaa"]) == (2, 0, 0)  # -0.5 truncates to 0
    # The 18-decimal average of a huge whole number, in 18 decimals, leaves int128: Solidity's
    # int128(...) keeps the low 128 bits, and so do we.
    huge = [fb(INT128_MAX, 0, index=1), fb(0, 18, index=2), fb(0, 18, index=3)]
    exact = INT128_MAX * 10**18 // 3
    assert exact > INT128_MAX
    cut = (exact + 2**127) % 2**128 - 2**127
    assert reputation_summary(huge, ["0xaaa"]) == (3, cut, 18)
    negative = [fb(INT128_MIN, 0, index=1), fb(0, 18, index=2), fb(0, 18, index=3)]
    exact = -(-INT128_MIN * 10**18 // 3)
    assert reputation_summary(negative, ["0xaaa"]) == (3, (exact + 2**127) % 2**128 - 2**127, 18)


def test_records_that_cannot_exist_are_refused() -> None:
    with pytest.raises(ValueError, match="valueDecimals 19"):
        fb(1, 19)
    with pytest.raises(ValueError, match="int128"):
        fb(INT128_MAX + 1)
    with pytest.raises(ValueError, match="int128"):
        fb(INT128_MIN - 1)
    with pytest.raises(ValueError, match="indexes start at 1"):
        fb(1, index=0)
    with pytest.raises(ValueError, match="same index"):
        reputation_summary([fb(1), fb(2)], ["0xaaa"])


# -- readAllFeedback by hand --------------------------------------------------------------------


def test_read_all_feedback_orders_clients_by_first_feedback_then_index() -> None:
    in_chain_order = [
        fb(1, client="0xccc", index=1),
        fb(2, client="0xaaa", index=1, tag1="starred"),
        fb(3, client="0xccc", index=2, revoked=True),
        fb(4, client="0xbbb", index=1),
        fb(5, client="0xaaa", index=2),
    ]
    order = clients_by_first_feedback(in_chain_order)
    assert order == ("0xccc", "0xaaa", "0xbbb")
    records = list(reversed(in_chain_order))

    def values(clients: list[str], tag1: str = "", include_revoked: bool = False) -> list[int]:
        rows = read_all_feedback(records, order, clients, tag1, "", include_revoked)
        return [row.value for row in rows]

    assert values([]) == [1, 2, 5, 4]
    assert values([], include_revoked=True) == [1, 3, 2, 5, 4]
    assert values(["0xbbb", "0xccc"]) == [4, 1]  # the listed order
    assert values(["0xaaa", "0xaaa"]) == [2, 5, 2, 5]
    assert values(["0xeee"]) == []
    assert values([], tag1="starred") == [2]
    assert values([], tag1="nothing") == []


def test_read_all_feedback_needs_every_client_in_the_order() -> None:
    records = [fb(1, client="0xaaa"), fb(2, client="0xbbb")]
    with pytest.raises(ValueError, match="client_order"):
        read_all_feedback(records, ["0xaaa"])
    with pytest.raises(ValueError, match="client_order"):
        read_all_feedback(records, ["0xaaa", "0xbbb", "0xaaa"])


# -- validation by hand -------------------------------------------------------------------------


def test_validation_average_rounds_down_over_answered_requests() -> None:
    requests = [
        Validation("0xv1", 100, "zkml"),
        Validation("0xv1", 0, "tee"),
        Validation("0xv2", 51, "zkml"),
        Validation("0xv2", None),  # not answered: does not count
    ]
    assert validation_summary(requests) == ValidationSummary(3, 50)  # 151 / 3 = 50.33
    assert validation_summary(requests, ["0xv2"]) == ValidationSummary(1, 51)
    assert validation_summary(requests, ["0xv2", "0xv2"]) == ValidationSummary(1, 51)
    assert validation_summary(requests, [], "zkml") == ValidationSummary(2, 75)  # 75.5
    assert validation_summary(requests, ["0xv1"], "tee") == ValidationSummary(1, 0)
    assert validation_summary(requests, ["0xv3"]) == ValidationSummary(0, 0)
    assert validation_summary(requests, [], "none") == ValidationSummary(0, 0)
    assert validation_summary([]) == ValidationSummary(0, 0)


def test_validation_responses_are_uint8() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Validation("0xv1", -1)
    with pytest.raises(ValueError, match="uint8"):
        Validation("0xv1", 256)
