"""lenses.weigh_votes, which weighs the votes PostgreSQL chose (agents/service.py), gives
each vote relative_weight's weight however old, and apply_lens's score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.agents.lenses import (
    WEIGHT_SHIFT,
    FeedbackEntry,
    Votes,
    apply_lens,
    epoch_microseconds,
    parse_lens,
    relative_weight,
    weigh_votes,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE = "0x" + "a1" * 20


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=100),
    st.lists(st.integers(min_value=0, max_value=2_000_000_000), min_size=1, max_size=20),
    st.booleans(),
    st.sampled_from(["each", "latest", "average"]),
)
def test_each_vote_weighs_relative_weight_and_the_score_is_apply_lens(
    half_life: int, ages_ms: list[int], distinct: bool, vote: str
) -> None:
    # weigh_votes scales the doubles to small integers when it can (ages up to ~970
    # half-lives) and takes them one at a time beyond: either way each weight in units is
    # relative_weight's. The clients are one each, or all the same one.
    now_micros = epoch_microseconds(NOW)
    times = [now_micros - age * 1000 for age in ages_ms]
    clients = [f"0x{n:040x}" if distinct else ALICE for n in range(len(times))]
    votes = Votes(clients=clients, scores18=[10**18 * n for n in range(len(times))],
                  microseconds=times)  # fmt: skip
    lens = parse_lens({"half_life": f"{half_life}s", "vote": "average" if vote == "average"
                       else "each"})  # fmt: skip
    weighed = weigh_votes(lens, votes, NOW)
    newest = max(times)
    for n, time in enumerate(times):
        units, divisor = weighed.weight_of(n)
        assert units == relative_weight(newest - time, half_life * 1_000_000)
        sharing = len(times) if lens.vote == "average" and not distinct else 1
        assert divisor == sharing << WEIGHT_SHIFT
    entries = [FeedbackEntry(client, n + 1, n, 0, "", "", False,
                             NOW - timedelta(milliseconds=age))
               for n, (client, age) in enumerate(zip(clients, ages_ms, strict=True))]  # fmt: skip
    expected = apply_lens(lens, entries, {}, NOW)
    assert (weighed.score, weighed.top_clients) == (
        expected.score, expected.explain.top_clients)  # fmt: skip


def test_no_votes_weigh_nothing() -> None:
    weighed = weigh_votes(parse_lens({"half_life": "1d"}), Votes([], [], []), NOW)
    assert (weighed.score, weighed.clients_counted, weighed.top_clients) == (None, 0, ())
