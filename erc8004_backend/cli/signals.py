"""Running a long-lived part until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

# Seconds after which a part has started (its lazy imports, pools and clients made). What
# exists then lives as long as the process: frozen (gc.freeze), a full collection no longer
# walks those objects (with the API and the channels loaded, about 100 ms each time, the
# tail of whatever request or batch it interrupted).
STARTED_AFTER_SECONDS = 3.0


async def run_until_signalled(
    work: Callable[[asyncio.Event], Awaitable[None]], name: str, *, grace: float = 0.0
) -> None:
    """Run `work(stop)`. A signal sets `stop`; the work is cancelled at once (`grace` 0) or
    after `grace` seconds if it has not returned by then, or at a second signal.

    The indexer and the processor commit whole transactions, so cancelling them loses
    nothing, and waiting for a step in flight could mean minutes of retries against an
    unresponsive node. Workers take a grace period to finish the deliveries in flight.
    """
    stop = asyncio.Event()
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []  # the grace deadline, the freeze

    def shut_down() -> None:
        if stop.is_set():  # a second signal: now
            main.cancel()
            return
        log.info(f"{name}.stopping", grace=grace)
        stop.set()
        if grace > 0:
            timers.append(loop.call_later(grace, main.cancel))
        else:
            main.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, shut_down)
    timers.append(loop.call_later(STARTED_AFTER_SECONDS, gc.freeze))
    try:
        await work(stop)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        for handle in timers:
            handle.cancel()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
