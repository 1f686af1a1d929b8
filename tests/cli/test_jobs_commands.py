"""`erc8004 jobs dead` and `erc8004 jobs retry` as an operator runs them: the retry is the
API's redelivery (actions.queue.redeliver_jobs), for any user's dead jobs."""

from __future__ import annotations

import asyncio

import psycopg

from tests.cli.test_db_commands import erc8004
from tests.support.jobs import create_trigger, queue_jobs


async def dead_and_delivered(url: str) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        trigger, action, _ = await create_trigger(conn, "rest", {"url": "https://x.example/"})
        dead, delivered = await queue_jobs(conn, trigger, action, 2)
        await conn.execute("UPDATE action_jobs SET status = 'dead', attempts = 8,"
                           " last_error = 'HTTP 410' WHERE id = %s", [dead])  # fmt: skip
        await conn.execute("UPDATE action_jobs SET status = 'succeeded' WHERE id = %s",
                           [delivered])  # fmt: skip
    return dead, delivered


def test_dead_jobs_are_listed_and_put_back_with_fresh_attempts(migrated_url: str) -> None:
    dead, delivered = asyncio.run(dead_and_delivered(migrated_url))
    listed = erc8004("jobs", "dead", database_url=migrated_url)
    assert listed.returncode == 0, listed.stderr
    assert "1 dead jobs" in listed.stdout
    assert "HTTP 410" in listed.stdout
    retried = erc8004("jobs", "retry", str(dead), str(delivered), database_url=migrated_url)
    assert f"requeued 1 jobs: {dead}" in retried.stdout
    assert retried.returncode != 0  # the delivered one is not a dead job
    assert f"not dead jobs (unknown, or not dead): {delivered}" in retried.stderr
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute("SELECT id, status, attempts, last_error FROM action_jobs"
                            " ORDER BY id").fetchall()  # fmt: skip
    assert rows == [(dead, "queued", 0, None), (delivered, "succeeded", 0, None)]
