"""Administration of a database: seeding, backup and restore, statistics, health checks,
and the schema reference file."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from erc8004_backend.config import holds_development_key
from erc8004_backend.database.connection import connect, database_name, with_database
from erc8004_backend.database.migrations import (
    MigrationSource,
    Migrator,
    Status,
)
from erc8004_backend.database.queries import load_queries
from erc8004_backend.database.tools import ClientToolError, find_client_tool, run_client_tool
from erc8004_backend.errors import Erc8004Error

QUERIES = load_queries(__package__ or "erc8004_backend.database", "admin.sql")


class AdminError(Erc8004Error):
    """An administration command cannot do what was asked."""


def fetch_all(connection: psycopg.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    with connection.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(QUERIES[name], params or None).fetchall()


def server_major(connection: psycopg.Connection) -> int:
    return connection.info.server_version // 10000


# -- seed data ---------------------------------------------------------------------------


def load_sql_file(connection: psycopg.Connection, path: Path) -> None:
    """Runs a SQL file in one transaction: all of it or nothing."""
    if not path.is_file():
        raise AdminError(f"SQL file not found: {path}")
    sql = path.read_text("utf-8")
    try:
        with connection.transaction():
            connection.execute(sql.encode())
    except psycopg.Error as error:
        detail = (error.diag.message_primary or str(error)).strip()
        raise AdminError(f"{path} failed, nothing was loaded: {detail}") from None


# -- backup and restore ------------------------------------------------------------------


class BackupFormat(enum.Enum):
    CUSTOM = "custom"  # pg_dump -Fc: compressed, for pg_restore
    SCHEMA = "schema"  # plain SQL, schema only
    DATA = "data"  # plain SQL, data only


def backup(url: str, path: Path, fmt: BackupFormat = BackupFormat.CUSTOM) -> Path:
    with connect(url) as connection:
        pg_dump = find_client_tool("pg_dump", server_major(connection))
    flags = {
        BackupFormat.CUSTOM: ["--format=custom"],
        BackupFormat.SCHEMA: ["--schema-only"],
        BackupFormat.DATA: ["--data-only"],
    }[fmt]
    partial = path.with_name(path.name + ".partial")
    run_client_tool([str(pg_dump), *flags, f"--file={partial}", f"--dbname={url}"], what="pg_dump")
    partial.replace(path)  # a failed backup never leaves a truncated file under the real name
    return path


class BackupFileError(AdminError):
    """A backup file refused before anything is restored: missing, truncated or unreadable."""


# The last line pg_dump writes into a plain SQL dump (then only `--`, blank lines and, since
# the 2025 minor releases, `\unrestrict KEY`): a file without it was cut short.
PLAIN_DUMP_TRAILER = "-- PostgreSQL database dump complete"


def restore(url: str, path: Path) -> None:
    """Restores a custom-format dump (pg_restore) into the database of `url`, which must be
    new or empty and is created when missing, or runs a plain SQL dump (psql) in one
    transaction. The file is checked whole first; when the restore fails, a database it
    created is dropped again (never one that existed before)."""
    if not path.is_file():
        raise BackupFileError(f"backup file not found: {path}")
    with path.open("rb") as file:
        custom_format = file.read(5) == b"PGDMP"
    with connect(with_database(url, "postgres")) as server:
        major = server_major(server)
    if custom_format:
        program = find_client_tool("pg_restore", major)
        check_custom_dump(program, path)
        options = ["--no-owner", "--exit-on-error", str(path)]
    else:
        check_plain_dump(path)
        program = find_client_tool("psql", major)
        options = ["--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"--file={path}"]
    created = create_database_if_missing(url)
    try:
        if custom_format and not created:
            with connect(url) as connection:
                if connection.execute(QUERIES["public_tables"]).fetchone():
                    raise AdminError(
                        f"database {database_name(url)!r} already has tables: restore a full "
                        "backup into a new database (it is created when it does not exist)"
                    )
        run_client_tool(
            [str(program), "--single-transaction", f"--dbname={url}", *options],
            what=program.name,
        )
    except BaseException as error:
        if not created:
            raise
        drop_database(url)
        if isinstance(error, ClientToolError):
            raise AdminError(
                f"{error} (the database created for the restore, {database_name(url)!r}, "
                "was dropped)"
            ) from None
        raise


def check_custom_dump(pg_restore: Path, path: Path) -> None:
    """Refuses an archive whose table of contents pg_restore cannot read whole. A garbled
    entry count makes pg_restore read no entry, restore nothing and succeed."""
    listing = run_client_tool(
        [str(pg_restore), "--list", "--verbose", str(path)], what="pg_restore"
    )
    announced = re.search(r"^;\s+TOC Entries: (-?\d+)$", listing, re.MULTILINE)
    listed = len(re.findall(r"^\d+;", listing, re.MULTILINE))
    if announced is None or int(announced[1]) != listed or listed == 0:
        raise BackupFileError(
            f"{path} is not a whole pg_dump archive: its table of contents announces "
            f"{announced[1] if announced else 'no'} entries, pg_restore reads {listed}; "
            "nothing was restored"
        )


def check_plain_dump(path: Path) -> None:
    """Refuses a plain SQL file that does not end as pg_dump ends one: a truncated dump
    would restore without the indexes and foreign keys that come last."""
    with path.open("rb") as file:
        file.seek(max(0, path.stat().st_size - 4096))
        tail = file.read().decode("utf-8", errors="replace")
    lines = [line.strip() for line in tail.splitlines()]
    last = [
        line for line in lines if line not in ("", "--") and not line.startswith("\\unrestrict ")
    ]
    if not last or last[-1] != PLAIN_DUMP_TRAILER:
        raise BackupFileError(
            f"{path} does not end with pg_dump's {PLAIN_DUMP_TRAILER!r} line: it is truncated "
            "or not a pg_dump plain-text dump; nothing was restored"
        )


def create_database_if_missing(url: str) -> bool:
    """Creates the database of `url` unless it exists; whether it was created."""
    with connect(with_database(url, "postgres")) as connection:
        if connection.execute(QUERIES["database_exists"], {"name": database_name(url)}).fetchone():
            return False
        connection.execute(_with_database_name(QUERIES["create_database"], url))
    return True


def drop_database(url: str) -> None:
    with connect(with_database(url, "postgres")) as connection:
        connection.execute(_with_database_name(QUERIES["drop_database"], url))


def _with_database_name(query: bytes, url: str) -> psycopg.sql.Composed:
    """A query with the database's name in it (quoted): DDL takes no parameters."""
    return psycopg.sql.SQL(query.decode()).format(
        database=psycopg.sql.Identifier(database_name(url))
    )


