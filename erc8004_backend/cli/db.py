"""`erc8004 db`: migrations, seed data, backup and restore, statistics and health checks."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.config import get_settings
from erc8004_backend.database import admin
from erc8004_backend.database.connection import connect, redact_url
from erc8004_backend.database.migrations import (
    MigrationError,
    Migrator,
    Status,
    TargetVersionError,
    add_migration,
    load_source,
)
from erc8004_backend.indexer.read_model import ChainRebuild, chains_with_events, rebuild_chain

db_app = typer.Typer(
    help="Database: migrations, seed data, backup, monitoring.", no_args_is_help=True
)
migrate_app = typer.Typer(
    help="Apply, inspect, revert and create migrations.", no_args_is_help=True
)
db_app.add_typer(migrate_app, name="migrate")

# Tables stay readable when the output goes to a file or a pipe (rich assumes 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
notes = Console(stderr=True)

Source = Annotated[
    Path, typer.Option("--source", metavar="DIR", help="Directory of the migration files.")
]
DEFAULT_SOURCE = Path("database/migrations")
DEFAULT_SEED = Path("database/seeds/test_data.sql")


def _duration(nanoseconds: int) -> str:
    if nanoseconds < 0:
        return "?"
    return f"{nanoseconds / 1e6:.1f} ms"


# -- migrate -----------------------------------------------------------------------------


@contextmanager
def refused_as_bad_target_version() -> Iterator[None]:
    """A refused --target-version is bad input: a usage error (exit 2) naming the option."""
    try:
        yield
    except TargetVersionError as error:
        raise typer.BadParameter(str(error), param_hint="'--target-version'") from None


@migrate_app.command("run")
def migrate_run(
    database_url: DatabaseUrl = None,
    source: Source = DEFAULT_SOURCE,
    target_version: Annotated[
        int | None,
        typer.Option(metavar="VERSION", help="Apply migrations up to this version only."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="List what would be applied.")] = False,
) -> None:
    """Apply all pending migrations."""
    migrations = load_source(source)
    with (
        database(database_url) as url,
        connect(url) as connection,
        refused_as_bad_target_version(),
    ):
        migrator = Migrator(connection, migrations)
        if dry_run:
            pending = migrator.to_apply(target_version)
            for migration in pending:
                console.print(f"would apply {migration.version}/migrate {migration.description}")
            if not pending:
                console.print("nothing to apply")
            return
        applied = migrator.run(target_version)
    for migration, elapsed in applied:
        console.print(
            f"Applied {migration.version}/migrate {migration.description} ({_duration(elapsed)})"
        )
    if not applied:
        console.print("Database is up to date.")


@migrate_app.command("info")
def migrate_info(database_url: DatabaseUrl = None, source: Source = DEFAULT_SOURCE) -> None:
    """Show every migration and whether it is applied."""
    migrations = load_source(source)
    with database(database_url) as url, connect(url) as connection:
        states = Migrator(connection, migrations).states()
    styles = {
        Status.APPLIED: "green",
        Status.PENDING: "yellow",
        Status.CHANGED: "red",
        Status.FAILED: "red",
        Status.MISSING: "red",
    }
    table = Table(title=f"Migrations in {source}", title_justify="left")
    for column in ("version", "description", "status", "installed on", "time"):
        table.add_column(column)
    for state in states:
        row = state.applied
        table.add_row(
            str(state.version),
            state.description,
            f"[{styles[state.status]}]{state.status.value}[/]",
            row.installed_on.strftime("%Y-%m-%d %H:%M") if row else "",
            _duration(row.execution_time) if row else "",
        )
    console.print(table)
    problems = [s for s in states if s.status in (Status.CHANGED, Status.FAILED, Status.MISSING)]
    if problems:
        raise MigrationError(
            f"{len(problems)} migration(s) need attention: "
            + ", ".join(f"{s.version} is {s.status.value}" for s in problems)
        )


@migrate_app.command("revert")
def migrate_revert(
    database_url: DatabaseUrl = None,
    source: Source = DEFAULT_SOURCE,
    target_version: Annotated[
        int | None,
        typer.Option(metavar="VERSION", help="Revert every applied migration above this version."),
    ] = None,
) -> None:
    """Revert the last applied migration (with its .down.sql file)."""
    migrations = load_source(source)
    with (
        database(database_url) as url,
        connect(url) as connection,
        refused_as_bad_target_version(),
    ):
        reverted = Migrator(connection, migrations).revert(target_version)
    for migration, elapsed in reverted:
        console.print(
            f"Reverted {migration.version}/revert {migration.description} ({_duration(elapsed)})"
        )
    if not reverted:
        console.print("No migration to revert.")


@migrate_app.command("add")
def migrate_add(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="What the migration does, e.g. add_notes_table."),
    ],
    reversible: Annotated[
        bool, typer.Option("-r", "--reversible", help="Create .up.sql and .down.sql files.")
    ] = False,
    source: Source = DEFAULT_SOURCE,
) -> None:
    """Create a new migration file (or an up/down pair with -r)."""
    for path in add_migration(source, name, reversible=reversible):
        console.print(f"Creating {path}")


# -- seed, backup, restore ---------------------------------------------------------------


@db_app.command("seed")
def seed(
    database_url: DatabaseUrl = None,
    file: Annotated[
        Path, typer.Option("--file", metavar="FILE", help="SQL file to load.")
    ] = DEFAULT_SEED,
) -> None:
    """Load the development test data (users alice, bob, charlie; password123)."""
    with database(database_url) as url, connect(url) as connection:
        admin.load_sql_file(connection, file)
    console.print(f"Loaded {file}")


@db_app.command("backup")
def backup(
    file: Annotated[
        Path | None,
        typer.Argument(metavar="FILE", help="Output file \\[default: backup_YYYYMMDD.dump]"),
    ] = None,
    database_url: DatabaseUrl = None,
    schema_only: Annotated[bool, typer.Option(help="Plain SQL of the schema only.")] = False,
    data_only: Annotated[bool, typer.Option(help="Plain SQL of the data only.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Back up the database (pg_dump custom format unless --schema-only / --data-only)."""
    if schema_only and data_only:
        raise admin.AdminError("--schema-only and --data-only exclude each other")
    fmt = (
        admin.BackupFormat.SCHEMA
        if schema_only
        else admin.BackupFormat.DATA
        if data_only
        else admin.BackupFormat.CUSTOM
    )
    if file is None:
        suffix = ".dump" if fmt is admin.BackupFormat.CUSTOM else f"_{fmt.value}.sql"
        file = Path(f"backup_{date.today():%Y%m%d}{suffix}")
    if file.exists() and not force:
        raise admin.AdminError(f"{file} exists already (pass --force to overwrite)")
    with database(database_url) as url:
        admin.backup(url, file, fmt)
    console.print(f"Backed up to {file} ({file.stat().st_size:,} bytes)")


