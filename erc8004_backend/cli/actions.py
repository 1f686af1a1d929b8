"""`erc8004 worker` and `erc8004 jobs ...`: action delivery from the command line."""

from __future__ import annotations

import asyncio
from typing import Annotated

import psycopg
import typer
from rich.console import Console
from rich.table import Table

from erc8004_backend.actions.queue import DeadJob, dead_jobs, redeliver_jobs
from erc8004_backend.chain.config import explorer_urls
from erc8004_backend.cli.api import check_token_keys
from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.indexer import ChainsFiles, known_chains
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import get_settings
from erc8004_backend.errors import Erc8004Error

jobs_app = typer.Typer(help="Inspect and re-queue action jobs.", no_args_is_help=True)
console = Console()


def worker(
    database_url: DatabaseUrl = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Deliveries in flight (default: ERC8004_WORKER_CONCURRENCY, else 64).",
            min=1,
            max=10_000,
        ),
    ] = None,
    lease: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Seconds a claimed job stays this worker's"
            " (default: ERC8004_WORKER_LEASE_SECONDS, else 120).",
            min=2,
        ),
    ] = None,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds deliveries in flight get to finish on SIGTERM.", min=0
        ),
    ] = 10.0,
    chains_file: ChainsFiles = None,
) -> None:
    """Deliver queued actions (Telegram, webhooks, MCP), retrying and recording each attempt.

    The chains files give the block explorers that messages link to."""
    # Imported here, not at the top: every erc8004 command starts faster without them.
    from erc8004_backend.actions.worker import run_worker

    configure_logging()
    settings = get_settings()
    explorers = explorer_urls(known_chains(chains_file).values())
    check_token_keys(settings)
    with database(database_url) as url:

        async def deliver(stop: asyncio.Event) -> None:
            await run_worker(url, stop, settings, concurrency=concurrency, lease_seconds=lease,
                             shutdown_grace=shutdown_grace, explorers=explorers)  # fmt: skip

        # The signal handler's own deadline is a little later than the worker's grace, so
        # that the worker requeues what it interrupts before it is cancelled itself.
        asyncio.run(run_until_signalled(deliver, "worker", grace=shutdown_grace + 5))


@jobs_app.command("dead")
def list_dead(
    limit: Annotated[int, typer.Option(metavar="N", help="How many, newest first.", min=1)] = 50,
    database_url: DatabaseUrl = None,
) -> None:
    """List dead-lettered jobs: deliveries that failed for good."""
    with database(database_url) as url:
        jobs = asyncio.run(_dead(url, limit))
    if not jobs:
        console.print("no dead jobs")
        return
    table = Table(title=f"{len(jobs)} dead jobs (newest first)")
    for column in ("job", "trigger", "action", "event", "attempts", "failed at", "last error"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        failed_at = job.finished_at.isoformat(timespec="seconds") if job.finished_at else ""
        table.add_row(str(job.id), f"{job.trigger_name} ({job.trigger_id})", job.action_type,
                      str(job.event_id), str(job.attempts), failed_at,
                      job.last_error or "")  # fmt: skip
    console.print(table)


@jobs_app.command("retry")
def retry(
    job_ids: Annotated[list[int], typer.Argument(metavar="JOB_ID", help="Ids of dead jobs.")],
    database_url: DatabaseUrl = None,
) -> None:
    """Put dead jobs back in the queue with a fresh set of attempts."""
    with database(database_url) as url:
        requeued = asyncio.run(_requeue(url, job_ids))
    missing = sorted(set(job_ids) - set(requeued))
    if requeued:
        console.print(f"requeued {len(requeued)} jobs: {', '.join(map(str, requeued))}")
    if missing:
        raise Erc8004Error(f"not dead jobs (unknown, or not dead): {', '.join(map(str, missing))}")


async def _dead(url: str, limit: int) -> list[DeadJob]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await dead_jobs(conn, limit=limit)


async def _requeue(url: str, job_ids: list[int]) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await redeliver_jobs(conn, job_ids=job_ids)
