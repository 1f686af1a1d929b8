"""`erc8004 devnet`: a local chain with the ERC-8004 registries and realistic agent activity."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TextIO

import structlog
import typer

from erc8004_backend.chain.config import render_chain_table
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.config import get_settings
from erc8004_backend.devnet import Devnet, start_devnet
from erc8004_backend.devnet.activity import ActivityReport

log = structlog.get_logger(__name__)


def devnet(
    port: Annotated[
        int,
        typer.Option(
            "--port",
            min=0,
            max=65535,
            help="Port of the JSON-RPC endpoint on 127.0.0.1 (0: any free port).",
        ),
    ] = 8545,
    rate: Annotated[
        float,
        typer.Option("--rate", min=0, help="Events per second (0: as fast as possible)."),
    ] = 2.0,
    events: Annotated[
        int | None,
        typer.Option(
            "--events", min=0, help="Stop after this many events (default: run until Ctrl-C)."
        ),
    ] = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Emit through the batch functions: many events per transaction, for benchmarks.",
        ),
    ] = False,
    no_activity: Annotated[
        bool,
        typer.Option("--no-activity", help="Only run the chain with the registries deployed."),
    ] = False,
    config_out: Annotated[
        Path | None,
        typer.Option(
            "--config-out",
            help="Where to write the devnet's chain config"
            " (default: <data dir>/devnet.toml, which the indexer reads).",
        ),
    ] = None,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running",
            help="With --events: keep the chain running after the events, until Ctrl-C.",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the activity generator.")] = 0,
    block_time: Annotated[
        float | None,
        typer.Option(
            "--block-time",
            min=0.01,
            help="Mine a block every this many seconds (default: mine each transaction at once).",
        ),
    ] = None,
) -> None:
    """Run anvil with our ERC-8004 registries deployed and generate agent activity."""
    configure_logging()
    path = config_out or get_settings().data_dir / "devnet.toml"
    asyncio.run(
        _run(
            port=port,
            rate=rate or None,
            events=events,
            batch=batch,
            activity=not no_activity,
            config_out=path,
            keep_running=keep_running,
            seed=seed,
            block_time=block_time,
        )
    )


async def _run(
    *,
    port: int,
    rate: float | None,
    events: int | None,
    batch: bool,
    activity: bool,
    config_out: Path,
    keep_running: bool,
    seed: int,
    block_time: float | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with start_devnet(port, seed=seed, block_time=block_time) as net:
        write_config(net, config_out)
        _announce(net, config_out)
        if activity and not stop.is_set():
            progress = Progress(sys.stderr)
            report = await net.activity.run(
                events, rate=rate, batch=batch, stop=stop, on_progress=progress.update
            )
            progress.finish(report)
        if not activity or (keep_running and not stop.is_set()):
            print("chain running; Ctrl-C to stop", flush=True)
            await stop.wait()
    print("devnet stopped", flush=True)


def write_config(net: Devnet, path: Path) -> None:
    """The devnet's chain table, written atomically (an indexer may be reading it)."""
    header = (
        f"# Written by `erc8004 devnet` at {datetime.now(UTC).isoformat(timespec='seconds')}"
        ": the registries of the local devnet.\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(header + render_chain_table(net.chain_config()), encoding="utf-8")
    partial.replace(path)


def _announce(net: Devnet, config_out: Path) -> None:
    registries = net.registries
    lines = [
        f"devnet running: chain {registries.chain_id}",
        f"  rpc         {net.url}",
        f"  identity    {registries.identity}",
        f"  reputation  {registries.reputation}",
        f"  validation  {registries.validation}",
        f"  from block  {registries.block_number}",
        f"  config      {config_out}",
    ]
    print("\n".join(lines), flush=True)


class Progress:
    """A progress line rewritten in place in a terminal; a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO, every: float | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every if every is not None else (0.25 if self.tty else 5.0)
        self.last = 0.0
        self.width = 0

    def update(self, report: ActivityReport) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        if self.tty:
            line = report.line()
            columns = _columns()
            if len(line) > columns - 1:
                line = line[: columns - 2] + "…"
            self.stream.write("\r" + line.ljust(self.width))
            self.stream.flush()
            self.width = len(line)
        else:
            log.info(
                "devnet.progress",
                events=report.events,
                transactions=report.transactions,
                block=report.last_block,
                counts=dict(report.counts),
            )

    def finish(self, report: ActivityReport) -> None:
        if self.tty and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
        print(f"emitted {report.line()}", flush=True)


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        return 120
