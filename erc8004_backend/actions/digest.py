"""Digests: an action's firings within a window sent as one message.

An action whose config has `digest: {"window_seconds": N, "max_items": M}` is delivered in
windows of N seconds (starting at multiples of N in Unix time, so every worker agrees on
them). Through PostgreSQL, shared by every worker:

- A worker that claims a firing of such an action does not deliver it: it folds it into its
  window's digest, itself a job of the action (`fold_firings`, one statement): the firing
  ends in the state 'digested', and its action_results row says `{"digest_job_id": ...}`.
- The digest is due once its window has closed (plus SETTLE_SECONDS, for firings made at
  the end of the window whose transaction commits a moment later). Its first attempt closes
  it and freezes what it holds in its payload (`open_digest`): the count and the first M
  firings, in the order they were made. Its retries and redeliveries send the same message,
  with the digest's own idempotency key; its outcome is the circuit breaker's, as any job's.
- A firing of a window whose digest was already closed (one that committed later than the
  settling delay) goes into a second digest of the same window: a digest never holds a
  firing of another window, and no firing is in two.

Crash safety is the queue's: a worker that dies before folding its claimed firings leaves
them to expire and be claimed again; folding and closing are each one transaction.

The chat channels (telegram, slack, discord, email) send one message: a line saying how many
firings of which trigger the window held, each shown firing rendered with the action's own
template, then how many were not shown (`digest_text`). Webhooks (rest) get a JSON body with
the window, the count and the items, each the body the action would send for it. Retractions
are not folded: each is sent on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.delivery import Digest, Job
from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.actions", "digest.sql")
# A digest is due this long after its window ends: firings made in the window's last moments
# commit with the transaction that made them, a little later.
SETTLE_SECONDS = 2.0
DEFAULT_MAX_ITEMS = 10


async def fold_firings(
    conn: psycopg.AsyncConnection[Any],
    *,
    worker: str,
    firings: Sequence[tuple[Job, int]],
    settle_seconds: float = SETTLE_SECONDS,
) -> list[int]:
    """Folds claimed firings (each with its action's window, in seconds) into their windows'
    digests; returns the ids of those folded (a firing whose lease this worker lost is not)."""
    if not firings:
        return []
    cursor = conn.cursor(row_factory=tuple_row)
    await cursor.execute(QUERIES["fold_firings"], {
        "job_ids": [job.id for job, _ in firings],
        "attempts": [job.attempt for job, _ in firings],
        "window_seconds": [seconds for _, seconds in firings],
        "worker": worker, "settle_seconds": settle_seconds,
    })  # fmt: skip
    return [row[0] for row in await cursor.fetchall()]


async def open_digest(
    pool: AsyncConnectionPool,
    job: Job,
    *,
    max_items: int,
    explorer_of: Callable[[int], str | None],
) -> Job:
    """The digest job with what it holds: closed and frozen on its first attempt (one
    transaction), as frozen on any later one. (A digest that died before an attempt was
    closed then, not frozen: a redelivery freezes it here.)"""
    payload = job.payload
    if payload.get("digest") is None:
        async with pool.connection() as conn, conn.transaction():
            cursor = conn.cursor(row_factory=tuple_row)
            params = {"job_id": job.id, "max_items": max_items}
            await cursor.execute(QUERIES["close_digest"], params)
            # A new statement: it sees the firings of every fold the close waited for.
            row = await (await cursor.execute(QUERIES["freeze_digest"], params)).fetchone()
            payload = row[0] if row else payload
    frozen = payload.get("digest") or {}
    items = tuple(
        replace(job, id=item["job_id"], event_id=item["event_id"], chain_id=item["chain_id"],
                idempotency_key=item["idempotency_key"], payload=item["payload"],
                explorer_url=explorer_of(item["chain_id"]), digest=None)
        for item in frozen.get("items", [])
    )  # fmt: skip
    digest = Digest(
        count=int(frozen.get("count", 0)),
        window_start=_time(frozen.get("window_start")),
        window_end=_time(frozen.get("window_end")),
        items=items,
    )
    return replace(job, payload=payload, digest=digest)


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else datetime.min


def digest_header(job: Job, escape: Callable[[str], str] = str) -> str:
    """The line a digest message starts with (the trigger's name escaped as the channel
    asks, and the rest too: it has characters that are markup in some)."""
    digest = job.digest
    if digest is None:
        return ""
    firings = "firing" if digest.count == 1 else "firings"
    start, end = digest.window_start, digest.window_end
    return escape(f"Digest: {digest.count} {firings} of {job.trigger_name}"
                  f" from {start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC")  # fmt: skip


def more_line(count: int) -> str:
    return f"… and {count} more"


def digest_text(
    job: Job,
    item_text: Callable[[Job], str],
    *,
    limit: int,
    escape: Callable[[str], str] = str,
    separator: str = "\n\n",
) -> str:
    """A digest as one text: its header, then each shown firing's text while they fit in
    `limit` characters (whole: cutting one could break its markup; the first is always
    there), then how many were left out. The caller cuts the whole if the first alone is
    too long."""
    digest = job.digest
    if digest is None:
        return item_text(job)
    header = digest_header(job, escape)
    kept: list[str] = []
    for item in digest.items:
        text = item_text(item)
        left = digest.count - len(kept) - 1
        parts = [header, *kept, text] + ([escape(more_line(left))] if left else [])
        if kept and len(separator.join(parts)) > limit:
            break
        kept.append(text)
    left = digest.count - len(kept)
    return separator.join([header, *kept] + ([escape(more_line(left))] if left else []))
