"""Time to sync N devnet events: empty database to fully indexed, with checkpoints.

    .venv/bin/python -m bench.backfill --events 100000
    .venv/bin/python -m bench.backfill --from-launch --events 100000 --events-per-block 500

A fresh devnet gets N events through the registries' batch functions (not timed); then the
indexer backfills them from the deployment block into a freshly migrated database, exactly as
`erc8004 indexer` does (eth_getLogs, block headers, decode, COPY, checkpoint per batch),
timed in-process from the start of its sync.

`--from-launch` times whole commands as a user does, on the same chain (its events made
deeper than the confirmation window): `erc8004 indexer --once` from launch to exit on a
migrated database; `erc8004 db migrate run` then `erc8004 indexer --once` on an empty one;
and `erc8004 run` on an empty database from launch until its indexer has confirmed the head
(polled every 10 ms). Each stores every event, checked as in-process. And the start-up,
`--startup-runs` times: `erc8004 indexer --help` from launch to exit, and `erc8004 indexer`
from launch to its first log line (indexer.start), reported by their medians.

`--against REV` compares this tree's indexer with commit REV's on one chain, made once:
`--pairs` times, each commit's indexer in turn syncs it into a fresh database migrated by its
own migrations (bench/backfill_sync.py in a process with that tree first on the path, the
commit exported by `git archive`), timed in-process as above. Interleaved, so that a change
of the machine's speed falls on both; reported per pair, with the median of this tree's rate
over REV's.

    .venv/bin/python -m bench.backfill --events 100000 --against d1fb66b --pairs 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import psycopg
from psycopg import sql

from bench.common import ROOT, admin_url, child, peak_rss_mb, report, throwaway_database
from erc8004_backend.chain.config import render_chain_table
from erc8004_backend.chain.rpc import RpcClient
from erc8004_backend.database.connection import connect, with_database
from erc8004_backend.devnet import Devnet, start_devnet
from erc8004_backend.indexer.chain_indexer import ChainIndexer

STARTUP_RUNS = 15
STARTUP_BAR_SECONDS = 0.4  # the indexer's start (issue 19)


async def backfill(events: int, max_block_range: int, events_per_block: int) -> dict[str, Any]:
    async with start_devnet(seed=8004) as devnet:
        # About a thousand events per block: real chains spread events over blocks, and
        # eth_getLogs (whose unit is the block) answers fastest at about that many.
        devnet.activity.events_per_block = events_per_block
        generated = time.perf_counter()
        emitted = await devnet.activity.run(events=events, batch=True)
        generated = time.perf_counter() - generated
        head = await devnet.rpc.block_number()
        chain = devnet.chain_config(max_block_range=max_block_range)
        with throwaway_database() as url:
            async with (
                await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
                RpcClient(chain.rpc_urls) as rpc,
            ):
                indexer = ChainIndexer(chain, conn, rpc)
                await indexer.prepare()
                # As `erc8004` freezes its imports at start (cli/main.py); here also the
                # devnet's activity, which an indexer process does not hold.
                gc.freeze()
                started = time.perf_counter()
                checkpoint = await indexer.sync_to_head()
                elapsed = time.perf_counter() - started
                await indexer.close()
                cursor = await conn.execute("SELECT count(*) FROM events")
                stored = (await cursor.fetchone() or (0,))[0]
    if stored != emitted.events or checkpoint != head:
        raise SystemExit(f"indexed {stored} of {emitted.events} events, to block {checkpoint}"
                         f" of {head}")  # fmt: skip
    return {
        "events": stored,
        "blocks": head - devnet.registries.block_number + 1,
        "logs_including_skipped": emitted.logs,
        "batches": indexer.stats.batches,
        "ranges": indexer.stats.ranges,
        "seconds": elapsed,
        "events_per_second": stored / elapsed,
        "generate_seconds": generated,
    }


async def from_launch(
    events: int,
    max_block_range: int,
    events_per_block: int,
    chains_file: Path,
    startup_runs: int = STARTUP_RUNS,
) -> dict[str, Any]:
    # anvil keeps the state after every block unless told not to: at a million events that
    # is some 20 GB (it keeps the logs either way).
    async with start_devnet(seed=8004, anvil_args=["--prune-history"]) as devnet:
        devnet.activity.events_per_block = events_per_block
        emitted = await devnet.activity.run(events=events, batch=True)
        chain = devnet.chain_config(max_block_range=max_block_range)
        # Deeper than the confirmation window: every event is confirmed history.
        await devnet.rpc.call("anvil_mine", [hex(chain.confirmations + 1)])
        head = await devnet.rpc.block_number()
        chains_file.write_text(render_chain_table(chain))
        indexer = ["-m", "erc8004_backend", "indexer", "--once", "--chain", "devnet",
                   "--chains-file", str(chains_file)]  # fmt: skip
        with throwaway_database() as url:
            startup = await _startup_seconds(url, indexer, startup_runs)
        with throwaway_database() as url:
            indexer_seconds = await _timed(url, indexer)
            _check(url, emitted.events, head - chain.confirmations)
        with _empty_database() as url:
            migrate_seconds = await _timed(url, ["-m", "erc8004_backend", "db", "migrate", "run"])
            migrate_indexer_seconds = migrate_seconds + await _timed(url, indexer)
            _check(url, emitted.events, head - chain.confirmations)
        with _empty_database() as url:
            run_seconds, run_peak = await _run_until_caught_up(url, devnet, chains_file,
                                                     head - chain.confirmations)  # fmt: skip
            _check(url, emitted.events, head - chain.confirmations)
    return {
        "events": emitted.events,
        "blocks": head - devnet.registries.block_number + 1,
        "indexer_once_seconds": indexer_seconds,
        "indexer_once_events_per_second": emitted.events / indexer_seconds,
        "migrate_and_indexer_seconds": migrate_indexer_seconds,
        "migrate_and_indexer_events_per_second": emitted.events / migrate_indexer_seconds,
        "run_caught_up_seconds": run_seconds,
        "run_caught_up_events_per_second": emitted.events / run_seconds,
        "run_peak_rss_mb": run_peak,
        "startup_runs": startup_runs,
        "help_seconds": startup["help"],
        "help_median_seconds": statistics.median(startup["help"]),
        "startup_seconds": startup["start"],
        "startup_median_seconds": statistics.median(startup["start"]),
    }


async def against(
    rev: str, pairs: int, events: int, max_block_range: int, events_per_block: int
) -> dict[str, Any]:
    with TemporaryDirectory() as directory:
        other = Path(directory) / "against"
        _export(rev, other)
        async with start_devnet(seed=8004) as devnet:
            devnet.activity.events_per_block = events_per_block
            emitted = await devnet.activity.run(events=events, batch=True)
            head = await devnet.rpc.block_number()
            chain_file = Path(directory) / "chain.json"
            chain_file.write_text(devnet.chain_config(max_block_range=max_block_range)
                                  .model_dump_json())  # fmt: skip
            runs: dict[str, list[dict[str, Any]]] = {"against": [], "this": []}
            for _ in range(pairs):
                for side, root in (("against", other), ("this", ROOT)):
                    run = await _sync_with(root, chain_file)
                    if run["events"] != emitted.events or run["checkpoint"] != head:
                        raise SystemExit(f"{side}: indexed {run['events']} of {emitted.events}"
                                         f" events, to block {run['checkpoint']} of {head}")  # fmt: skip
                    run["events_per_second"] = run["events"] / run["seconds"]
                    runs[side].append(run)
    ratios = [this["events_per_second"] / them["events_per_second"]
              for this, them in zip(runs["this"], runs["against"], strict=True)]  # fmt: skip
    return {"against": rev, "events": emitted.events, "pairs": pairs, "runs": runs,
            "ratios": ratios, "median_ratio": statistics.median(ratios)}  # fmt: skip


def _export(rev: str, into: Path) -> None:
    """Commit `rev` of this repository, as files in `into`."""
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                             capture_output=True)  # fmt: skip
    if archive.returncode != 0:
        raise SystemExit(f"--against {rev}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


async def _sync_with(root: Path, chain_file: Path) -> dict[str, Any]:
    """bench/backfill_sync.py with the tree at `root` first on the path: its result."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "backfill_sync.py"), str(chain_file), cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the sync of {root} failed:\n{stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


