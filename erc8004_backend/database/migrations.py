"""Migrations in SQLx's format and bookkeeping, so our tool and `sqlx migrate` can take turns.

A migration source is a directory of `<VERSION>_<DESCRIPTION>.sql` files, or pairs of
`.up.sql` / `.down.sql` files for reversible ones. Applied migrations are rows of
`_sqlx_migrations`: the version, the description (the name with `_` as spaces), whether it
succeeded, the SHA-384 checksum of the file's bytes, and the execution time in nanoseconds.

Before running anything the migrator checks what is applied against the source: a migration
whose file changed, one whose file is missing, or one left half-applied (success = false)
stops it with a message naming the migration. So does a target version SQLx refuses (see
check_target).
"""

from __future__ import annotations

import enum
import hashlib
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from erc8004_backend.database.queries import load_queries
from erc8004_backend.errors import Erc8004Error

QUERIES = load_queries(__package__ or "erc8004_backend.database", "migrations.sql")

_FILE_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+?)(?P<suffix>\.up\.sql|\.down\.sql|\.sql)$")
_NEW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_ -]*$")
NO_TRANSACTION_DIRECTIVE = "-- no-transaction"


class MigrationError(Erc8004Error):
    """The migration source or the database's migration history is not usable as it is."""


class TargetVersionError(MigrationError):
    """A target version the migrator refuses before it changes anything."""


class MigrationKind(enum.Enum):
    SIMPLE = ".sql"
    UP = ".up.sql"
    DOWN = ".down.sql"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    kind: MigrationKind
    path: Path
    sql: str

    @property
    def checksum(self) -> bytes:
        return hashlib.sha384(self.sql.encode()).digest()

    @property
    def no_transaction(self) -> bool:
        return self.sql.startswith(NO_TRANSACTION_DIRECTIVE)

    @property
    def label(self) -> str:
        return f"{self.version} ({self.description})"


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    description: str
    installed_on: datetime
    success: bool
    checksum: bytes
    execution_time: int  # nanoseconds; -1 while unknown

    @property
    def label(self) -> str:
        return f"{self.version} ({self.description})"


class Status(enum.Enum):
    APPLIED = "applied"
    PENDING = "pending"
    CHANGED = "changed"  # applied, but the file's checksum differs
    FAILED = "failed"  # recorded with success = false: half-applied
    MISSING = "missing"  # applied, but no file in the source


@dataclass(frozen=True)
class MigrationState:
    version: int
    description: str
    status: Status
    local: Migration | None
    applied: AppliedMigration | None


@dataclass(frozen=True)
class MigrationSource:
    """The migrations of a directory: forward ones (simple or up) and their down files."""

    path: Path
    forward: tuple[Migration, ...]
    down: dict[int, Migration]

    @property
    def reversible(self) -> bool | None:
        """Whether the source uses .up/.down pairs; None while it is empty."""
        if not self.forward:
            return None
        return self.forward[-1].kind is MigrationKind.UP


def parse_file_name(name: str) -> tuple[int, str, MigrationKind]:
    """Version, description and kind of a migration file name, as SQLx reads them."""
    match = _FILE_NAME.match(name)
    if match is None:
        raise MigrationError(
            f"malformed migration file name {name!r}: expected <VERSION>_<DESCRIPTION>.sql, "
            "or .up.sql / .down.sql for a reversible migration (VERSION is a number)"
        )
    version = int(match["version"])
    if version <= 0 or version > 2**63 - 1:
        raise MigrationError(f"malformed migration file name {name!r}: version out of range")
    kind = MigrationKind(match["suffix"])
    return version, match["name"].replace("_", " "), kind


def load_source(path: Path) -> MigrationSource:
    """Reads every migration of a directory; files that are not `.sql` are ignored."""
    if not path.is_dir():
        raise MigrationError(f"migrations directory not found: {path}")
    forward: dict[int, Migration] = {}
    down: dict[int, Migration] = {}
    for file in sorted(path.iterdir()):
        if not file.is_file() or file.suffix != ".sql":
            continue
        version, description, kind = parse_file_name(file.name)
        try:
            # Bytes as they are on disk (no newline translation): SQLx hashes the raw file.
            sql = file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise MigrationError(f"migration {file.name} is not valid UTF-8") from None
        migration = Migration(version, description, kind, file, sql)
        table = down if kind is MigrationKind.DOWN else forward
        if version in table:
            raise MigrationError(
                f"two migrations have version {version}: {table[version].path.name} and {file.name}"
            )
        table[version] = migration
    for version, migration in down.items():
        if version not in forward or forward[version].kind is not MigrationKind.UP:
            raise MigrationError(f"{migration.path.name} has no matching .up.sql migration")
    return MigrationSource(path, tuple(sorted(forward.values(), key=lambda m: m.version)), down)


