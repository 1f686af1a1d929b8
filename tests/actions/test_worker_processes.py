"""Worker processes (`erc8004 worker`) sharing one queue, and one killed mid-delivery."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

import psycopg
import pytest

from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from tests.conftest import ROOT
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import create_trigger, queue_jobs

pytestmark = [pytest.mark.timeout(180), pytest.mark.subprocess]


async def start_worker(url: str, *options: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "ERC8004_ALLOW_PRIVATE_URLS": "true",
           "ERC8004_RETRY_INITIAL_SECONDS": "0.05", "ERC8004_RETRY_MAX_SECONDS": "0.5"}  # fmt: skip
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "worker", "--database-url", url, *options,
        cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip


async def counts(conn: psycopg.AsyncConnection) -> dict[str, int]:
    cursor = await conn.execute("SELECT status, count(*) FROM action_jobs GROUP BY status")
    return {status: count for status, count in await cursor.fetchall()}


async def wait_for_counts(
    conn: psycopg.AsyncConnection, expected: dict[str, int], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while (found := await counts(conn)) != expected:
        assert time.monotonic() < deadline, f"jobs {found}, expected {expected}"
        await asyncio.sleep(0.1)


async def stop(process: asyncio.subprocess.Process, signum: int = signal.SIGTERM) -> bytes:
    if process.returncode is None:
        process.send_signal(signum)
    _, stderr = await asyncio.wait_for(process.communicate(), 30)
    return stderr


def rest_action(url: str) -> dict[str, Any]:
    return {"url": url, "timeout_ms": 5000, "body_template": {"agent": "{{agent_id}}"}}


async def test_two_workers_deliver_thousands_of_jobs_each_exactly_once(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    box = SecretBox.from_spec(Settings().token_keys)
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        trigger, action, secret = await create_trigger(conn, "rest", rest_action(url), box=box)
        sink.secret = secret or ""
        sink.fail_next(50, 503)  # some retries in the mix
        await queue_jobs(conn, trigger, action, 2000)
        workers = [await start_worker(migrated_url, "--concurrency", "16") for _ in range(2)]
        try:
            await wait_for_counts(conn, {"succeeded": 2000}, timeout=120)
        finally:
            errors = [await stop(worker) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], errors
    assert len(sink.processed) == 2000
    assert not sink.repeats
    assert len(sink.received) == 2050  # 50 refused, then each job once
    assert all(request.signature_ok for request in sink.received)
    cursor = await conn.execute(
        "SELECT status, count(*) FROM action_results GROUP BY status ORDER BY status"
    )
    assert await cursor.fetchall() == [("retrying", 50), ("success", 2000)]


async def test_a_killed_workers_jobs_are_delivered_after_the_lease(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    box = SecretBox.from_spec(Settings().token_keys)
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        trigger, action, secret = await create_trigger(conn, "rest", rest_action(url), box=box)
        sink.secret = secret or ""
        sink.stall_next(8, 2.0)  # the first deliveries hang while the worker is killed
        await queue_jobs(conn, trigger, action, 100)
        doomed = await start_worker(migrated_url, "--concurrency", "8", "--lease", "3")
        deadline = time.monotonic() + 30
        while len(sink.received) < 8:
            assert time.monotonic() < deadline, "the worker never delivered"
            await asyncio.sleep(0.05)
        in_flight = {request.key for request in sink.received}
        doomed.kill()  # SIGKILL mid-delivery: no chance to release anything
        await doomed.wait()
        cursor = await conn.execute("SELECT count(*) FROM action_jobs WHERE status = 'running'")
        assert (await cursor.fetchone() or [0])[0] == 8  # held by a dead worker
        started = time.monotonic()
        survivor = await start_worker(migrated_url, "--concurrency", "8", "--lease", "3")
        try:
            await wait_for_counts(conn, {"succeeded": 100}, timeout=60)
        finally:
            await stop(survivor)
        waited = time.monotonic() - started
    assert len(sink.processed) == 100
    assert set(sink.repeats) <= in_flight  # only what was in flight can arrive twice
    assert waited >= 1.0  # the lease had to run out first
    cursor = await conn.execute(
        "SELECT count(*) FROM action_results WHERE error_message LIKE %s",
        ["worker %stopped before finishing attempt 1 (its lease expired)"],
    )
    assert (await cursor.fetchone() or [0])[0] == 8
