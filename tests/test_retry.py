"""The backoff policy, the reading of Retry-After, and the reconnecting supervisor."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.retry import (
    HEALTHY_AFTER,
    RECONNECT_POLICY,
    RetryPolicy,
    parse_retry_after,
    run_reconnecting,
)

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


# -- run_reconnecting ----------------------------------------------------------------------


class Runs:
    """A part that fails after each of `lasts` seconds of a fake clock, then returns; and a
    wait that only moves that clock, recording each delay."""

    def __init__(self, *lasts: float, error: Exception | None = None) -> None:
        self.lasts = list(lasts)
        self.error = error or ConnectionResetError("server closed the connection")
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def run(self) -> None:
        if not self.lasts:
            return
        self.now += self.lasts.pop(0)
        raise self.error

    async def wait(self, stop: asyncio.Event, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


async def supervise(runs: Runs, **options: Any) -> None:
    await run_reconnecting(runs.run, asyncio.Event(), event="test.unavailable",
                           retry_on=(ConnectionError,), clock=runs.clock, wait=runs.wait,
                           **options)  # fmt: skip


@pytest.mark.usefixtures("highest")
async def test_reconnecting_backs_off_and_starts_again_after_a_healthy_run() -> None:
    """Outages in a row wait longer each time, up to the policy's maximum; once a run has
    lasted `healthy_after` seconds, the next outage is a first one again."""
    runs = Runs(*[1.0] * 7, HEALTHY_AFTER, 1.0, 1.0)
    await supervise(runs)
    ceiling = RECONNECT_POLICY.backoff_max
    assert runs.waits == [1.0, 2.0, 4.0, 8.0, 16.0, ceiling, ceiling, 1.0, 2.0, 4.0]
    assert not runs.lasts  # ran until the part returned


@pytest.mark.usefixtures("highest")
async def test_a_run_just_short_of_healthy_keeps_backing_off() -> None:
    runs = Runs(1.0, 1.0, HEALTHY_AFTER - 0.001)
    await supervise(runs)
    assert runs.waits == [1.0, 2.0, 4.0]


async def test_other_errors_are_raised_at_once() -> None:
    runs = Runs(1.0, error=ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await supervise(runs)
    assert runs.waits == []


async def test_a_group_is_retried_only_when_every_error_in_it_is_retryable() -> None:
    lost = ConnectionResetError("lost")
    runs = Runs(1.0, 1.0, error=ExceptionGroup("parts", [lost, ExceptionGroup("inner", [lost])]))
    await supervise(runs)
    assert len(runs.waits) == 2
    mixed = ExceptionGroup("parts", [lost, KeyError("bug")])
    with pytest.raises(ExceptionGroup) as caught:
        await supervise(Runs(1.0, error=mixed))
    assert caught.value is mixed


async def test_errors_after_a_failure_are_retried_only_after_one() -> None:
    """A lock the server still holds for a lost session is retried after a lost
    connection; the same error in the first run needs a person."""

    class LockHeldError(Exception):
        pass

    errors: list[Exception] = [ConnectionResetError("lost"), LockHeldError(), LockHeldError()]
    waits: list[float] = []

    async def run() -> None:
        if errors:
            raise errors.pop(0)

    async def wait(stop: asyncio.Event, seconds: float) -> None:
        waits.append(seconds)

    await run_reconnecting(run, asyncio.Event(), event="test.unavailable",
                           retry_on=(ConnectionError,), after_a_failure=(LockHeldError,),
                           wait=wait)  # fmt: skip
    assert len(waits) == 3
    with pytest.raises(LockHeldError):
        await run_reconnecting(run_raising(LockHeldError()), asyncio.Event(), event="test.locked",
                               retry_on=(ConnectionError,), after_a_failure=(LockHeldError,),
                               wait=wait)  # fmt: skip


def run_raising(error: Exception) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        raise error

    return run


async def test_stop_ends_the_wait_and_the_supervision() -> None:
    stop = asyncio.Event()
    calls = 0

    async def run() -> None:
        nonlocal calls
        calls += 1
        stop.set()  # stopping while the part fails: no run after it
        raise ConnectionResetError("lost")

    await asyncio.wait_for(
        run_reconnecting(run, stop, event="test.unavailable", retry_on=(ConnectionError,)), 5
    )
    assert calls == 1
