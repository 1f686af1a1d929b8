"""The dashboard in a real browser (Playwright driving Chromium) against the real system:
the API serving it, the trigger processor and an action worker, all on a migrated
PostgreSQL database, in a thread of the test process with an event loop of its own, on a
port of 127.0.0.1. Registry events are written into the database as the indexer would
(tests/support/agent_events.py) with the chain's checkpoint, so the processor fires on them.

One browser and one system serve the module (a new browser context, with its own cookies,
per test).

Chromium: $ERC8004_CHROMIUM, else the system's `chromium` (Debian's package; scripts/test
installs it on CI), else Playwright's own (`.venv/bin/playwright install chromium`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from playwright.sync_api import Error as PlaywrightError

from erc8004_backend.actions.worker import run_worker
from erc8004_backend.api.app import create_app
from erc8004_backend.api.event_stream import close_event_streams
from erc8004_backend.triggers.processor import run_processor
from tests.api.conftest import api_settings
from tests.conftest import ROOT, Copier
from tests.support.agent_events import ChainEvents
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink

T = TypeVar("T")
CHROMIUM_VARIABLE = "ERC8004_CHROMIUM"
SCREENSHOTS = ROOT / "docs" / "screenshots"
AXE_SCRIPT = ROOT / "node_modules" / "axe-core" / "axe.min.js"
CHAIN = 31337
VIEWPORT = {"width": 1280, "height": 900}


def chromium_executable() -> str | None:
    """The Chromium to drive; None: Playwright's own."""
    return (
        os.environ.get(CHROMIUM_VARIABLE)
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


# Per module, not per session: while Playwright's sync API is open, its event loop counts
# as running in this thread, and the async tests of other modules could not run theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_executable()
    with sync_playwright() as playwright:
        which = executable or "Playwright's own"
        try:
            launched = playwright.chromium.launch(executable_path=executable)
        except PlaywrightError as error:
            raise RuntimeError(
                f"cannot start Chromium ({which}) for the dashboard's"
                f" tests: install the system's (apt-get install chromium), set"
                f" {CHROMIUM_VARIABLE} to one, or run .venv/bin/playwright install chromium."
                f" {str(error).splitlines()[0]}"
            ) from None
        yield launched
        launched.close()


@dataclass
class System:
    """The system the dashboard is served by, running on `loop` in a thread of its own."""

    url: str  # the dashboard: http://127.0.0.1:<port>/
    database_url: str
    loop: asyncio.AbstractEventLoop
    chain: ChainEvents | None = None
    _conn: psycopg.AsyncConnection[Any] | None = field(default=None, repr=False)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Runs `coroutine` on the system's loop and returns its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def events(self, write: Callable[[ChainEvents], Awaitable[Any]]) -> None:
        """Registry events, as the indexer would store them: `write` adds them with the
        module's ChainEvents (one block each, timed now on), then the read model takes them
        in and the chain's checkpoint confirms them, so the processor and the streams see
        them."""

        async def written() -> None:
            if self._conn is None:
                self._conn = await psycopg.AsyncConnection.connect(
                    self.database_url, autocommit=True
                )
                self.chain = ChainEvents(self._conn, CHAIN, start=datetime.now(UTC))
            assert self.chain is not None
            await write(self.chain)
            # The score the indexer stores beside a feedback's value (ChainEvents leaves it).
            await self._conn.execute(
                "UPDATE events SET score = value / 10::numeric ^ value_decimals"
                " WHERE chain_id = %s AND value IS NOT NULL AND score IS NULL",
                [CHAIN],
            )
            await self.chain.apply()
            await self._conn.execute(
                "INSERT INTO checkpoints (chain_id, block_number, head_block_number,"
                " confirmed_block_number) VALUES (%(chain)s, %(block)s, %(block)s, %(block)s)"
                " ON CONFLICT (chain_id) DO UPDATE SET block_number = %(block)s,"
                " head_block_number = %(block)s, confirmed_block_number = %(block)s",
                {"chain": CHAIN, "block": self.chain.block},
            )
            await self._conn.execute("NOTIFY new_event")

        self.run(written())

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


@pytest.fixture(scope="module")
def system(migrated_copies: Copier, drop_later: Callable[[str], None]) -> Iterator[System]:
    database_url = migrated_copies.take()
    settings = api_settings(database_url, allow_private_urls=True)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="dashboard-system", daemon=True)
    thread.start()
    stop = asyncio.Event()
    parts: list[asyncio.Task[None]] = []
    stack = contextlib.AsyncExitStack()

    app = create_app(settings)

    async def start() -> str:
        url = await stack.enter_async_context(serve_asgi(app))
        parts.append(asyncio.create_task(run_processor(database_url, stop, poll_interval=0.2)))
        parts.append(
            asyncio.create_task(run_worker(database_url, stop, settings, shutdown_grace=0.5))
        )
        return url + "/"

    async def finish() -> None:
        close_event_streams(app)  # as `erc8004 api` does: streams end, the server stops
        stop.set()
        await asyncio.gather(*parts, return_exceptions=True)
        await stack.aclose()

    running = System("", database_url, loop)
    try:
        running.url = running.run(start())
        yield running
    finally:
        with contextlib.suppress(Exception):
            running.run(running.close())
            running.run(finish())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        drop_later(database_url)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no cookies), closed after the test."""
    fresh = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    yield fresh
    fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page that fails the test on any error the page's scripts throw, or a
    Content-Security-Policy refusal (logged to the console)."""
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    opened.problems = problems  # type: ignore[attr-defined]
    return opened


def screenshot(page: Page, name: str) -> Path:
    """Saves the page as <name>.png: into docs/screenshots (the README shows them) with
    ERC8004_UPDATE_SCREENSHOTS=1, else into a temporary directory, so that a test run leaves
    the checkout as it was (every rendering differs in its bytes)."""
    update = os.environ.get("ERC8004_UPDATE_SCREENSHOTS") == "1"
    directory = SCREENSHOTS if update else Path(tempfile.gettempdir()) / "erc8004-screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not AXE_SCRIPT.exists():
        raise RuntimeError(f"{AXE_SCRIPT} is missing: run npm install (scripts/bootstrap does)")
    # Evaluated through the DevTools protocol: the page's CSP refuses inline scripts.
    page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8"))
    violations: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']}:"
        f" {[node['target'] for node in violation['nodes']][:5]}"
        for violation in violations
        if violation["impact"] in ("serious", "critical")
    ]


@dataclass
class Sink:
    """A webhook receiver on the system's loop that checks signatures with `target.secret`
    (set it to the trigger's, once the dashboard shows it)."""

    url: str
    target: WebhookSink


@pytest.fixture(scope="module")
def sink(system: System) -> Iterator[Sink]:
    target = WebhookSink(secret="")
    stack = contextlib.AsyncExitStack()
    url = system.run(stack.enter_async_context(serve_asgi(target)))
    yield Sink(f"{url}/hook", target)
    system.run(stack.aclose())