def compare(source: MigrationSource, applied: Sequence[AppliedMigration]) -> list[MigrationState]:
    """The state of every migration known to the source or to the database, by version."""
    local = {m.version: m for m in source.forward}
    recorded = {a.version: a for a in applied}
    states = []
    for version in sorted(local.keys() | recorded.keys()):
        migration, row = local.get(version), recorded.get(version)
        if row is None:
            assert migration is not None
            status = Status.PENDING
        elif not row.success:
            status = Status.FAILED
        elif migration is None:
            status = Status.MISSING
        elif migration.checksum != row.checksum:
            status = Status.CHANGED
        else:
            status = Status.APPLIED
        description = migration.description if migration else row.description if row else ""
        states.append(MigrationState(version, description, status, migration, row))
    return states


def check_history(states: Sequence[MigrationState]) -> None:
    """Refuses to go on when the applied history does not match the source."""
    for state in states:
        name = state.local.path.name if state.local else f"{state.version} ({state.description})"
        if state.status is Status.FAILED:
            raise MigrationError(
                f"migration {name} is partially applied (success = false in _sqlx_migrations): "
                "repair the database by hand, then delete its row from _sqlx_migrations"
            )
        if state.status is Status.MISSING:
            raise MigrationError(
                f"migration {name} was applied but its file is missing from the source directory"
            )
        if state.status is Status.CHANGED:
            raise MigrationError(
                f"migration {name} was changed after it was applied (checksum differs): "
                "restore the original file and put the change in a new migration"
            )


def check_target(
    source: MigrationSource, states: Sequence[MigrationState], target: int, *, reverting: bool
) -> None:
    """Refuses a target version as sqlx-cli does: one that is no migration of the source
    (VersionNotPresent; 0 means "revert all"), one below the latest applied for run
    (VersionTooOld), one above it for revert (VersionTooNew)."""
    verb = "reverted" if reverting else "applied"
    if not (reverting and target == 0) and all(m.version != target for m in source.forward):
        raise TargetVersionError(
            f"{target} is not the version of a migration in {source.path}, nothing was {verb}"
            f" (`erc8004 db migrate info` lists them{'; 0 reverts all' if reverting else ''})"
        )
    latest = max((s.version for s in states if s.applied is not None), default=0)
    if not reverting and target < latest:
        raise TargetVersionError(
            f"{target} is older than the latest applied migration {latest}, nothing was "
            f"applied (to go back to {target}: erc8004 db migrate revert --target-version "
            f"{target})"
        )
    if reverting and target > latest:
        raise TargetVersionError(
            f"{target} is newer than the latest applied migration {latest}, nothing was reverted"
        )


def sqlx_lock_id(database: str) -> int:
    """The advisory lock key SQLx derives from the database name."""
    return 0x3D32AD9E * zlib.crc32(database.encode())