async def _startup_seconds(url: str, indexer: list[str], runs: int) -> dict[str, list[float]]:
    """The indexer's start-up, `runs` times each: `erc8004 indexer --help` from launch to
    exit, and `indexer` from launch to its first log line (indexer.start: its modules,
    settings and chains loaded, about to connect), then stopped."""
    found: dict[str, list[float]] = {"help": [], "start": []}
    for _ in range(runs):
        found["help"].append(await _timed(url, ["-m", "erc8004_backend", "indexer", "--help"]))
        started = time.perf_counter()
        process = await _launch(url, indexer)
        assert process.stderr is not None
        try:
            line = await asyncio.wait_for(process.stderr.readline(), timeout=60)
            found["start"].append(time.perf_counter() - started)
        finally:
            process.kill()
            await process.wait()
        if b"indexer.start" not in line:
            raise SystemExit(f"the indexer's first line was not indexer.start: {line!r}")
    return found


def _environment(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url}


async def _launch(url: str, args: list[str]) -> asyncio.subprocess.Process:
    """`python args` in this tree against the database at `url`, its stderr piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=_environment(url),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _timed(url: str, args: list[str]) -> float:
    """Seconds from launching `python args` to its exit (which must be a success)."""
    started = time.perf_counter()
    process = await _launch(url, args)
    _, stderr = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args[2:])} failed:\n{stderr.decode()[-2000:]}")
    return elapsed


async def _run_until_caught_up(
    url: str, devnet: Devnet, chains_file: Path, block: int
) -> tuple[float, float | None]:
    """Seconds from launching `erc8004 run` until its indexer has confirmed `block`, and
    the process's peak resident memory by then (MB)."""
    args = ["-m", "erc8004_backend", "run", "--chain", "devnet", "--chains-file",
            str(chains_file), "--port", "0"]  # fmt: skip
    query = "SELECT confirmed_block_number FROM checkpoints WHERE chain_id = %s"
    with connect(url) as conn:
        started = time.perf_counter()
        async with child(*args, env=_environment(url)) as process:
            while True:
                if process.returncode is not None:
                    raise SystemExit("erc8004 run stopped before it caught up")
                try:
                    row = conn.execute(query, [devnet.registries.chain_id]).fetchone()
                except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
                    row = None  # not migrated yet
                if row and row[0] is not None and row[0] >= block:
                    return time.perf_counter() - started, peak_rss_mb(process.pid)
                await asyncio.sleep(0.01)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _empty_database() -> Iterator[str]:
    with admin_url() as admin:
        name = f"erc8004_bench_{secrets.token_hex(4)}"
        with connect(admin) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield with_database(admin, name)
        finally:
            with connect(admin) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


