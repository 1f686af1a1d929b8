"""The `erc8004` command line."""

from __future__ import annotations

import sys

import psycopg
import typer
from rich.console import Console

from erc8004_backend.cli.actions import jobs_app, worker
from erc8004_backend.cli.api import api
from erc8004_backend.cli.chains import chains
from erc8004_backend.cli.db import db_app
from erc8004_backend.cli.demo import demo
from erc8004_backend.cli.devnet import devnet_app
from erc8004_backend.cli.indexer import indexer
from erc8004_backend.cli.mcp import mcp
from erc8004_backend.cli.run import run
from erc8004_backend.cli.triggers import processor, triggers_app
from erc8004_backend.cli.webhook_sink import webhook_sink
from erc8004_backend.errors import Erc8004Error

app = typer.Typer(
    name="erc8004",
    help="ERC-8004 backend: index the registries, evaluate triggers, deliver actions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.command("indexer")(indexer)
app.command("chains")(chains)
app.command("processor")(processor)
app.add_typer(triggers_app, name="triggers")
app.add_typer(devnet_app, name="devnet")
app.command("worker")(worker)
app.add_typer(jobs_app, name="jobs")
app.command("api")(api)
app.command("mcp")(mcp)
app.command("run")(run)
app.command("webhook-sink")(webhook_sink)
app.command("demo")(demo)

stderr = Console(stderr=True)


def main() -> None:
    try:
        app()
    except Erc8004Error as error:
        stderr.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except psycopg.Error as error:
        # Anything the database says that no command anticipated: still one line.
        detail = (error.diag.message_primary or str(error)).strip().splitlines()[0]
        stderr.print(f"[bold red]database error:[/] {detail}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        stderr.print("interrupted")
        sys.exit(130)