# -- statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    tables: list[dict[str, Any]]
    indexes: list[dict[str, Any]]
    connections: list[dict[str, Any]]


def collect_stats(connection: psycopg.Connection, index_limit: int = 30) -> Stats:
    return Stats(
        tables=fetch_all(connection, "table_sizes"),
        indexes=fetch_all(connection, "index_usage", limit=index_limit),
        connections=fetch_all(connection, "active_connections"),
    )


# -- doctor ------------------------------------------------------------------------------


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    hint: str = ""


def run_doctor(
    connection: psycopg.Connection, source: MigrationSource | None, token_keys: str
) -> list[Check]:
    """The seed's troubleshooting steps as checks, each with a fix hint when it fails."""
    info = fetch_all(connection, "server_info")[0]
    checks = [_check_server(info)]
    extensions = {row["name"]: row for row in fetch_all(connection, "extensions")}
    checks.append(_check_timescaledb(extensions.get("timescaledb"), info))
    checks.append(_check_pgcrypto(extensions.get("pgcrypto")))
    checks.append(_check_privileges(info))
    if source is not None:
        checks.append(_check_migrations(connection, source))
    checks.extend(_check_partitioning(connection))
    if holds_development_key(token_keys):
        checks.append(
            Check(
                "token key",
                Level.WARN,
                "ERC8004_TOKEN_KEYS holds the documented development key",
                "set ERC8004_TOKEN_KEYS to a key of your own before storing real tokens",
            )
        )
    else:
        checks.append(Check("token key", Level.OK, "a deployment key is configured"))
    return checks


