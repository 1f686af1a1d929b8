"""`erc8004 indexer`: index the ERC-8004 registries of the configured chains.

What the command runs with (the indexer, the database driver, pydantic, structlog) is
imported where it is used, not with the module: `erc8004 indexer --help` needs none of it.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.loading import loading
from erc8004_backend.errors import Erc8004Error

if TYPE_CHECKING:
    import asyncio

    from rich.progress import Progress, TaskID

    from erc8004_backend.chain.config import ChainConfig
    from erc8004_backend.indexer import chain_indexer

ChainNames = Annotated[
    list[str] | None,
    typer.Option(
        "--chain",
        metavar="NAME_OR_ID",
        help="Chain name or id to index (repeatable); default: enabled.",
    ),
]
ChainsFiles = Annotated[
    list[Path] | None,
    typer.Option(
        "--chains-file",
        metavar="FILE",
        help="TOML file of chains (repeatable). Default: <data dir>/devnet.toml if it exists,"
        " then $ERC8004_CHAINS_FILE, or else ./chains.toml if it exists.",
    ),
]
CHAINS_FILE_VARIABLE = "ERC8004_CHAINS_FILE"


def chains_files(explicit: list[Path] | None) -> list[Path]:
    """The chains files to read after the defaults. A file the user named must exist; the
    ones read by default are skipped when absent (load_chains reads those that exist)."""
    if explicit:
        for path in explicit:
            if not path.exists():
                raise Erc8004Error(f"chains file {path} does not exist")
        return explicit
    named = os.environ.get(CHAINS_FILE_VARIABLE)
    if named and not Path(named).exists():
        raise Erc8004Error(f"chains file {named} ({CHAINS_FILE_VARIABLE}) does not exist")
    from erc8004_backend.config import get_settings

    return [get_settings().data_dir / "devnet.toml", Path(named or "chains.toml")]


def known_chains(files: list[Path] | None) -> dict[str, ChainConfig]:
    """Every chain the commands know: the defaults, overridden by the chains files."""
    from erc8004_backend.chain.config import load_chains

    return load_chains(chains_files(files))


def configured_chains(wanted: list[str] | None, files: list[Path] | None) -> list[ChainConfig]:
    """The chains to index: those named, or else the enabled ones."""
    return indexed_chains(known_chains(files), wanted)


def indexed_chains(known: dict[str, ChainConfig], wanted: list[str] | None) -> list[ChainConfig]:
    from erc8004_backend.chain.config import select_chains

    chains = select_chains(known, wanted or [])
    if not chains:
        raise Erc8004Error("no chain is enabled: name one with --chain, or enable one in a"
                           " chains file")  # fmt: skip
    return chains


def indexer(
    chain: ChainNames = None,
    chains_file: ChainsFiles = None,
    database_url: DatabaseUrl = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bars (default: in a terminal)."),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Index up to the current head, then exit.")
    ] = False,
) -> None:
    """Backfill and follow the ERC-8004 registries of the configured chains."""
    with loading():  # what the command runs with (here and in _run and _index)
        import asyncio

        import erc8004_backend.cli.signals
        import erc8004_backend.indexer.runner  # noqa: F401
        from erc8004_backend.cli.logs import configure_logging

    configure_logging()
    chains = configured_chains(chain, chains_file)
    show_progress = sys.stderr.isatty() if progress is None else progress
    with database(database_url) as url:
        asyncio.run(_run(url, chains, show_progress, once))


async def _run(url: str, chains: list[ChainConfig], show_progress: bool, once: bool) -> None:
    from erc8004_backend.cli.signals import run_until_signalled

    async def index(stop: asyncio.Event) -> None:
        await _index(url, chains, show_progress, once, stop)

    await run_until_signalled(index, "indexer")


async def _index(
    url: str, chains: list[ChainConfig], show_progress: bool, once: bool, stop: asyncio.Event
) -> None:
    import structlog

    from erc8004_backend.config import get_settings
    from erc8004_backend.indexer.runner import run_indexers

    log = structlog.get_logger(__name__)
    settings = get_settings()
    for chain in chains:
        log.info("indexer.start", chain=chain.name, chain_id=chain.chain_id,
                 rpc=len(chain.rpc_urls), start_block=chain.start_block,
                 confirmations=chain.confirmations)  # fmt: skip
    if not show_progress:
        await run_indexers(
            url, chains, stop, settings=settings, on_progress=ProgressLog().update, once=once
        )
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks · {task.fields[events]} events · {task.fields[rate]}/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bars:
        await run_indexers(
            url, chains, stop, settings=settings, on_progress=ProgressBars(bars).update, once=once
        )


class RunRate:
    """Events per second per chain over this run: the events indexed since the run started,
    over the time since it started (not since the first report: resuming, the first batch
    of a backfill would be divided by almost nothing). A chain's indexer counts from 0 at
    each of its starts (again after a lost connection), so each report adds what it adds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.events: dict[str, int] = {}  # indexed in this run, per chain
        self._reported: dict[str, int] = {}  # the count of the chain's latest report

    def update(self, p: chain_indexer.Progress) -> int:
        """This run's events per second on the report's chain, counting that report (and
        `events[chain]`, this run's events on it)."""
        before = self._reported.get(p.chain, 0)
        added = p.events - before if p.events >= before else p.events  # restarted at 0
        self._reported[p.chain] = p.events
        self.events[p.chain] = self.events.get(p.chain, 0) + added
        elapsed = self.clock() - self.started
        return int(self.events[p.chain] / elapsed) if elapsed > 0 else 0


class ProgressBars:
    """In a terminal: a bar per chain, from its start block to the head."""

    def __init__(self, bars: Progress, clock: Callable[[], float] = time.monotonic) -> None:
        self.bars = bars
        self.rate = RunRate(clock)
        self.tasks: dict[str, TaskID] = {}

    def update(self, p: chain_indexer.Progress) -> None:
        if p.chain not in self.tasks:
            self.tasks[p.chain] = self.bars.add_task(
                p.chain, total=p.head - p.start_block + 1, events=0, rate=0
            )
        rate = self.rate.update(p)
        self.bars.update(self.tasks[p.chain], completed=p.block - p.start_block + 1,
                         total=p.head - p.start_block + 1,
                         events=self.rate.events[p.chain], rate=rate)  # fmt: skip


class ProgressLog:
    """Without a terminal: one structured line per chain every few seconds, and on catch-up."""

    def __init__(self, every: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        import structlog

        self.log = structlog.get_logger(__name__)
        self.every = every
        self.clock = clock
        self.rate = RunRate(clock)
        self.last: dict[str, tuple[float, bool]] = {}

    def update(self, p: chain_indexer.Progress) -> None:
        rate = self.rate.update(p)
        now = self.clock()
        last_time, was_caught_up = self.last.get(p.chain, (-math.inf, False))
        if now - last_time >= self.every or (p.caught_up and not was_caught_up):
            self.log.info("indexer.progress", chain=p.chain, block=p.block, head=p.head,
                          events=self.rate.events[p.chain], events_per_second=rate,
                          caught_up=p.caught_up)  # fmt: skip
            self.last[p.chain] = (now, p.caught_up)
