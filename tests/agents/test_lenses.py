"""Reputation lenses: the Lens model refuses what it cannot run, naming the field;
apply_lens counts, leaves out and weighs feedback as the lens says, explains it, and stays
exact; the distribution, trend and activity helpers describe a set of feedback."""

from __future__ import annotations

import decimal
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.agents.lenses import (
    DEFAULT_EDGES,
    EXCLUSION_REASONS,
    SCORE_PLACES,
    TREND_ORIGIN,
    WEIGHT_DIGITS,
    ClientHistory,
    FeedbackEntry,
    Lens,
    LensError,
    activity,
    age_seconds,
    apply_lens,
    bucket_start,
    decay_weight,
    normalized_score,
    parse_lens,
    round_places,
    score_distribution,
    trend,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b2" * 20
CAROL = "0x" + "c3" * 20
DAVE = "0x" + "d4" * 20
CLIENTS = (ALICE, BOB, CAROL, DAVE)
INT128 = 2**127


def feedback(
    client: str = ALICE,
    index: int = 1,
    value: int = 80,
    decimals: int = 0,
    *,
    tag1: str = "",
    tag2: str = "",
    revoked: bool = False,
    age: timedelta = timedelta(0),
    responses: int = 0,
) -> FeedbackEntry:
    return FeedbackEntry(client, index, value, decimals, tag1, tag2, revoked, NOW - age, responses)


def lens(**fields: Any) -> Lens:
    return parse_lens(fields)


# -- the lens -------------------------------------------------------------------------------


def test_the_empty_lens_counts_every_non_revoked_feedback_once_undecayed() -> None:
    empty = Lens()
    assert empty.allowlist is None
    assert (empty.min_feedback, empty.min_agents) == (0, 0)
    assert empty.vote == "each"
    assert empty.half_life is None
    assert empty.half_life_seconds is None
    assert (empty.tag1, empty.tag2, empty.include_revoked, empty.explain_top) == (
        None, None, False, 5,
    )  # fmt: skip
    assert not empty.needs_client_history


def test_allowlist_addresses_are_lowercased_and_listed_once() -> None:
    upper = "0x" + "AB" * 20
    parsed = lens(allowlist=[upper, "0x" + "ab" * 20, ALICE])
    assert parsed.allowlist == ["0x" + "ab" * 20, ALICE]


def test_half_life_is_a_duration_as_rate_limits_write_them() -> None:
    assert lens(half_life="30d").half_life_seconds == 30 * 86400
    assert lens(half_life="12h").half_life_seconds == 12 * 3600
    assert lens(half_life="90s").half_life_seconds == 90
    spaced = lens(half_life=" 15 m ")
    assert spaced.half_life == "15m"
    assert spaced.half_life_seconds == 900


def test_empty_tags_match_any_as_in_the_spec() -> None:
    assert lens(tag1="", tag2="").tag1 is None
    assert lens(tag1="", tag2="").tag2 is None
    assert lens(tag1="quality").tag1 == "quality"


@pytest.mark.parametrize(
    ("definition", "field", "message"),
    [
        ({"allowlist": [ALICE, "0x12"]}, "allowlist[1]", "must be an address"),
        ({"allowlist": ["a1" * 20]}, "allowlist[0]", "must be an address"),
        ({"allowlist": []}, "allowlist", "at least 1 item"),
        ({"allowlist": [ALICE] * 1001}, "allowlist", "at most 1000 items"),
        ({"allowlist": ALICE}, "allowlist", "valid list"),
        ({"min_feedback": -1}, "min_feedback", "greater than or equal to 0"),
        ({"min_feedback": "3"}, "min_feedback", "valid integer"),
        ({"min_agents": 2.5}, "min_agents", "valid integer"),
        ({"min_agents": True}, "min_agents", "valid integer"),
        ({"vote": "median"}, "vote", "'each', 'latest' or 'average'"),
        ({"half_life": "1w"}, "half_life", 'a duration like "12h" or "30d"'),
        ({"half_life": "0d"}, "half_life", "a whole number above 0"),
        ({"half_life": "9" * 20 + "s"}, "half_life", "a duration like"),
        ({"half_life": 30}, "half_life", "valid string"),
        ({"tag1": "x" * 1001}, "tag1", "at most 1000 characters"),
        ({"include_revoked": 1}, "include_revoked", "valid boolean"),
        ({"explain_top": 101}, "explain_top", "less than or equal to 100"),
        ({"clients": [ALICE]}, "clients", "Extra inputs are not permitted"),
    ],
)
def test_a_lens_it_cannot_run_is_refused_naming_the_field(
    definition: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(LensError) as refused:
        parse_lens(definition)
    assert [detail["field"] for detail in refused.value.details] == [field]
    assert message in refused.value.details[0]["message"]
    assert str(refused.value).startswith(f"{field}: ")


def test_every_problem_is_named_and_placed_where_the_caller_says() -> None:
    with pytest.raises(LensError) as refused:
        parse_lens({"vote": "most", "allowlist": ["x"], "half_life": "soon"}, where="lens")
    assert sorted(detail["field"] for detail in refused.value.details) == [
        "lens.allowlist[0]", "lens.half_life", "lens.vote",
    ]  # fmt: skip
    with pytest.raises(LensError) as not_an_object:
        parse_lens(["each"], where="lens")
    assert not_an_object.value.details[0]["field"] == "lens"


def test_a_lens_survives_its_json_form() -> None:
    original = lens(allowlist=[ALICE.upper().replace("0X", "0x")], min_feedback=3, min_agents=2,
                    vote="average", half_life="30d", tag1="quality", tag2="",
                    include_revoked=True, explain_top=10)  # fmt: skip
    assert parse_lens(original.model_dump(mode="json")) == original


# -- exact scores ---------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", range(19))
def test_a_score_is_value_over_ten_to_the_decimals_exactly(decimals: int) -> None:
    for value in (0, 1, -1, 12345, INT128 - 1, -INT128):
        exact = Fraction(value, 10**decimals)
        assert Fraction(normalized_score(value, decimals)) == exact
        result = apply_lens(Lens(), [feedback(value=value, decimals=decimals)], {}, NOW)
        assert result.score is not None
        assert Fraction(result.score) == exact  # one feedback: its score, not rounded


def test_averages_are_exact_then_rounded_once_half_to_even() -> None:
    # (2 + 1e-18) / 2 = 1.0000000000000000005: half of the last place, rounded to even.
    mixed = [feedback(ALICE, value=2), feedback(BOB, value=1, decimals=18)]
    assert apply_lens(Lens(), mixed, {}, NOW).score == Decimal("1.000000000000000000")
    # (2 + 3e-18) / 2 = 1.0000000000000000015 -> ...002 (even).
    mixed = [feedback(ALICE, value=2), feedback(BOB, value=3, decimals=18)]
    assert apply_lens(Lens(), mixed, {}, NOW).score == Decimal("1.000000000000000002")
    thirds = [feedback(ALICE, value=1), feedback(BOB, value=0), feedback(CAROL, value=0)]
    assert apply_lens(Lens(), thirds, {}, NOW).score == Decimal("0.333333333333333333")
    # 0.1 + 0.2 in floats is 0.30000000000000004; here it is what it says.
    tenths = [feedback(ALICE, value=1, decimals=1), feedback(BOB, value=2, decimals=1)]
    assert apply_lens(Lens(), tenths, {}, NOW).score == Decimal("0.15")


def test_negative_values_count_as_they_are() -> None:
    result = apply_lens(Lens(), [feedback(ALICE, value=-5), feedback(BOB, value=10, decimals=1)],
                        {}, NOW)  # fmt: skip
    assert result.score == Decimal(-2)
    extremes = [feedback(ALICE, value=-INT128), feedback(BOB, value=INT128 - 1)]
    assert apply_lens(Lens(), extremes, {}, NOW).score == Decimal("-0.5")


# -- what counts and why --------------------------------------------------------------------


def test_no_feedback_gives_no_score_and_an_empty_explanation() -> None:
    result = apply_lens(lens(vote="latest", half_life="1d"), [], {}, NOW)
    assert result.score is None
    assert result.counted == ()
    explain = result.explain
    assert (explain.total, explain.counted, explain.clients_counted) == (0, 0, 0)
    assert dict(explain.excluded) == dict.fromkeys(EXCLUSION_REASONS, 0)
    assert explain.top_clients == ()
    assert explain.total_weight == 0


def test_when_everything_is_left_out_there_is_no_score_but_the_reasons() -> None:
    given = [feedback(ALICE, 1, revoked=True), feedback(BOB, 1), feedback(CAROL, 1, tag1="x")]
    result = apply_lens(lens(allowlist=[ALICE, CAROL], tag1="y"), given, {}, NOW)
    assert result.score is None
    assert dict(result.explain.excluded) == {
        "revoked": 1, "untrusted_client": 1, "tag_mismatch": 1, "superseded": 0,
    }  # fmt: skip
    assert result.explain.untrusted_clients == 1
    assert result.explain.top_clients == ()


def test_revoked_feedback_is_left_out_unless_asked_for() -> None:
    given = [feedback(ALICE, 1, value=100, revoked=True), feedback(BOB, 1, value=50)]
    assert apply_lens(Lens(), given, {}, NOW).score == Decimal(50)
    with_revoked = apply_lens(lens(include_revoked=True), given, {}, NOW)
    assert with_revoked.score == Decimal(75)
    assert with_revoked.explain.excluded["revoked"] == 0


def test_each_feedback_is_counted_under_the_first_reason_that_applies() -> None:
    # Revoked, from an untrusted client, with the wrong tag: counted once, as revoked.
    given = [feedback(BOB, 1, revoked=True, tag1="x")]
    result = apply_lens(lens(allowlist=[ALICE], tag1="y"), given, {}, NOW)
    assert result.explain.excluded["revoked"] == 1
    assert result.explain.excluded_total == 1
    assert result.explain.untrusted_clients == 0  # never looked at as untrusted


def test_clients_are_trusted_by_their_history_across_the_chain() -> None:
    history = {
        ALICE: ClientHistory(feedback_count=10, distinct_agents=4),
        BOB: ClientHistory(feedback_count=10, distinct_agents=1),  # one agent only
        CAROL: ClientHistory(feedback_count=2, distinct_agents=2),  # too few feedback
    }
    given = [feedback(ALICE, 1, value=90), feedback(BOB, 1, value=10), feedback(BOB, 2, value=10),
             feedback(CAROL, 1, value=10), feedback(DAVE, 1, value=10)]  # fmt: skip
    result = apply_lens(lens(min_feedback=3, min_agents=2), given, history, NOW)
    assert result.score == Decimal(90)
    assert result.explain.excluded["untrusted_client"] == 4
    assert result.explain.untrusted_clients == 3  # Dave has no history at all
    # The allowlist and the history minimums both apply.
    both = apply_lens(lens(allowlist=[BOB, CAROL], min_feedback=3), given, history, NOW)
    assert both.score == Decimal(10)
    assert [c.client for c in both.explain.top_clients] == [BOB]


def test_client_addresses_are_one_client_in_any_case() -> None:
    shouting = "0x" + "A1" * 20
    given = [feedback(ALICE, 1, value=10), feedback(shouting, 2, value=20)]
    result = apply_lens(lens(allowlist=[shouting], vote="latest"), given, {}, NOW)
    assert result.score == Decimal(20)
    assert result.explain.clients_counted == 1
    assert result.explain.excluded["superseded"] == 1
    assert result.explain.top_clients[0].client == ALICE


def test_tags_filter_feedback() -> None:
    given = [
        feedback(ALICE, 1, value=10, tag1="quality", tag2="speed"),
        feedback(ALICE, 2, value=20, tag1="quality", tag2="price"),
        feedback(BOB, 1, value=30, tag1="uptime", tag2="speed"),
    ]
    assert apply_lens(lens(tag1="quality"), given, {}, NOW).score == Decimal(15)
    assert apply_lens(lens(tag2="speed"), given, {}, NOW).score == Decimal(20)
    both = apply_lens(lens(tag1="quality", tag2="speed"), given, {}, NOW)
    assert both.score == Decimal(10)
    assert both.explain.excluded["tag_mismatch"] == 2
    assert apply_lens(lens(tag1="Quality"), given, {}, NOW).score is None  # tags are exact


def test_latest_counts_each_clients_latest_standing_feedback() -> None:
    given = [
        feedback(ALICE, 3, value=30, revoked=True),  # the latest, withdrawn
        feedback(ALICE, 2, value=20, age=DAY),
        feedback(ALICE, 1, value=10, age=2 * DAY),
        feedback(BOB, 1, value=90),
    ]
    result = apply_lens(lens(vote="latest"), given, {}, NOW)
    assert result.score == Decimal(55)  # Alice's 20 and Bob's 90
    assert result.explain.excluded["superseded"] == 1
    assert result.explain.excluded["revoked"] == 1
    assert [c.feedback.feedback_index for c in result.counted] == [2, 1]
    assert [c.feedback.client for c in result.counted] == [ALICE, BOB]


def test_average_gives_each_client_one_vote_however_much_feedback_it_gave() -> None:
    given = [feedback(ALICE, i, value=100) for i in range(1, 10)] + [feedback(BOB, 1, value=0)]
    assert apply_lens(Lens(), given, {}, NOW).score == Decimal(90)  # each: Alice's nine
    result = apply_lens(lens(vote="average"), given, {}, NOW)
    assert result.score == Decimal(50)
    assert result.explain.excluded_total == 0
    weights = {c.client: c.weight for c in result.explain.top_clients}
    assert weights == {ALICE: Decimal(1), BOB: Decimal(1)}
    nineths = {c.weight for c in result.counted if c.feedback.client == ALICE}
    assert nineths == {Decimal("0." + "1" * WEIGHT_DIGITS)}  # 1/9, to WEIGHT_DIGITS digits


def test_a_feedback_one_half_life_old_weighs_half() -> None:
    given = [feedback(ALICE, 1, value=100), feedback(BOB, 1, value=0, age=30 * DAY)]
    result = apply_lens(lens(half_life="30d"), given, {}, NOW)
    assert [c.weight for c in result.counted] == [Decimal(1), Decimal("0.5")]
    assert result.score == Decimal("66.666666666666666667")  # 100 x 1 / 1.5
    assert decay_weight(Decimal(60 * 86400), 30 * 86400) == Decimal("0.25")
    assert decay_weight(Decimal(45 * 86400), 30 * 86400) == Decimal(
        "0.3535533905932737622004221810524245"
    )  # 2^-1.5, to 34 digits


def test_feedback_from_after_now_is_new() -> None:
    ahead = [feedback(ALICE, 1, value=10, age=-DAY)]
    result = apply_lens(lens(half_life="1h"), ahead, {}, NOW)
    assert result.counted[0].weight == 1
    assert age_seconds(NOW + DAY, NOW) == 0


def test_feedback_ages_beyond_counting_still_weigh_something() -> None:
    """Ten years of one-second half-lives: a weight of about 10^-94,000,000, not nothing."""
    given = [feedback(ALICE, 1, value=10, age=3650 * DAY),
             feedback(BOB, 1, value=20, age=7300 * DAY)]  # fmt: skip
    result = apply_lens(lens(half_life="1s"), given, {}, NOW)
    assert result.score == Decimal(10)  # Bob's weighs nothing next to Alice's
    assert all(0 < c.weight < Decimal("1e-90000000") for c in result.counted)
    alone = apply_lens(lens(half_life="1s"), given[1:], {}, NOW)
    assert alone.score == Decimal(20)  # however light, the only vote decides


def test_explain_lists_the_clients_that_weigh_most() -> None:
    given = [feedback(ALICE, 1, value=100), feedback(ALICE, 2, value=50),
             feedback(BOB, 1, value=10), feedback(CAROL, 1, value=40, age=10 * DAY),
             feedback(DAVE, 1, value=70, age=20 * DAY)]  # fmt: skip
    result = apply_lens(lens(half_life="10d", explain_top=3), given, {}, NOW)
    top = result.explain.top_clients
    assert [c.client for c in top] == [ALICE, BOB, CAROL]
    alice = top[0]
    assert (alice.feedback_counted, alice.weight, alice.value) == (2, Decimal(2), Decimal(75))
    assert top[2].weight == Decimal("0.5")
    # Total weight 2 + 1 + 0.5 + 0.25 = 3.75.
    assert result.explain.total_weight == Decimal("3.75")
    assert alice.share == Decimal("0.5" + "3" * (WEIGHT_DIGITS - 1))  # 2 / 3.75
    assert alice.contribution == round_places(Fraction(150, 1) / Fraction(375, 100), 18)
    assert result.score == round_places(Fraction(150 + 10 + 20 + Fraction(70, 4), 1)
                                        / Fraction(375, 100), SCORE_PLACES)  # fmt: skip
    assert apply_lens(lens(explain_top=0), given, {}, NOW).explain.top_clients == ()
    # Equal weights: by address.
    tied = apply_lens(Lens(), [feedback(c, 1) for c in reversed(CLIENTS)], {}, NOW)
    assert [c.client for c in tied.explain.top_clients] == list(CLIENTS)


# -- properties -----------------------------------------------------------------------------

HALF_LIVES = (None, "1s", "1h", "12h", "30d", "999999999d")
TAGS = ("", "quality", "speed")


def mixed_case(address: str) -> st.SearchStrategy[str]:
    return st.sampled_from([address, "0x" + address[2:].upper()])


@st.composite
def feedback_lists(draw: st.DrawFn, max_size: int = 25) -> list[FeedbackEntry]:
    size = draw(st.integers(0, max_size))
    entries = []
    next_index: Counter[str] = Counter()
    for _ in range(size):
        client = draw(st.sampled_from(CLIENTS))
        next_index[client] += 1
        entries.append(FeedbackEntry(
            client=draw(mixed_case(client)),
            feedback_index=next_index[client],
            value=draw(st.one_of(st.integers(-100, 100),
                                 st.integers(-INT128, INT128 - 1))),
            value_decimals=draw(st.integers(0, 18)),
            tag1=draw(st.sampled_from(TAGS)),
            tag2=draw(st.sampled_from(TAGS)),
            revoked=draw(st.booleans()),
            block_time=NOW - timedelta(seconds=draw(st.integers(-3600, 400 * 86400))),
            response_count=draw(st.integers(0, 2)),
        ))  # fmt: skip
    return draw(st.permutations(entries))


@st.composite
def lenses(draw: st.DrawFn) -> Lens:
    fields: dict[str, Any] = {
        "vote": draw(st.sampled_from(["each", "latest", "average"])),
        "half_life": draw(st.sampled_from(HALF_LIVES)),
        "include_revoked": draw(st.booleans()),
        "explain_top": 100,
    }
    if draw(st.booleans()):
        fields["allowlist"] = draw(st.lists(st.sampled_from(CLIENTS), min_size=1, unique=True))
    if draw(st.booleans()):
        fields["min_feedback"] = draw(st.integers(0, 4))
        fields["min_agents"] = draw(st.integers(0, 4))
    for tag in ("tag1", "tag2"):
        if draw(st.booleans()):
            fields[tag] = draw(st.sampled_from(TAGS))
    return parse_lens(fields)


histories = st.dictionaries(
    st.sampled_from(CLIENTS), st.builds(ClientHistory, st.integers(0, 5), st.integers(0, 5))
)


def counts_as_trusted(the_lens: Lens, client: str, history: dict[str, ClientHistory]) -> bool:
    client = client.lower()
    if the_lens.allowlist is not None and client not in the_lens.allowlist:
        return False
    known = history.get(client, ClientHistory(0, 0))
    return known.feedback_count >= the_lens.min_feedback and (
        known.distinct_agents >= the_lens.min_agents
    )


@given(lenses(), feedback_lists(), histories)
def test_every_feedback_is_counted_or_excluded_for_one_reason(
    the_lens: Lens, given: list[FeedbackEntry], history: dict[str, ClientHistory]
) -> None:
    result = apply_lens(the_lens, given, history, NOW)
    explain = result.explain
    assert explain.total == len(given)
    assert explain.counted == len(result.counted)
    assert explain.counted + explain.excluded_total == explain.total
    assert list(explain.excluded) == list(EXCLUSION_REASONS)
    assert (result.score is None) == (explain.counted == 0)
    for counted in result.counted:
        entry = counted.feedback
        assert the_lens.include_revoked or not entry.revoked
        assert counts_as_trusted(the_lens, entry.client, history)
        assert the_lens.tag1 in (None, entry.tag1)
        assert the_lens.tag2 in (None, entry.tag2)
    if the_lens.vote != "latest":
        assert explain.excluded["superseded"] == 0
    assert explain.clients_counted == len({c.feedback.client.lower() for c in result.counted})


@given(feedback_lists(), st.lists(st.sampled_from(CLIENTS), min_size=1, unique=True))
def test_an_allowlist_leaves_out_the_others_and_explain_counts_them(
    given: list[FeedbackEntry], allowlist: list[str]
) -> None:
    result = apply_lens(lens(allowlist=allowlist, include_revoked=True), given, {}, NOW)
    outside = [entry for entry in given if entry.client.lower() not in allowlist]
    assert result.explain.excluded["untrusted_client"] == len(outside)
    assert result.explain.untrusted_clients == len({entry.client.lower() for entry in outside})
    assert {c.feedback.client.lower() for c in result.counted} <= set(allowlist)
    assert result.explain.counted == len(given) - len(outside)


# Decay weights reach 10^-10,000,000 (400 days of one-second half-lives): compared as
# Decimals, in a context that takes any exponent (as fractions they would be numbers of ten
# million digits).
WIDE = decimal.Context(prec=60, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX)


def wide_sum(values: list[Decimal]) -> Decimal:
    total = Decimal(0)
    for value in values:
        total = WIDE.add(total, value)
    return total


def close(actual: Decimal, expected: Decimal) -> bool:
    """Equal to 32 significant digits (weights have WEIGHT_DIGITS = 34)."""
    with decimal.localcontext(WIDE):
        return abs(actual - expected) <= abs(expected) * Decimal("1e-32")


def as_decayed(weight: Decimal, entry: FeedbackEntry, newest: datetime, half_life: int) -> bool:
    """Whether `weight` is the feedback's decay weight to a double's precision, where its
    weight relative to the newest counted feedback underflows a double (over a thousand
    half-lives older), at least that and at most the smallest double relative to it."""
    expected = decay_weight(age_seconds(entry.block_time, NOW), half_life)
    half_lives = max(0.0, (newest - entry.block_time).total_seconds() / half_life)
    # A double's exponent x carries a relative error of about x ln 2 x 2^-53 into 0.5^x.
    error = Decimal("1e-15") * (1 + Decimal(half_lives))
    with decimal.localcontext(WIDE):
        low, high = expected * (1 - error), expected * (1 + error)
        if half_lives > 1000:
            smallest = Decimal(2) ** -1074 * decay_weight(age_seconds(newest, NOW), half_life)
            high = max(high, smallest * (1 + error))
        return low <= weight <= high


@given(feedback_lists(), st.sampled_from(HALF_LIVES), st.sampled_from(["latest", "average"]))
def test_one_vote_per_client_weighs_one_or_its_decay_weight(
    given: list[FeedbackEntry], half_life: str | None, vote: str
) -> None:
    the_lens = lens(vote=vote, half_life=half_life, include_revoked=True, explain_top=100)
    result = apply_lens(the_lens, given, {}, NOW)
    by_client: dict[str, list[FeedbackEntry]] = {}
    for counted in result.counted:
        by_client.setdefault(counted.feedback.client.lower(), []).append(counted.feedback)
    assert {c.client for c in result.explain.top_clients} == set(by_client)
    half_life_seconds = the_lens.half_life_seconds
    newest = min(NOW, max((c.feedback.block_time for c in result.counted), default=NOW))
    for client in result.explain.top_clients:
        entries = by_client[client.client]
        if vote == "latest":
            assert len(entries) == 1
            latest = max((e for e in given if e.client.lower() == client.client),
                         key=lambda e: e.feedback_index)  # fmt: skip
            assert entries == [latest]
        if half_life_seconds is None:
            assert client.weight == 1
        else:
            # Each feedback weighs its decay weight; a client's vote, their mean.
            own = [c for c in result.counted if c.feedback.client.lower() == client.client]
            for item in own:
                share = WIDE.multiply(item.weight, len(own) if vote == "average" else 1)
                assert as_decayed(share, item.feedback, newest, half_life_seconds)
        # Its feedback's weights add up to its vote's.
        parts = [c.weight for c in result.counted if c.feedback.client.lower() == client.client]
        assert close(wide_sum(parts), client.weight)


@given(feedback_lists(), st.sampled_from(["each", "latest", "average"]))
def test_without_decay_the_score_is_the_exact_average_rounded_once(
    given: list[FeedbackEntry], vote: str
) -> None:
    result = apply_lens(lens(vote=vote), given, {}, NOW)
    votes: dict[str, list[Fraction]] = {}
    for counted in result.counted:
        votes.setdefault(counted.feedback.client.lower(), []).append(
            Fraction(counted.feedback.score)
        )
    if vote == "average":
        values = [sum(scores, Fraction(0)) / len(scores) for scores in votes.values()]
    else:
        values = [score for scores in votes.values() for score in scores]
    if not values:
        assert result.score is None
        return
    assert result.score == round_places(sum(values, Fraction(0)) / len(values), SCORE_PLACES)


@given(feedback_lists(), st.sampled_from(["each", "latest", "average"]),
       st.sampled_from(HALF_LIVES[1:]))  # fmt: skip
def test_decay_changes_nothing_when_every_feedback_is_equally_old(
    given: list[FeedbackEntry], vote: str, half_life: str
) -> None:
    same_age = [FeedbackEntry(e.client, e.feedback_index, e.value, e.value_decimals, e.tag1, e.tag2,
                              e.revoked, NOW - DAY) for e in given]  # fmt: skip
    undecayed = apply_lens(lens(vote=vote), same_age, {}, NOW)
    decayed = apply_lens(lens(vote=vote, half_life=half_life), same_age, {}, NOW)
    assert decayed.score == undecayed.score
    assert [c.feedback for c in decayed.counted] == [c.feedback for c in undecayed.counted]


@given(feedback_lists(), st.sampled_from(["each", "latest", "average"]))
def test_an_endless_half_life_is_no_decay(given: list[FeedbackEntry], vote: str) -> None:
    undecayed = apply_lens(lens(vote=vote), given, {}, NOW)
    # 999999999 days: over 400 days a weight changes by less than 1 in 2 million.
    barely = apply_lens(lens(vote=vote, half_life="999999999d"), given, {}, NOW)
    if undecayed.score is None:
        assert barely.score is None
        return
    assert barely.score is not None
    scores = [c.feedback.score for c in undecayed.counted]
    spread = max(scores) - min(scores)
    assert abs(barely.score - undecayed.score) <= spread / 2_000_000 + Decimal("1e-18")


@given(lenses(), feedback_lists(), histories)
def test_the_score_is_a_weighted_average_of_the_counted_scores(
    the_lens: Lens, given: list[FeedbackEntry], history: dict[str, ClientHistory]
) -> None:
    result = apply_lens(the_lens, given, history, NOW)
    if result.score is None:
        return
    scores = [c.feedback.score for c in result.counted]
    assert min(scores) <= result.score <= max(scores)
    # Every client is listed (explain_top 100): their contributions add up to the score.
    top = result.explain.top_clients
    contributions = wide_sum([c.contribution for c in top])
    with decimal.localcontext(WIDE):
        assert abs(contributions - result.score) <= len(top) * Decimal("1e-18")
        assert abs(wide_sum([c.share for c in top]) - 1) <= Decimal("1e-30")


@given(lenses(), feedback_lists(), histories, st.randoms(use_true_random=False))
def test_the_order_of_the_feedback_does_not_matter(
    the_lens: Lens,
    given: list[FeedbackEntry],
    history: dict[str, ClientHistory],
    shuffler: random.Random,
) -> None:
    shuffled = list(given)
    shuffler.shuffle(shuffled)
    first = apply_lens(the_lens, given, history, NOW)
    second = apply_lens(the_lens, shuffled, history, NOW)
    assert first.score == second.score
    assert first.explain == second.explain
    assert sorted(map(repr, first.counted)) == sorted(map(repr, second.counted))


@settings(max_examples=25)
@given(lenses(), feedback_lists(), histories, st.integers(-(10**9), 10**9))
def test_only_ages_matter_not_the_clock(
    the_lens: Lens, given: list[FeedbackEntry], history: dict[str, ClientHistory], shift: int
) -> None:
    moved = timedelta(seconds=shift)
    later = [FeedbackEntry(e.client, e.feedback_index, e.value, e.value_decimals, e.tag1, e.tag2,
                           e.revoked, e.block_time + moved) for e in given]  # fmt: skip
    first = apply_lens(the_lens, given, history, NOW)
    second = apply_lens(the_lens, later, history, NOW + moved)
    assert first.score == second.score
    assert first.explain == second.explain


# -- describing feedback --------------------------------------------------------------------


def test_the_distribution_puts_each_score_in_its_bucket() -> None:
    scores = [(-1, 0), (0, 0), (999, 2), (10, 0), (995, 1), (100, 0), (1001, 1), (5, 0)]
    buckets = score_distribution([feedback(value=v, decimals=d) for v, d in scores])
    assert len(buckets) == len(DEFAULT_EDGES) + 1
    assert (buckets[0].low, buckets[0].high) == (None, Decimal(0))
    assert (buckets[-1].low, buckets[-1].high) == (Decimal(100), None)
    counts = {(b.low, b.high): b.count for b in buckets if b.count}
    assert counts == {
        (None, Decimal(0)): 1,  # -1
        (Decimal(0), Decimal(10)): 3,  # 0, 9.99, 5
        (Decimal(10), Decimal(20)): 1,  # 10
        (Decimal(90), Decimal(100)): 2,  # 99.5 and 100 (the last closed bucket holds 100)
        (Decimal(100), None): 1,  # 100.1
    }
    assert sum(b.count for b in score_distribution([])) == 0


@given(st.lists(st.tuples(st.integers(-INT128, INT128 - 1), st.integers(0, 18)), max_size=30))
def test_the_distribution_counts_every_score_once(values: list[tuple[int, int]]) -> None:
    edges = [Decimal(-50), Decimal("0.5"), Decimal(70)]
    buckets = score_distribution([feedback(value=v, decimals=d) for v, d in values], edges)
    assert sum(b.count for b in buckets) == len(values)
    for bucket in buckets:
        inside = [
            (v, d) for v, d in values
            if (bucket.low is None or normalized_score(v, d) >= bucket.low)
            and (bucket.high is None or normalized_score(v, d) < bucket.high
                 or (bucket.high == edges[-1] and normalized_score(v, d) == bucket.high))
            and not (bucket.low == edges[-1] and normalized_score(v, d) == bucket.low)
        ]  # fmt: skip
        assert bucket.count == len(inside), bucket


@pytest.mark.parametrize("edges", [[], [Decimal(1)], [Decimal(1), Decimal(1)],
                                   [Decimal(2), Decimal(1)]])  # fmt: skip
def test_distribution_edges_must_increase(edges: list[Decimal]) -> None:
    with pytest.raises(ValueError, match="increasing order"):
        score_distribution([], edges)


def test_trend_averages_per_time_bucket_oldest_first() -> None:
    week = timedelta(weeks=1)
    monday = datetime(2026, 2, 23, tzinfo=UTC)  # NOW is Sunday 2026-03-01
    given = [
        feedback(ALICE, 1, value=10, age=NOW - (monday + timedelta(hours=1))),
        feedback(BOB, 1, value=21, age=NOW - (monday + timedelta(days=6))),
        feedback(CAROL, 1, value=5, decimals=1, age=NOW - (monday - timedelta(seconds=1))),
    ]
    buckets = trend(given, week)
    assert [(b.start, b.end, b.count, b.average) for b in buckets] == [
        (monday - week, monday, 1, Decimal("0.5")),
        (monday, monday + week, 2, Decimal("15.5")),
    ]
    assert trend([], week) == ()
    with pytest.raises(ValueError, match="positive"):
        trend(given, timedelta(0))


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)),
       st.integers(1, 90 * 86400))  # fmt: skip
