"""Running a long-lived part until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def run_until_signalled(work: Callable[[asyncio.Event], Awaitable[None]], name: str) -> None:
    """Run `work(stop)`. A signal sets `stop` and cancels the work at once: each part commits
    in whole transactions, so cancelling loses nothing, and waiting for a step in flight could
    mean minutes of retries against an unresponsive node."""
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None

    def shut_down() -> None:
        log.info(f"{name}.stopping")
        stop.set()
        main.cancel()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shut_down)
    try:
        await work(stop)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
