"""The backoff policy and the reading of Retry-After."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.retry import RetryPolicy, parse_retry_after

POLICY = RetryPolicy(max_attempts=8, backoff_initial=0.2, backoff_max=10.0, retry_after_max=60.0)
# The ceiling after each failed try (0-based): doubling from 0.2, then capped at 10.
CEILINGS = [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0]


@pytest.fixture
def lowest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jitter always draws the bottom of its range."""
    monkeypatch.setattr(random, "uniform", lambda low, high: low)


@pytest.fixture
def highest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jitter always draws the top of its range."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


@pytest.mark.usefixtures("highest")
def test_the_ceiling_doubles_then_stays_at_backoff_max() -> None:
    assert [POLICY.delay(attempt) for attempt in range(9)] == pytest.approx(CEILINGS)
    assert POLICY.delay(1000) == 10.0  # no overflow, however many attempts


@pytest.mark.usefixtures("lowest")
def test_the_jitter_goes_down_to_half_the_ceiling() -> None:
    assert [POLICY.delay(attempt) for attempt in range(9)] == pytest.approx(
        [ceiling / 2 for ceiling in CEILINGS]
    )


@given(attempt=st.integers(min_value=0, max_value=200))
def test_delays_lie_between_half_and_all_of_the_ceiling(attempt: int) -> None:
    ceiling = CEILINGS[min(attempt, len(CEILINGS) - 1)]
    delays = [POLICY.delay(attempt) for _ in range(20)]
    assert all(ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9 for delay in delays)


def test_the_jitter_varies() -> None:
    assert len({POLICY.delay(5) for _ in range(20)}) > 1


@pytest.mark.usefixtures("lowest")
def test_retry_after_is_a_floor() -> None:
    assert POLICY.delay(0, retry_after=5.0) == 5.0  # above the backoff: waits for it
    assert POLICY.delay(0, retry_after=30.0) == 30.0  # even above backoff_max
    assert POLICY.delay(6, retry_after=1.0) == 5.0  # below the backoff: the backoff stands
    assert POLICY.delay(0, retry_after=0.0) == 0.1
    assert POLICY.delay(0, retry_after=None) == 0.1


@pytest.mark.usefixtures("highest")
def test_retry_after_is_capped_by_retry_after_max() -> None:
    assert POLICY.delay(0, retry_after=3600.0) == 60.0
    assert dataclasses.replace(POLICY, retry_after_max=5.0).delay(0, retry_after=3600.0) == 5.0
    # The cap bounds Retry-After only, never the backoff itself.
    assert dataclasses.replace(POLICY, retry_after_max=0.0).delay(8, retry_after=30.0) == 10.0


def test_zero_delays_are_allowed() -> None:
    policy = RetryPolicy(max_attempts=1, backoff_initial=0.0, backoff_max=0.0)
    assert policy.delay(3) == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "a retry policy needs max_attempts >= 1"),
        ({"max_attempts": -3}, "a retry policy needs max_attempts >= 1"),
        ({"backoff_initial": -0.1}, "a retry policy cannot have negative delays"),
        ({"backoff_max": -1.0}, "a retry policy cannot have negative delays"),
        ({"retry_after_max": -1.0}, "a retry policy cannot have negative delays"),
    ],
)
def test_invalid_policies_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(Erc8004Error) as caught:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert str(caught.value) == message


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), ("1.5", 1.5), ("0", 0.0), (" 7 ", 7.0), ("-5", 0.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_a_future_http_date() -> None:
    header = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 85 <= seconds <= 90  # the header has whole seconds; a little time passes


def test_retry_after_as_a_past_http_date_means_now() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00") == 0.0  # no zone: UTC


def test_a_dated_retry_after_without_a_zone_is_read_as_utc() -> None:
    when = datetime.now(UTC) + timedelta(hours=2)
    seconds = parse_retry_after(when.strftime("%a, %d %b %Y %H:%M:%S"))
    assert seconds is not None
    assert 7190 <= seconds <= 7200


@pytest.mark.parametrize(
    "header", [None, "", "soon", "Wed, 99 Foo 2015", "inf", "-inf", "nan", "1e400"]
)
def test_unreadable_retry_after_is_none(header: str | None) -> None:
    assert parse_retry_after(header) is None


@given(st.text(max_size=40))
def test_any_retry_after_is_none_or_a_finite_wait(header: str) -> None:
    seconds = parse_retry_after(header)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)
