"""Repeated failures told once a period instead of one line each.

A devnet's agents name hosts that do not resolve by the thousand, and a real chain has agents
whose host is down for hours: one log line per attempt would bury everything else. The first
failure of a key (a host) is told at once; the failures of that key after it are counted, and
told in one line with their count when the period (a minute) is over. A key without failures
for a whole period is forgotten, so its next failure is told at once again.

Pure: the clock is given, nothing is logged here; the caller writes the reports.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FailureReport:
    """What to tell about a key: a first failure (`first`), or the failures counted since."""

    key: Hashable
    first: bool
    counts: Mapping[str, int]  # failures by kind (e.g. retried / given up)
    seconds: float  # the time the counts cover (0 for a first failure)
    latest: Mapping[str, Any]  # the fields of the latest failure counted

    @property
    def failures(self) -> int:
        return sum(self.counts.values())


@dataclass
class _Window:
    started: float
    counts: Counter[str] = field(default_factory=Counter)
    latest: Mapping[str, Any] = field(default_factory=dict)


class RepeatedFailures:
    """At most one report per key and period, besides the first failure's (see the module)."""

    def __init__(self, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = period
        self.clock = clock
        self._windows: dict[Hashable, _Window] = {}

    def failed(self, key: Hashable, kind: str, fields: Mapping[str, Any]) -> FailureReport | None:
        """A failure of `key`: its report when it is to be told now, else None (counted)."""
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(started=self.clock())
            return FailureReport(key, True, {kind: 1}, 0.0, fields)
        window.counts[kind] += 1
        window.latest = fields
        return None

    def due(self) -> list[FailureReport]:
        """The counts of the periods that are over; each key with failures starts another."""
        now = self.clock()
        reports = []
        for key, window in list(self._windows.items()):
            if now - window.started < self.period:
                continue
            if window.counts:
                reports.append(self._report(key, window, now))
                self._windows[key] = _Window(started=now)
            else:
                del self._windows[key]  # quiet for a whole period: forgotten
        return reports

    def flush(self) -> list[FailureReport]:
        """Every count not told yet, however short its period so far (when stopping)."""
        now = self.clock()
        reports = [self._report(k, w, now) for k, w in self._windows.items() if w.counts]
        self._windows.clear()
        return reports

    @staticmethod
    def _report(key: Hashable, window: _Window, now: float) -> FailureReport:
        return FailureReport(key, False, dict(window.counts), now - window.started, window.latest)