def _check_server(info: dict[str, Any]) -> Check:
    if info["version_num"] < 150000:
        return Check(
            "server",
            Level.FAIL,
            f"PostgreSQL {info['version']}",
            "PostgreSQL 15 or newer is required",
        )
    return Check(
        "server",
        Level.OK,
        f"PostgreSQL {info['version']}, database {info['database']} as {info['role']}",
    )


def _check_timescaledb(row: dict[str, Any] | None, info: dict[str, Any]) -> Check:
    if row is None:
        return Check(
            "timescaledb",
            Level.OK,
            "not available: events use native weekly partitions",
            "optional; to use it install TimescaleDB for this PostgreSQL version "
            "(see database/README.md), preload it, then migrate a new database",
        )
    if row["installed_version"]:
        return Check("timescaledb", Level.OK, f"enabled ({row['installed_version']})")
    if "timescaledb" not in info["preload"]:
        return Check(
            "timescaledb",
            Level.WARN,
            "installed but not preloaded: native partitioning is used",
            "add timescaledb to shared_preload_libraries (timescaledb-tune), restart PostgreSQL",
        )
    return Check(
        "timescaledb",
        Level.WARN,
        f"available ({row['available_version']}) but not enabled",
        "run migrations as a role allowed to CREATE EXTENSION, or: "
        "psql -d <db> -c 'CREATE EXTENSION IF NOT EXISTS timescaledb;'",
    )


def _check_pgcrypto(row: dict[str, Any] | None) -> Check:
    if row is None:
        return Check("pgcrypto", Level.OK, "not available (nothing depends on it)")
    if row["installed_version"]:
        return Check("pgcrypto", Level.OK, f"enabled ({row['installed_version']})")
    return Check(
        "pgcrypto",
        Level.WARN,
        "available but not enabled",
        "psql -d <db> -c 'CREATE EXTENSION IF NOT EXISTS pgcrypto;' (or run the migrations)",
    )


def _check_privileges(info: dict[str, Any]) -> Check:
    if info["superuser"]:
        return Check("privileges", Level.OK, f"{info['role']} is a superuser")
    if info["can_create"]:
        return Check(
            "privileges",
            Level.OK,
            f"{info['role']} may create objects in {info['database']}",
            "TimescaleDB before 2.1.1 needs a superuser: create it first if you use it",
        )
    return Check(
        "privileges",
        Level.FAIL,
        f"{info['role']} may not create objects in {info['database']}",
        f"GRANT CREATE ON DATABASE {info['database']} TO {info['role']}; or migrate as a superuser",
    )


def _check_migrations(connection: psycopg.Connection, source: MigrationSource) -> Check:
    states = Migrator(connection, source).states()
    counts = {status: sum(s.status is status for s in states) for status in Status}
    broken = [s for s in states if s.status in (Status.FAILED, Status.CHANGED, Status.MISSING)]
    if broken:
        names = ", ".join(f"{s.version} {s.status.value}" for s in broken)
        return Check(
            "migrations",
            Level.FAIL,
            names,
            "run `erc8004 db migrate info` for details; never edit applied migrations",
        )
    if counts[Status.PENDING]:
        return Check(
            "migrations",
            Level.WARN,
            f"{counts[Status.APPLIED]} applied, {counts[Status.PENDING]} pending",
            "erc8004 db migrate run",
        )
    return Check("migrations", Level.OK, f"all {counts[Status.APPLIED]} applied")


