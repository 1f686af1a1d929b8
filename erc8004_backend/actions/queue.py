"""The action queue in PostgreSQL: claiming jobs under a lease, recording attempts, the
circuit breaker, expired leases and the dead letters. The SQL is in queue.sql; deciding what
an attempt's outcome means for its job is pure (`decide`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
import psycopg
from psycopg.rows import tuple_row

from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.database.queries import load_queries
from erc8004_backend.retry import RetryPolicy

QUERIES = load_queries("erc8004_backend.actions", "queue.sql")

NextStatus = Literal["succeeded", "queued", "dead"]
ResultStatus = Literal["success", "retrying", "failed"]


@dataclass(frozen=True)
class Attempt:
    """One finished attempt: what becomes of its job and what the audit trail keeps."""

    job: Job
    next_status: NextStatus
    result_status: ResultStatus
    retry_in: float  # seconds, for next_status 'queued'
    duration_ms: int
    error: str | None = None
    response: dict[str, Any] | None = None
    counted: bool = True  # False: the attempt is given back (DeliveryFailed.counted)


def decide(
    job: Job,
    failure: DeliveryFailed | None,
    policy: RetryPolicy,
    *,
    duration_ms: int,
    response: dict[str, Any] | None = None,
) -> Attempt:
    """Success ends the job; a retryable failure requeues it after the backoff (at least
    the target's Retry-After) while attempts remain; anything else dead-letters it."""
    if failure is None:
        return Attempt(job, "succeeded", "success", 0.0, duration_ms, None, response)
    response = failure.response if failure.response is not None else response
    if failure.retryable and not failure.counted:
        return Attempt(job, "queued", "retrying", max(failure.retry_after or 0.0, 0.0),
                       duration_ms, str(failure), response, counted=False)  # fmt: skip
    if failure.retryable and job.attempt < job.max_attempts:
        delay = policy.delay(job.attempt - 1, failure.retry_after)
        return Attempt(job, "queued", "retrying", delay, duration_ms, str(failure), response)
    error = str(failure)
    if failure.retryable:
        error = f"{error} (gave up after {job.attempt} attempts)"
    return Attempt(job, "dead", "failed", 0.0, duration_ms, error, response)


async def claim_jobs(
    conn: psycopg.AsyncConnection,
    *,
    worker: str,
    limit: int,
    lease_seconds: float,
    per_account: int | None = None,
    running: Mapping[str, int] | None = None,
) -> list[Job]:
    """Up to `limit` due jobs for `worker`: first those within their account's share of the
    worker (`per_account` less its deliveries `running` there, account id -> count), then
    anyone's (queue.sql)."""
    running = running or {}
    params = {
        "worker": worker,
        "limit": limit,
        "lease_seconds": lease_seconds,
        "per_account": per_account if per_account is not None else limit,
        "running_accounts": list(running),
        "running_deliveries": list(running.values()),
    }
    cursor = await conn.execute(QUERIES["claim_jobs"], params)
    return [
        Job(
            id=row[0],
            trigger_id=row[1],
            trigger_name=row[2],
            user_id=row[3],
            action_id=row[4],
            action_type=row[5],
            config=row[6],
            event_id=row[7],
            chain_id=row[8],
            attempt=row[9],
            max_attempts=row[10],
            idempotency_key=row[11],
            payload=row[12],
            webhook_secret=bytes(row[13]) if row[13] is not None else None,
            webhook_secret_key_id=row[14],
        )
        for row in await cursor.fetchall()
    ]


async def next_run_at(conn: psycopg.AsyncConnection) -> datetime | None:
    cursor = await conn.execute(QUERIES["next_run_at"])
    row = await cursor.fetchone()
    return row[0] if row else None


async def record_attempts(
    conn: psycopg.AsyncConnection, *, worker: str, attempts: Sequence[Attempt]
) -> int:
    """Store a batch of outcomes in one statement; returns how many jobs moved on (the rest
    had lost their lease: their results are kept, their jobs left to the new holder)."""
    if not attempts:
        return 0
    outcomes = [_outcome(attempt) for attempt in attempts]
    cursor = await conn.execute(
        QUERIES["record_attempts"],
        {"worker": worker, "outcomes": orjson.dumps(outcomes).decode()},
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


def _outcome(attempt: Attempt) -> dict[str, Any]:
    """An attempt as record_attempts reads it (a row of its JSON array)."""
    job = attempt.job
    return {"job_id": job.id, "attempt": job.attempt, "next_status": attempt.next_status,
            "retry_in": attempt.retry_in, "error": attempt.error,
            "result_status": attempt.result_status, "duration_ms": attempt.duration_ms,
            "response": attempt.response, "user_id": job.user_id,
            "trigger_id": job.trigger_id, "action_id": job.action_id,
            "event_id": job.event_id, "chain_id": job.chain_id,
            "action_type": job.action_type, "counted": attempt.counted}  # fmt: skip


@dataclass(frozen=True)
class BreakerFeed:
    trigger_id: str
    reset: bool  # a delivery succeeded
    failures: int  # dead jobs after the last success
    error: str


def breaker_feed(attempts: Sequence[Attempt]) -> list[BreakerFeed]:
    """What a batch of finished deliveries tells each trigger's circuit breaker, in order.
    Only finished jobs count: a retry is not yet a failed delivery; alerts do not count."""
    state: dict[str, tuple[bool, int, str]] = {}
    for attempt in attempts:
        if attempt.job.is_alert:
            continue  # about a breaker that is open already: not the trigger's delivery
        reset, failures, _ = state.get(attempt.job.trigger_id, (False, 0, ""))
        if attempt.next_status == "succeeded":
            state[attempt.job.trigger_id] = (True, 0, "")
        elif attempt.next_status == "dead":
            state[attempt.job.trigger_id] = (reset, failures + 1, attempt.error or "")
    return [BreakerFeed(t, *values) for t, values in state.items()]


async def feed_circuit_breakers(
    conn: psycopg.AsyncConnection, feeds: Sequence[BreakerFeed]
) -> list[str]:
    """Apply the feeds; returns the triggers this disabled."""
    if not feeds:
        return []
    cursor = await conn.execute(
        QUERIES["feed_circuit_breakers"],
        {
            "trigger_ids": [f.trigger_id for f in feeds],
            "resets": [f.reset for f in feeds],
            "failures": [f.failures for f in feeds],
            "errors": [f.error for f in feeds],
        },
    )
    return [row[0] for row in await cursor.fetchall()]


async def release_expired_leases(conn: psycopg.AsyncConnection, *, limit: int = 1000) -> int:
    cursor = await conn.execute(QUERIES["release_expired_leases"], {"limit": limit})
    return len(await cursor.fetchall())


@dataclass(frozen=True)
class DeadJob:
    id: int
    trigger_id: str
    trigger_name: str
    action_type: str
    event_id: int | None  # None: a silence that ran from its trigger's start
    chain_id: int
    attempts: int
    last_error: str | None
    finished_at: datetime | None


async def dead_jobs(conn: psycopg.AsyncConnection, *, limit: int = 50) -> list[DeadJob]:
    cursor = await conn.execute(QUERIES["dead_jobs"], {"limit": limit})
    return [DeadJob(*row) for row in await cursor.fetchall()]


async def redeliver_jobs(
    conn: psycopg.AsyncConnection[Any],
    *,
    statuses: Sequence[str] = ("dead",),
    user_id: str | None = None,
    job_ids: Sequence[int] | None = None,
    trigger_id: str | None = None,
    from_time: datetime | None = None,
    to_time: datetime | None = None,
) -> list[int]:
    """Queue finished jobs again, with a fresh set of attempts and the same idempotency key:
    those of `job_ids`, or of `trigger_id` made between the times, in `statuses`, of
    `user_id` (None: any user's, as the operator's CLI asks); returns their ids. The CLI's
    `jobs retry` and the API's redelivery routes both come here."""
    cursor = conn.cursor(row_factory=tuple_row)  # whatever rows the connection makes
    await cursor.execute(QUERIES["redeliver_jobs"], {
        "statuses": list(statuses), "user_id": user_id,
        "job_ids": list(job_ids) if job_ids is not None else None, "trigger_id": trigger_id,
        "from_time": from_time, "to_time": to_time,
    })  # fmt: skip
    return [row[0] for row in await cursor.fetchall()]


async def job_statuses(conn: psycopg.AsyncConnection, job_ids: Sequence[int]) -> dict[int, str]:
    cursor = await conn.execute(QUERIES["job_statuses"], {"job_ids": list(job_ids)})
    return {row[0]: row[1] for row in await cursor.fetchall()}