def _check(url: str, emitted: int, confirmed: int) -> None:
    with connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()
        checkpoint = conn.execute("SELECT confirmed_block_number FROM checkpoints").fetchone()
    if not stored or stored[0] != emitted or not checkpoint or checkpoint[0] < confirmed:
        raise SystemExit(f"stored {stored} of {emitted} events, confirmed {checkpoint}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.backfill", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--max-block-range", type=int, default=100_000)
    parser.add_argument("--events-per-block", type=int, default=1_000)
    parser.add_argument("--json", type=Path, default=None, help="where to write the result")
    parser.add_argument("--from-launch", action="store_true",
                        help="time whole commands from launch (see the module's doc)")  # fmt: skip
    parser.add_argument("--against", metavar="REV", default=None,
                        help="compare with commit REV's indexer on the same chain")  # fmt: skip
    parser.add_argument("--pairs", type=int, default=3, help="with --against: runs of each")
    parser.add_argument("--startup-runs", type=int, default=STARTUP_RUNS,
                        help="with --from-launch: launches timed for the start-up")  # fmt: skip
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.startup_runs < 1:
        parser.error("--pairs and --startup-runs must be at least 1")
    if args.against is not None and args.from_launch:
        parser.error("--against times the sync in-process: not with --from-launch")
    if args.against is not None:
        compared = asyncio.run(against(args.against, args.pairs, args.events,
                                       args.max_block_range, args.events_per_block))  # fmt: skip
        rows = [
            ("events", f"{compared['events']:,}"),
            ("pair: this tree / " + args.against, "events/s (PostgreSQL's CPU s)"),
        ]
        for n, (this, them) in enumerate(zip(compared["runs"]["this"],
                                             compared["runs"]["against"], strict=True)):  # fmt: skip
            rows.append((f"  {n + 1}", f"{this['events_per_second']:,.0f}"
                         f" ({_seconds(this['postgres_cpu_seconds'])}) / "
                         f"{them['events_per_second']:,.0f}"
                         f" ({_seconds(them['postgres_cpu_seconds'])})"))  # fmt: skip
        rows.append(("this tree's rate / theirs, median",
                     f"{compared['median_ratio']:.2f} (per pair"
                     f" {', '.join(f'{ratio:.2f}' for ratio in compared['ratios'])})"))  # fmt: skip
        report("backfill-against", rows, compared, args.json)
        return
    if args.from_launch:
        with TemporaryDirectory() as directory:
            chains_file = Path(directory) / "chains.toml"
            launched = asyncio.run(from_launch(args.events, args.max_block_range,
                                               args.events_per_block, chains_file,
                                               args.startup_runs))  # fmt: skip
        report("backfill-from-launch", [
            ("events", f"{launched['events']:,}"),
            ("blocks", f"{launched['blocks']:,}"),
            ("indexer --once, launch to exit",
             f"{launched['indexer_once_seconds']:.2f} s,"
             f" {launched['indexer_once_events_per_second']:,.0f} events/s"),
            ("db migrate run + indexer --once",
             f"{launched['migrate_and_indexer_seconds']:.2f} s,"
             f" {launched['migrate_and_indexer_events_per_second']:,.0f} events/s"),
            ("run, launch to caught up",
             f"{launched['run_caught_up_seconds']:.2f} s,"
             f" {launched['run_caught_up_events_per_second']:,.0f} events/s"),
            ("run, peak resident memory", f"{launched['run_peak_rss_mb']} MB"),
            (f"start-up, median of {args.startup_runs}: indexer to indexer.start",
             _spread(launched["startup_seconds"])),
            ("indexer --help, launch to exit", _spread(launched["help_seconds"])),
        ], launched, args.json)  # fmt: skip
        return
    result = asyncio.run(backfill(args.events, args.max_block_range, args.events_per_block))
    report("backfill", [
        ("events", f"{result['events']:,}"),
        ("blocks", f"{result['blocks']:,}"),
        ("eth_getLogs ranges", f"{result['ranges']:,}"),
        ("batches (transactions)", f"{result['batches']:,}"),
        ("sync time", f"{result['seconds']:.2f} s"),
        ("throughput", f"{result['events_per_second']:,.0f} events/s"),
        ("(devnet generation, untimed)", f"{result['generate_seconds']:.1f} s"),
    ], result, args.json)  # fmt: skip


def _spread(seconds: list[float]) -> str:
    return (f"{statistics.median(seconds):.3f} s ({min(seconds):.3f}-{max(seconds):.3f})"
            f"; bar {STARTUP_BAR_SECONDS:g} s")  # fmt: skip


def _seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    main()
