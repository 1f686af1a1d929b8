"""When to try again: one backoff policy for the RPC client, the action workers and the
long-running parts that reconnect to the database (`run_reconnecting`), and the reading of a
server's Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from erc8004_backend.errors import Erc8004Error

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try and how long to wait between tries.

    `max_attempts` counts every try, the first included. A server's Retry-After is honoured up
    to `retry_after_max` seconds, even when that exceeds `backoff_max`.
    """

    max_attempts: int = 8
    backoff_initial: float = 0.2
    backoff_max: float = 10.0
    retry_after_max: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise Erc8004Error("a retry policy needs max_attempts >= 1")
        if min(self.backoff_initial, self.backoff_max, self.retry_after_max) < 0:
            raise Erc8004Error("a retry policy cannot have negative delays")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed try number `attempt` + 1 (0-based): exponential
        backoff with jitter (half to all of the ceiling); Retry-After is a floor."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(attempt, 32))
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not crypto)
        return max(delay, min(retry_after or 0.0, self.retry_after_max))


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header in seconds (a number or an HTTP date); None when absent or
    unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


# Reconnecting waits 0.5-1 s after a first failure, twice as long after each further one in
# a row, at most 30 s; it never gives up (max_attempts does not apply): a part runs until it
# is stopped.
RECONNECT_POLICY = RetryPolicy(backoff_initial=1.0, backoff_max=30.0)
# A run that lasted this long was a recovery, not a flap: the next failure is a first one.
HEALTHY_AFTER = 60.0


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """`seconds`, or less if `stop` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_reconnecting(
    run: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    *,
    event: str,
    retry_on: tuple[type[Exception], ...],
    after_a_failure: tuple[type[Exception], ...] = (),
    policy: RetryPolicy = RECONNECT_POLICY,
    healthy_after: float = HEALTHY_AFTER,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[asyncio.Event, float], Awaitable[None]] = wait_or_stop,
    **context: object,
) -> None:
    """Run `run` until it returns or `stop` is set, running it again after each failure of
    the `retry_on` kinds (an exception group: when every exception in it is of them), after
    the policy's delay for that many failures in a row; `event` is logged with the error.

    `after_a_failure` kinds are retried only when the run before failed, i.e. in every run
    but the first (a lock the server still holds for a lost session); in the first run they
    are raised, as every other error is. A run that lasted `healthy_after` seconds resets the
    count of failures in a row.
    """
    failures = 0
    failed_before = False
    while not stop.is_set():
        started = clock()
        try:
            await run()
            return
        except Exception as error:
            retryable = retry_on + (after_a_failure if failed_before else ())
            if not all(isinstance(leaf, retryable) for leaf in _leaves(error)):
                raise
            cause = next(_leaves(error))
        if clock() - started >= healthy_after:
            failures = 0
        delay = policy.delay(failures)
        failures += 1
        failed_before = True
        log.warning(event, error=str(cause), retry_in=round(delay, 1), **context)
        await wait(stop, delay)


def _leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions an exception group carries, however nested; or the exception."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def retryable_status(status: int) -> bool:
    """Whether an HTTP status says the same request may succeed later."""
    return status >= 500 or status in (408, 425, 429)
