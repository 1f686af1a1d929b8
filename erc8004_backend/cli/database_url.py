"""The `--database-url` option every command that uses the database takes, and `database`,
which resolves it. Apart from `cli/db.py` (whose migrator and administration the other
commands do not need at their start)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "-D",
        metavar="URL",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="PostgreSQL URL. Without one, the embedded server is used.",
    ),
]


@contextmanager
def database(url: str | None) -> Iterator[str]:
    """The given database, or the embedded server's (started for the command's duration)."""
    from erc8004_backend.config import get_settings  # pydantic: not for the commands' help

    url = url or get_settings().database_url
    if url:
        yield url
        return
    from erc8004_backend.database.embedded import embedded_postgres  # only without a URL

    data_dir = get_settings().data_dir
    Console(stderr=True).print(
        f"[dim]no DATABASE_URL: using the embedded PostgreSQL in {data_dir}[/]", soft_wrap=True
    )
    with embedded_postgres(data_dir) as embedded_url:
        yield embedded_url
