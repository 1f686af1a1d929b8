"""What every benchmark shares: a throwaway database, the machine, the table and the JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from erc8004_backend.database.connection import connect, with_database
from erc8004_backend.database.migrations import Migrator, load_source

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
console = Console()


def _server_reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.OperationalError:
        return False
    return True


@contextmanager
def admin_url() -> Iterator[str]:
    """BENCH_DATABASE_URL, else the local server, else an embedded one for the run."""
    url = os.environ.get("BENCH_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"
    if _server_reachable(url):
        yield url
        return
    from erc8004_backend.database.embedded import embedded_postgres

    with embedded_postgres(ROOT / ".bench-postgres", delete=True) as embedded:
        yield embedded


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A freshly migrated database, dropped afterwards."""
    with admin_url() as admin:
        name = f"erc8004_bench_{secrets.token_hex(4)}"
        with connect(admin) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = with_database(admin, name)
        try:
            with connect(url, autocommit=False) as conn:
                Migrator(conn, load_source(ROOT / "database" / "migrations")).run()
            yield url
        finally:
            with connect(admin) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def peak_rss_mb(pid: int) -> float | None:
    """A running process's peak resident memory so far (VmHWM, Linux), in MB; else None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(match.group(1)) / 1024, 1) if match else None


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


def report(
    name: str, rows: list[tuple[str, str]], result: dict[str, Any], out: Path | None
) -> Path:
    """Print the table and write the JSON (default: bench/results/<name>.json)."""
    table = Table(title=f"bench/{name}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    path = out or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "at": datetime.now(UTC).isoformat(), "machine": machine(),
                **result}  # fmt: skip
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    console.print(f"[dim]wrote {path}[/]")
    return path


@contextlib.asynccontextmanager
async def child(
    *args: str, env: dict[str, str], read: bool = False, log: Path | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A Python child process, stopped with SIGTERM (then killed) at the end. Its stdout is
    piped only if asked; stderr goes to `log` (or nowhere)."""
    stderr = log.open("wb") if log is not None else None
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if read else asyncio.subprocess.DEVNULL,
        stderr=stderr or asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        if stderr is not None:
            stderr.close()
