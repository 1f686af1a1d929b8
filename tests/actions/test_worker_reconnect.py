"""The worker when the database goes away under it (PostgreSQL restarted): deliveries that
finish meanwhile are recorded once it is back, not delivered again after their lease."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from erc8004_backend.actions.worker import run_worker
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from tests.actions.test_worker import (
    _equals,
    job_status_counts,
    results,
    settings_for,
    webhook_target,
)
from tests.support.jobs import queue_jobs
from tests.support.waiting import eventually


@pytest.mark.slow
async def test_deliveries_in_flight_when_the_connections_die_are_recorded_after_reconnecting(
    migrated_url: str,
) -> None:
    box = SecretBox.from_spec(Settings().token_keys)
    async with (
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        webhook_target(conn, box, timeout_ms=10_000) as (sink, _url, trigger, action),
    ):
        sink.stall_next(3, 1.0)
        await queue_jobs(conn, trigger, action, 3)
        stop = asyncio.Event()
        # A lease far longer than the test: only the worker's own records can finish the jobs.
        settings = settings_for(migrated_url, worker_lease_seconds=120)
        task = asyncio.create_task(run_worker(migrated_url, stop, settings))
        try:
            await eventually(lambda: len(sink.received) == 3)  # all three in flight
            cursor = await conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert (await cursor.fetchone() or [0])[0] >= 2  # the worker's, as in a restart
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 3}), 10)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
        assert len(sink.processed) == 3
        assert not sink.repeats
        assert [row["status"] for row in await results(conn)] == ["success"] * 3