def _check_partitioning(connection: psycopg.Connection) -> list[Check]:
    row = connection.execute(QUERIES["events_partitioning"]).fetchone()
    mode, timescaledb = row if row else (None, False)
    if mode is None:
        return [Check("events", Level.WARN, "no events table yet", "erc8004 db migrate run")]
    if mode == "plain":
        hypertable = timescaledb and connection.execute(QUERIES["is_hypertable"]).fetchone()[0]  # type: ignore[index]
        if not hypertable:
            return [
                Check(
                    "events",
                    Level.FAIL,
                    "events is not partitioned",
                    "migration 9 has not run: erc8004 db migrate run",
                )
            ]
        row = connection.execute(QUERIES["hypertable_interval"]).fetchone()
        interval = row[0] if row else None
        size = f"{interval.days} days" if isinstance(interval, timedelta) else str(interval)
        return [Check("events", Level.OK, f"TimescaleDB hypertable, chunks of {size}")]
    partitions = fetch_all(connection, "native_partitions")
    weekly = [p for p in partitions if p["partition"] != "events_default"]
    checks = [Check("events", Level.OK, f"native partitioning, {len(weekly)} weekly partitions")]
    if not any(p["partition"] == "events_default" for p in partitions):
        return [
            Check(
                "events",
                Level.FAIL,
                "native partitioning without migration 9's partitions",
                "erc8004 db migrate run",
            )
        ]
    now = datetime.now(UTC)
    uncovered = [
        at
        for at in (now, now + timedelta(days=7))
        if not connection.execute(QUERIES["partition_covers"], {"at": at}).fetchone()[0]  # type: ignore[index]
    ]
    if uncovered:
        checks.append(
            Check(
                "partitions ahead",
                Level.WARN,
                "no weekly partition for this week or the next",
                "the indexer creates them as it writes; or run: SELECT ensure_event_partitions("
                "now(), now() + interval '4 weeks');",
            )
        )
    stray = connection.execute(QUERIES["default_partition_rows"]).fetchone()
    if stray and stray[0]:
        checks.append(
            Check(
                "default partition",
                Level.WARN,
                f"{stray[0]} events outside every weekly partition",
                "SELECT ensure_event_partitions(min(block_time), max(block_time))"
                " FROM events_default;",
            )
        )
    return checks


# -- schema reference --------------------------------------------------------------------

SCHEMA_HEADER = """\
-- The schema the migrations in database/migrations produce, for reading and review.
-- Generated by `erc8004 db dump-schema` from a freshly migrated database on PostgreSQL
-- without TimescaleDB (native weekly partitions; the weekly partitions themselves depend
-- on the date and are left out). Do not edit: change the migrations and regenerate.
-- A test fails when this file and the migrations disagree.
"""

# Comments, session settings and pg_dump's \restrict lines vary between versions and runs;
# optional extensions (pgcrypto) depend on the server, not on the migrations.
_NOISE = re.compile(
    r"^(--.*|SET .*|SELECT pg_catalog\.set_config.*|\\(un)?restrict .*"
    r"|CREATE EXTENSION IF NOT EXISTS \w+ WITH SCHEMA \w+;)$"
)


def dump_schema(url: str) -> str:
    with connect(url) as connection:
        pg_dump = find_client_tool("pg_dump", server_major(connection))
    dump = run_client_tool(
        [
            str(pg_dump),
            "--schema-only",
            "--no-owner",
            "--no-privileges",
            "--no-comments",
            "--exclude-table=_sqlx_migrations",
            "--exclude-table=events_[0-9][0-9][0-9][0-9]w[0-9][0-9]",
            f"--dbname={url}",
        ],
        what="pg_dump",
    )
    return SCHEMA_HEADER + "\n" + normalize_schema(dump) + "\n"


def normalize_schema(text: str) -> str:
    """The statements of a schema dump without comments, session settings or blank runs,
    which vary between pg_dump versions and runs."""
    lines = [line.rstrip() for line in text.splitlines() if not _NOISE.match(line)]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    # PostgreSQL 18 names NOT NULL constraints where earlier versions do not.
    return re.sub(r" CONSTRAINT \w+_not_null NOT NULL", " NOT NULL", text)
