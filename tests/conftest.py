"""Test databases: each test gets a throwaway database on a real PostgreSQL server.

The server is TEST_DATABASE_URL's, else the local one on 127.0.0.1:5432, else an embedded
server started for the session in a temporary directory (so the suite runs on a machine
with nothing installed).

Markers: `devnet` (runs anvil), `subprocess` (runs our commands or another program) and
`slow`; `scripts/test -m "not slow"` is the fast inner loop of pure and database tests.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import structlog
from hypothesis import settings
from psycopg import sql

from erc8004_backend.cli.logs import console_renderer
from erc8004_backend.database.connection import connect, with_database
from erc8004_backend.database.embedded import embedded_postgres
from erc8004_backend.database.migrations import Migrator, load_source

pytest_plugins = ["tests.support.devnet"]

# CI runs the same examples every time, so that a red run is about the change, not the dice;
# local runs keep exploring (and remember failures in .hypothesis/).
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Logs as structlog's default (to stdout, captured per test), but tracebacks without their
# local variables, as the commands log them: never secrets, and no megabytes per error.
structlog.configure(
    processors=[*structlog.get_config()["processors"][:-1], console_renderer(colors=False)]
)

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "database" / "migrations"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"

# A test using one of these fixtures runs anvil.
DEVNET_FIXTURES = {"anvil_node", "devnet"}
# Every test in these directories runs our commands (or the benchmarks) as processes.
SUBPROCESS_DIRECTORIES = (ROOT / "tests" / "cli", ROOT / "tests" / "bench")


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by them
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers implied by a test's fixtures and directory; `devnet` and `subprocess` tests
    are `slow`, so that `-m "not slow"` runs the pure and database tests alone."""
    for item in items:
        if DEVNET_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.devnet)
        if any(item.path.is_relative_to(directory) for directory in SUBPROCESS_DIRECTORIES):
            item.add_marker(pytest.mark.subprocess)
        if item.get_closest_marker("devnet") or item.get_closest_marker("subprocess"):
            item.add_marker(pytest.mark.slow)


def _reachable(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def embedded_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An embedded server of the session's own, removed at the end."""
    with embedded_postgres(tmp_path_factory.mktemp("embedded"), "postgres", delete=True) as url:
        yield url


@pytest.fixture(scope="session")
def admin_url(request: pytest.FixtureRequest) -> str:
    """A superuser URL on the server the tests use."""
    url = os.environ.get("TEST_DATABASE_URL", LOCAL_SERVER)
    if _reachable(url):
        return url
    embedded: str = request.getfixturevalue("embedded_admin_url")
    return embedded


def create_database(admin_url: str, template: str | None = None) -> str:
    name = f"erc8004_test_{uuid.uuid4().hex[:12]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with connect(admin_url) as connection:
        connection.execute(statement)
    return with_database(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with connect(admin_url) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
        )


class Dropper:
    """Drops the tests' databases in batches, on threads of their own. A drop waits for a
    checkpoint (up to a second on a busy server, and the next CREATE DATABASE is slower after
    one): a batch's drops run all at once and share one, and no test waits for them."""

    BATCH = 16

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._threads = ThreadPoolExecutor(self.BATCH, thread_name_prefix="drop-database")
        self._waiting: list[str] = []
        self._drops: list[Future[None]] = []

    def drop_later(self, url: str) -> None:
        self._waiting.append(url)
        if len(self._waiting) >= self.BATCH:
            self._start_drops()

    def finish(self) -> None:
        """Every database dropped; a failed drop raises."""
        self._start_drops()
        self._threads.shutdown()
        for drop in self._drops:
            drop.result()

    def _start_drops(self) -> None:
        self._drops += [self._threads.submit(drop_database, self.admin_url, url)
                        for url in self._waiting]  # fmt: skip
        self._waiting.clear()


@pytest.fixture(scope="session")
def drop_later(admin_url: str) -> Iterator[Callable[[str], None]]:
    """Drops a test's database soon after the test (see Dropper); all by the session's end."""
    dropper = Dropper(admin_url)
    try:
        yield dropper.drop_later
    finally:
        dropper.finish()


@pytest.fixture
def database_url(admin_url: str, drop_later: Callable[[str], None]) -> Iterator[str]:
    """An empty database, dropped after the test."""
    url = create_database(admin_url)
    yield url
    drop_later(url)


@pytest.fixture(scope="session")
def migrated_template(admin_url: str) -> Iterator[str]:
    """A database migrated once per session, copied for each test that wants one (a copy
    takes a fraction of the time the migrations take)."""
    url = create_database(admin_url)
    with connect(url) as connection:
        Migrator(connection, load_source(MIGRATIONS)).run()
    yield str(psycopg.conninfo.conninfo_to_dict(url)["dbname"])
    drop_database(admin_url, url)


class Copier:
    """Copies the migrated template ahead of the tests that take a copy, on a thread of its
    own: a CREATE DATABASE waits for the disk (about a tenth of a second) while the tests
    before run, not in the test's setup."""

    AHEAD = 2  # copies kept ready beyond the one being taken

    def __init__(self, admin_url: str, template: str) -> None:
        self.admin_url = admin_url
        self.template = template
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy-database")
        self._copies: deque[Future[str]] = deque()

    def take(self) -> str:
        while len(self._copies) <= self.AHEAD:
            self._copies.append(self._thread.submit(create_database, self.admin_url, self.template))
        return self._copies.popleft().result()

    def finish(self) -> list[str]:
        """The copies no test took."""
        self._thread.shutdown()
        return [copy.result() for copy in self._copies]


@pytest.fixture(scope="session")
def migrated_copies(
    admin_url: str, migrated_template: str, drop_later: Callable[[str], None]
) -> Iterator[Copier]:
    """Copies of the migrated template, made ahead; the ones left over dropped at the end."""
    copier = Copier(admin_url, migrated_template)
    try:
        yield copier
    finally:
        for url in copier.finish():
            drop_later(url)


@pytest.fixture
def migrated_url(migrated_copies: Copier, drop_later: Callable[[str], None]) -> Iterator[str]:
    """A database with every migration applied."""
    url = migrated_copies.take()
    yield url
    drop_later(url)


@pytest.fixture
def db(migrated_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to a migrated database."""
    with connect(migrated_url) as connection:
        yield connection
