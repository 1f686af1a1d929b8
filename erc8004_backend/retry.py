"""When to try again: one backoff policy for the RPC client and the action workers, and the
reading of a server's Retry-After."""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from erc8004_backend.errors import Erc8004Error


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
