"""The indexer's progress display (bars in a terminal, log lines otherwise): its rate is the
events this run indexed over the time this run has taken, on a clock the test moves."""

from __future__ import annotations

import io

from rich.console import Console
from rich.progress import Progress
from structlog.testing import capture_logs

from erc8004_backend.cli.indexer import ProgressBars, ProgressLog, RunRate
from erc8004_backend.indexer.chain_indexer import Progress as IndexerProgress


class Clock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


def step(events: int, block: int, *, chain: str = "base", head: int = 90_000) -> IndexerProgress:
    # Resuming at block 80,000 of a chain that starts at 0: the checkpoint, not this run,
    # accounts for the first 80,000 blocks.
    return IndexerProgress(chain, 0, block, head, events, caught_up=block >= head)


def test_the_rate_is_this_runs_events_over_this_runs_time() -> None:
    clock = Clock()
    rate = RunRate(clock)
    clock.now += 2.0  # connecting, checking the chain id, the first range's logs
    assert rate.update(step(14_000, 81_000)) == 7_000
    clock.now += 2.0
    assert rate.update(step(30_000, 83_000)) == 7_500
    assert rate.events == {"base": 30_000}


def test_a_restarted_indexer_counting_from_zero_adds_to_this_run() -> None:
    """After a lost connection the chain's indexer starts again, and counts from 0."""
    clock = Clock()
    rate = RunRate(clock)
    clock.now += 10
    assert rate.update(step(5_000, 81_000)) == 500
    clock.now += 10
    assert rate.update(step(1_000, 81_500)) == 300  # (5,000 + 1,000) / 20 s
    assert rate.update(step(1_000, 81_500, chain="optimism")) == 50
    assert rate.events == {"base": 6_000, "optimism": 1_000}


def test_after_a_restart_the_bar_counts_this_runs_events() -> None:
    clock = Clock()
    bars = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    display = ProgressBars(bars, clock=clock)
    clock.now += 10
    display.update(step(5_000, 81_000))
    display.update(step(1_000, 81_500))  # the indexer started again after a lost connection
    [task] = bars.tasks
    assert (task.fields["events"], task.fields["rate"]) == (6_000, 600)


def test_no_time_yet_is_no_rate_rather_than_a_huge_one() -> None:
    clock = Clock()
    assert RunRate(clock).update(step(14_141, 81_000)) == 0


def test_the_bars_show_the_rate_of_this_run() -> None:
    clock = Clock()
    bars = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    display = ProgressBars(bars, clock=clock)
    clock.now += 2.0
    display.update(step(14_141, 81_000))  # the first batch after resuming

    [task] = bars.tasks
    assert task.fields["rate"] == 7_070
    assert (task.completed, task.total) == (81_001, 90_001)


def test_the_log_lines_carry_the_rate_of_this_run() -> None:
    clock = Clock()
    display = ProgressLog(every=5.0, clock=clock)
    with capture_logs() as logs:
        clock.now += 2.0
        display.update(step(14_141, 81_000))
        clock.now += 1.0
        display.update(step(20_000, 82_000))  # within 5 s of the last line: not logged
        clock.now += 5.0
        display.update(step(40_000, 90_000))  # caught up
    assert [(line["events"], line["events_per_second"]) for line in logs] == [
        (14_141, 7_070),
        (40_000, 5_000),
    ]
