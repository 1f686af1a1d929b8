"""Noise control, shared by every worker through PostgreSQL.

- Rate limits are send slots: a target (an action, a Telegram chat, the Telegram bot) has a
  next free send time, which each delivery takes and moves on by the target's interval
  (`take_slot`); a slot a few seconds away is waited for, a later one makes the attempt
  retryable at that time.
- An action's dedup window: a rendered message (a channel's preview of it) that another job of
  the action sent within the window is not sent again (`is_repeat`); the job is recorded as
  delivered, deduplicated. While that other job has not sent it yet (it is sending, or
  retrying), the repeat waits for its outcome: if it gives up, the repeat is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import orjson
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.channel import Preview
from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.database.queries import load_queries

QUERIES = load_queries("erc8004_backend.actions", "noise.sql")
# A slot further away than this is not waited for: the attempt is retried at its time.
MAX_SLOT_WAIT = 5.0
# A message another job is sending: its outcome is waited for this long, looked at after
# HOLDER_POLL, then twice as long each time.
HOLDER_WAIT = 5.0
HOLDER_POLL = 0.05


async def take_slot(
    pool: AsyncConnectionPool, target: str, interval: float, *, max_wait: float = MAX_SLOT_WAIT
) -> None:
    """Waits for the target's next send slot (every `interval` seconds, across workers), or
    raises a retryable DeliveryFailed when it is more than `max_wait` away: not counted as
    an attempt (nothing was sent), so that a busy shared target (Telegram's bot-wide limit)
    delays jobs rather than dead-letters them and trips their triggers' breakers."""
    params = {"target": target, "interval": interval, "max_wait": max_wait}
    async with pool.connection() as conn:
        cursor = conn.cursor(row_factory=tuple_row)  # whatever rows the pool's connections make
        row = await (await cursor.execute(QUERIES["take_slot"], params)).fetchone()
        if row is None:
            busy = await (await cursor.execute(QUERIES["busy_until"], params)).fetchone()
            wait = float(busy[0]) if busy else interval
            raise DeliveryFailed(f"rate limited: {target} has no free slot for {wait:.1f} s",
                                 retryable=True, retry_after=wait, counted=False)  # fmt: skip
    if (wait := float(row[0])) > 0:
        await asyncio.sleep(wait)


def message_hash(preview: Preview) -> bytes:
    return hashlib.sha256(orjson.dumps([preview.text, preview.body])).digest()


async def is_repeat(
    pool: AsyncConnectionPool,
    job: Job,
    preview: Preview,
    window: int,
    *,
    max_wait: float = HOLDER_WAIT,
) -> bool:
    """Whether another job of the action sent this message within `window` seconds; if not,
    the message is this job's now (its own later attempts are no repeats). A job that holds
    the message but has not sent it yet is waited for: while it is being sent, up to
    `max_wait` (looking again after 50, 100, 200 ... ms); while it waits to try again, by a
    retryable DeliveryFailed, not counted, for just after its next attempt. If it gives up,
    the message is this job's to send."""
    params: dict[str, Any] = {"action_id": job.action_id, "message_hash": message_hash(preview),
                              "job_id": job.id, "window": window}  # fmt: skip
    deadline = time.monotonic() + max_wait
    pause = HOLDER_POLL
    while True:
        async with pool.connection() as conn:
            cursor = conn.cursor(row_factory=tuple_row)
            if await (await cursor.execute(QUERIES["claim_message"], params)).fetchone():
                return False
            holder = await (await cursor.execute(QUERIES["message_holder"], params)).fetchone()
        holder_id, status, retry_in = holder if holder is not None else (None, None, None)
        if status == "queued":
            raise DeliveryFailed(
                f"job {holder_id} of this action holds the same message and tries again later:"
                " this one waits for its outcome",
                retryable=True, retry_after=max(0.0, retry_in or 0.0) + 1.0, counted=False,
            )  # fmt: skip
        if status not in (None, "running"):
            return True  # sent, or in a digest that is (dead and cancelled holders let go)
        if time.monotonic() + pause > deadline:  # being sent (or its claim just gone): still
            raise DeliveryFailed(
                "another job of this action is sending the same message: this one waits for"
                " its outcome",
                retryable=True, retry_after=HOLDER_WAIT, counted=False,
            )  # fmt: skip
        await asyncio.sleep(pause)
        pause *= 2


async def forget_old_messages(pool: AsyncConnectionPool) -> None:
    async with pool.connection() as conn:
        await conn.execute(QUERIES["forget_old_messages"])