class Migrator:
    """Applies and reverts the migrations of a source on one connection (autocommit)."""

    def __init__(self, connection: psycopg.Connection, source: MigrationSource) -> None:
        self.connection = connection
        self.source = source

    def applied(self) -> list[AppliedMigration]:
        exists = self.connection.execute(QUERIES["migrations_table_exists"]).fetchone()
        if not exists or not exists[0]:
            return []
        rows = self.connection.execute(QUERIES["list_applied_migrations"]).fetchall()
        return [AppliedMigration(*row) for row in rows]

    def states(self) -> list[MigrationState]:
        return compare(self.source, self.applied())

    def to_apply(self, target_version: int | None = None) -> list[Migration]:
        """The migrations `run` applies, in order: the pending ones up to target_version."""
        states = self.states()
        check_history(states)
        if target_version is not None:
            check_target(self.source, states, target_version, reverting=False)
        return [
            s.local
            for s in states
            if s.status is Status.PENDING
            and s.local is not None
            and (target_version is None or s.version <= target_version)
        ]

    def to_revert(self, target_version: int | None = None) -> list[Migration]:
        """The down migrations `revert` runs, in order: the last applied one, or every one
        above target_version."""
        states = self.states()
        check_history(states)
        applied = [s for s in reversed(states) if s.status is Status.APPLIED]
        if target_version is None:
            applied = applied[:1]
        else:
            check_target(self.source, states, target_version, reverting=True)
            applied = [s for s in applied if s.version > target_version]
        downs = []
        for state in applied:
            down = self.source.down.get(state.version)
            if down is None:
                raise MigrationError(
                    f"cannot revert {state.local.path.name if state.local else state.version}: "
                    "it has no .down.sql file"
                )
            downs.append(down)
        return downs

    def run(self, target_version: int | None = None) -> list[tuple[Migration, int]]:
        """Applies pending migrations up to target_version; returns each with its duration."""
        with self._locked():
            # Checked before the table is created: a refused run leaves the database as it was.
            migrations = self.to_apply(target_version)
            self.connection.execute(QUERIES["create_migrations_table"])
            return [(migration, self._apply(migration)) for migration in migrations]

    def revert(self, target_version: int | None = None) -> list[tuple[Migration, int]]:
        """Reverts the last applied migration, or every one above target_version."""
        with self._locked():
            return [(down, self._revert(down)) for down in self.to_revert(target_version)]

    def _apply(self, migration: Migration) -> int:
        started = time.perf_counter_ns()
        record = {
            "version": migration.version,
            "description": migration.description,
            "checksum": migration.checksum,
        }
        # As SQLx: a migration that fails records nothing. Rows with success = false come
        # from older SQLx versions or interrupted tools, and stop every later run.
        if migration.no_transaction:
            self._execute(migration)
            self.connection.execute(QUERIES["insert_applied_migration"], record)
        else:
            with self.connection.transaction():
                self._execute(migration)
                self.connection.execute(QUERIES["insert_applied_migration"], record)
        elapsed = time.perf_counter_ns() - started
        self.connection.execute(
            QUERIES["update_execution_time"],
            {"execution_time": elapsed, "version": migration.version},
        )
        return elapsed

    def _revert(self, migration: Migration) -> int:
        started = time.perf_counter_ns()
        if migration.no_transaction:
            self._execute(migration)
            self.connection.execute(
                QUERIES["delete_applied_migration"], {"version": migration.version}
            )
        else:
            with self.connection.transaction():
                self._execute(migration)
                self.connection.execute(
                    QUERIES["delete_applied_migration"], {"version": migration.version}
                )
        return time.perf_counter_ns() - started

    def _execute(self, migration: Migration) -> None:
        try:
            # Without parameters psycopg sends the whole file at once, several statements
            # included, as psql and SQLx do.
            self.connection.execute(migration.sql.encode())
        except psycopg.Error as error:
            detail = (error.diag.message_primary or str(error)).strip()
            raise MigrationError(f"migration {migration.path.name} failed: {detail}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = {"lock_id": sqlx_lock_id(self.connection.info.dbname)}
        self.connection.execute(QUERIES["acquire_migration_lock"], lock)
        try:
            yield
        finally:
            if not self.connection.closed and not self.connection.broken:
                self.connection.execute(QUERIES["release_migration_lock"], lock)


def add_migration(
    source_dir: Path, name: str, *, reversible: bool, now: datetime | None = None
) -> list[Path]:
    """Creates the file(s) of a new migration, named as `sqlx migrate add` names them."""
    if not _NEW_NAME.match(name):
        raise MigrationError(
            f"malformed migration name {name!r}: use letters, digits, spaces, '_' and '-'"
        )
    source_dir.mkdir(parents=True, exist_ok=True)
    source = load_source(source_dir)
    if source.reversible is not None and source.reversible != reversible:
        kind = "reversible (.up.sql/.down.sql)" if source.reversible else "simple (.sql)"
        raise MigrationError(
            f"{source_dir} holds {kind} migrations; cannot mix them with "
            f"{'reversible' if reversible else 'simple'} ones"
            + ("" if reversible else " (pass -r)")
        )
    version = int((now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S"))
    if source.forward and version <= source.forward[-1].version:
        version = source.forward[-1].version + 1
    stem = f"{version}_{name.replace(' ', '_')}"
    if reversible:
        files = {
            source_dir / f"{stem}.up.sql": "-- Add up migration script here\n",
            source_dir / f"{stem}.down.sql": "-- Add down migration script here\n",
        }
    else:
        files = {source_dir / f"{stem}.sql": "-- Add migration script here\n"}
    for path, content in files.items():
        path.write_text(content)
    return list(files)
