"""Waiting for what a test started: `eventually()` polls a condition until it holds, and
`free_port()` picks a loopback port for a server the test starts (and then waits for)."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

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