def test_a_time_is_in_the_bucket_that_starts_at_bucket_start(time: datetime, seconds: int) -> None:
    width = timedelta(seconds=seconds)
    start = bucket_start(time, width)
    assert start <= time < start + width
    assert (start - TREND_ORIGIN) % width == timedelta(0)


def test_trend_buckets_are_those_of_date_bin(admin_url: str) -> None:
    """The SQL that serves trends bins with date_bin(width, block_time, TREND_ORIGIN)."""
    times = [datetime(1999, 12, 31, 23, 59, tzinfo=UTC), datetime(2026, 3, 1, 12, 0, 1, tzinfo=UTC),
             datetime(2026, 2, 23, tzinfo=UTC), datetime(2031, 7, 4, 5, 6, 7, 890, tzinfo=UTC)]  # fmt: skip
    widths = [timedelta(hours=1), timedelta(days=1), timedelta(weeks=1), timedelta(seconds=7919)]
    with psycopg.connect(admin_url) as conn:
        for time in times:
            for width in widths:
                row = conn.execute(
                    "SELECT date_bin(%s, %s, %s)", (width, time, TREND_ORIGIN)
                ).fetchone()
                assert row is not None
                assert row[0] == bucket_start(time, width), (time, width)


def test_activity_counts_clients_revocations_and_responses() -> None:
    given = [feedback(ALICE, 1, revoked=True), feedback(ALICE.upper().replace("0X", "0x"), 2),
             feedback(BOB, 1, responses=2), feedback(CAROL, 1, revoked=True, responses=1)]  # fmt: skip
    seen = activity(given)
    assert (
        seen.feedback_count,
        seen.distinct_clients,
        seen.revoked_count,
        seen.responded_count,
    ) == (4, 3, 2, 2)
    assert (seen.revocation_rate, seen.response_rate) == (Decimal("0.5"), Decimal("0.5"))
    thirds = activity(given[1:])
    assert thirds.revocation_rate == Decimal("0.333333")
    nothing = activity([])
    assert (nothing.feedback_count, nothing.revocation_rate, nothing.response_rate) == (
        0,
        None,
        None,
    )
