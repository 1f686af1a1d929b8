"""Repeated failures told once a minute per key, on a clock the test moves."""

from __future__ import annotations

from erc8004_backend.indexer.repeated_failures import FailureReport, RepeatedFailures


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def failures(clock: Clock) -> RepeatedFailures:
    return RepeatedFailures(period=60, clock=clock)


def test_the_first_failure_is_told_at_once_and_the_rest_of_the_minute_counted() -> None:
    clock = Clock()
    told = failures(clock)

    first = told.failed("a.example", "retry", {"agent_id": 0})
    assert first == FailureReport("a.example", True, {"retry": 1}, 0.0, {"agent_id": 0})
    for agent_id in range(1, 101):
        clock.now += 0.5
        assert told.failed("a.example", "retry" if agent_id % 4 else "failed",
                           {"agent_id": agent_id}) is None  # fmt: skip
    assert told.due() == []  # 50 s: the minute is not over

    clock.now = 1060.0
    [report] = told.due()
    assert report == FailureReport(
        "a.example", False, {"retry": 75, "failed": 25}, 60.0, {"agent_id": 100}
    )
    assert report.failures == 100
    assert told.due() == []  # told once


def test_a_host_failing_for_minutes_is_one_line_a_minute() -> None:
    clock = Clock()
    told = failures(clock)
    lines: list[FailureReport] = []
    for _ in range(600):  # a failure every second for ten minutes, checked as often
        report = told.failed("down.example", "retry", {})
        lines += [report] if report else []
        lines += told.due()
        clock.now += 1
    lines += told.flush()

    assert lines[0].first
    assert [line.failures for line in lines[1:]] == [60] * 9 + [59]
    assert all(not line.first and line.seconds == 60 for line in lines[1:])


def test_hosts_are_counted_apart() -> None:
    clock = Clock()
    told = failures(clock)
    assert told.failed("a.example", "retry", {}) is not None
    assert told.failed("b.example", "retry", {}) is not None  # another host: told at once
    for _ in range(3):
        told.failed("a.example", "retry", {})
    told.failed("b.example", "failed", {})
    clock.now += 60
    assert {report.key: dict(report.counts) for report in told.due()} == {
        "a.example": {"retry": 3},
        "b.example": {"failed": 1},
    }


def test_a_quiet_minute_forgets_the_host_and_its_next_failure_is_told_at_once() -> None:
    clock = Clock()
    told = failures(clock)
    assert told.failed("a.example", "retry", {}) is not None
    clock.now += 60
    assert told.due() == []  # nothing counted since the first: nothing to tell
    clock.now += 1
    report = told.failed("a.example", "retry", {"agent_id": 7})
    assert report is not None
    assert report.first


def test_flush_tells_what_is_counted_when_stopping() -> None:
    clock = Clock()
    told = failures(clock)
    told.failed("a.example", "retry", {})
    told.failed("b.example", "retry", {})
    clock.now += 20
    told.failed("a.example", "failed", {"agent_id": 3})

    [report] = told.flush()
    assert (report.key, dict(report.counts), report.seconds) == ("a.example", {"failed": 1}, 20)
    assert told.flush() == []
    assert told.failed("a.example", "retry", {}) is not None  # forgotten: told at once
