"""Waiting for what a test started: `eventually()` polls a condition until it holds,
`lock_waited_for()` until a database session waits for a lock, and `free_port()` picks a
loopback port for a server the test starts (and then waits for)."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import psycopg

T = TypeVar("T")

POLL_SECONDS = 0.02


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]], timeout: float = ..., *, what: str = ...
) -> T: ...
@overload
async def eventually(
    condition: Callable[[], T | None], timeout: float = ..., *, what: str = ...
) -> T: ...
async def eventually(condition: Callable[[], Any], timeout: float = 15.0, *, what: str = "") -> Any:
    """The condition's first truthy value, polled every 20 ms (a coroutine function's result
    is awaited); AssertionError with its last value if none comes within `timeout` seconds.
    Exceptions the condition raises are not caught: they fail the test at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{what or 'the condition'} did not hold within {timeout:g} s;"
                f" last value: {value!r}"
            )
        await asyncio.sleep(POLL_SECONDS)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def lock_waited_for(
    conn: psycopg.AsyncConnection[Any], pid: int | None = None, *, timeout: float = 10.0
) -> None:
    """Until the session `pid` (None: any session of `conn`'s database) waits for a lock."""

    async def waiting() -> bool:
        cursor = await conn.execute(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND (%s::int IS NULL OR pid = %s::int)",
            [pid, pid],
        )
        row = await cursor.fetchone()
        return bool(row and row[0])

    what = f"session {pid} waiting for a lock" if pid else "a session waiting for a lock"
    await eventually(waiting, timeout, what=what)