@db_app.command("restore")
def restore(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A .dump from `db backup`, or a .sql file.")
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Restore a backup: a .dump into a new database (created if missing), a .sql file as is.
    A truncated or unreadable file is refused; a database created for a failed restore is
    dropped again."""
    with database(database_url) as url:
        try:
            admin.restore(url, file)
        except admin.BackupFileError as error:
            raise typer.BadParameter(str(error), param_hint="'FILE'") from None
        console.print(f"Restored {file} into {redact_url(url)}")


# -- monitoring --------------------------------------------------------------------------


def _print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title, title_justify="left")
    if not rows:
        console.print(f"{title}: none")
        return
    for column in rows[0]:
        table.add_column(column, justify="right" if isinstance(rows[0][column], int) else "left")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    console.print(table)


@db_app.command("stats")
def stats(database_url: DatabaseUrl = None) -> None:
    """Table sizes, index usage and connections (the seed's monitoring queries)."""
    with database(database_url) as url, connect(url) as connection:
        result = admin.collect_stats(connection)
    _print_rows("Database size by table", result.tables)
    _print_rows("Index usage", result.indexes)
    _print_rows("Active connections", result.connections)


@db_app.command("doctor")
def doctor(database_url: DatabaseUrl = None, source: Source = DEFAULT_SOURCE) -> None:
    """Check extensions, privileges, migrations and partitioning, with a fix for each problem."""
    migrations = load_source(source) if source.is_dir() else None
    with database(database_url) as url, connect(url) as connection:
        checks = admin.run_doctor(connection, migrations, get_settings().token_keys)
    marks = {
        admin.Level.OK: "[green]ok[/]",
        admin.Level.WARN: "[yellow]warn[/]",
        admin.Level.FAIL: "[red]FAIL[/]",
    }
    if migrations is None:
        console.print(f"[yellow]warn[/] migrations: no directory {source}; not checked")
    for check in checks:
        console.print(f"{marks[check.level]:>4} {check.name}: {check.detail}", highlight=False)
        if check.hint and check.level is not admin.Level.OK:
            console.print(f"     fix: {check.hint}", highlight=False)
    failed = [c.name for c in checks if c.level is admin.Level.FAIL]
    if failed:
        raise admin.AdminError(f"doctor found problems: {', '.join(failed)}")


@db_app.command("dump-schema")
def dump_schema(
    database_url: DatabaseUrl = None,
    output: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print the schema of a migrated database in the form of database/schema.sql."""
    with database(database_url) as url:
        schema = admin.dump_schema(url)
    if output:
        output.write_text(schema)
        notes.print(f"wrote {output}")
    else:
        console.out(schema, end="", highlight=False)


# -- the read model ------------------------------------------------------------------------


def _rebuilt(result: ChainRebuild) -> str:
    if not result.events:
        return (
            f"chain {result.chain_id}: no events; its read model is empty ({result.seconds:.1f} s)"
        )
    return (
        f"chain {result.chain_id}: {result.events:,} events in blocks {result.first_block:,}"
        f"-{result.last_block:,} -> {result.agents:,} agents, {result.feedback:,} feedback"
        f" ({result.revoked:,} revoked), {result.responses:,} responses,"
        f" {result.validation_requests:,} validation requests ({result.seconds:.1f} s)"
    )


@db_app.command("rebuild-read-model")
def rebuild_read_model(
    database_url: DatabaseUrl = None,
    chain: Annotated[
        list[int] | None,
        typer.Option(
            "--chain",
            metavar="CHAIN_ID",
            help="Rebuild this chain only (repeatable). Default: every chain with events.",
        ),
    ] = None,
) -> None:
    """Rebuild the read model (agents, feedback, responses, validations) from the stored
    events, one transaction per chain. A running indexer waits for each chain's rebuild."""
    with database(database_url) as url, connect(url) as connection:
        chain_ids = chain or chains_with_events(connection)
        if not chain_ids:
            console.print("no events stored: nothing to rebuild")
            return
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=notes,
            transient=True,
            disable=not notes.is_terminal,
        ) as progress:
            for chain_id in chain_ids:
                task = progress.add_task(f"chain {chain_id}: events applied", total=None)

                def started(total: int, task: TaskID = task) -> None:
                    progress.update(task, total=total)

                def applied(events: int, task: TaskID = task) -> None:
                    progress.advance(task, events)

                result = rebuild_chain(connection, chain_id, on_start=started, on_progress=applied)
                progress.remove_task(task)
                console.print(_rebuilt(result), highlight=False)
