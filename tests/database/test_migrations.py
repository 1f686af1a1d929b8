"""The SQLx-compatible migrator: source parsing, and its behaviour on a real database."""

from __future__ import annotations

import hashlib
import shutil
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from erc8004_backend.database.admin import dump_schema
from erc8004_backend.database.connection import connect
from erc8004_backend.database.migrations import (
    MigrationError,
    MigrationKind,
    Migrator,
    Status,
    add_migration,
    load_source,
    parse_file_name,
    sqlx_lock_id,
)
from tests.conftest import MIGRATIONS

SEED_FILE_NAMES = [
    "20250123000001_enable_extensions",
    "20250123000002_create_helper_functions",
    "20250123000003_create_users_table",
    "20250123000004_create_triggers_table",
    "20250123000005_create_trigger_conditions_table",
    "20250123000006_create_trigger_actions_table",
    "20250123000007_create_trigger_state_table",
    "20250123000008_create_events_table",
    "20250123000009_convert_events_to_hypertable",
    "20250123000010_create_checkpoints_table",
    "20250123000011_create_action_results_table",
    "20250123000012_create_agent_mcp_tokens_table",
]


@pytest.fixture
def source_copy(tmp_path: Path) -> Path:
    """A private copy of the migrations that a test may change."""
    return Path(shutil.copytree(MIGRATIONS, tmp_path / "migrations"))


def tables(connection: psycopg.Connection) -> set[str]:
    rows = connection.execute(
        "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE nspname = 'public' AND relkind IN ('r', 'p') AND NOT relispartition"
    ).fetchall()
    return {row[0] for row in rows}


# -- the source ---------------------------------------------------------------------------


def test_source_starts_with_the_seeds_twelve_reversible_migrations_in_order() -> None:
    source = load_source(MIGRATIONS)
    names = [m.path.name.removesuffix(".up.sql") for m in source.forward]
    assert names[:12] == SEED_FILE_NAMES
    assert all(m.kind is MigrationKind.UP for m in source.forward)
    assert sorted(source.down) == [m.version for m in source.forward]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "20250123000003_create_users_table.up.sql",
            (20250123000003, "create users table", MigrationKind.UP),
        ),
        ("7_x.down.sql", (7, "x", MigrationKind.DOWN)),
        ("1_simple_one.sql", (1, "simple one", MigrationKind.SIMPLE)),
    ],
)
def test_file_names_parse_as_sqlx_reads_them(
    name: str, expected: tuple[int, str, MigrationKind]
) -> None:
    assert parse_file_name(name) == expected


@pytest.mark.parametrize(
    "name", ["create_users.sql", "v1_users.sql", "0_zero.sql", "12.sql", "1_.sql"]
)
def test_malformed_file_names_are_refused_by_name(name: str) -> None:
    with pytest.raises(MigrationError, match="malformed migration file name"):
        parse_file_name(name)


def test_checksum_is_sha384_of_the_file_bytes() -> None:
    migration = load_source(MIGRATIONS).forward[0]
    assert migration.checksum == hashlib.sha384(migration.path.read_bytes()).digest()


def test_source_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="migrations directory not found"):
        load_source(tmp_path / "nope")
    (tmp_path / "1_a.up.sql").write_text("SELECT 1;")
    (tmp_path / "1_b.up.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="two migrations have version 1"):
        load_source(tmp_path)
    (tmp_path / "1_b.up.sql").unlink()
    (tmp_path / "2_c.down.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"2_c.down.sql has no matching \.up\.sql"):
        load_source(tmp_path)


def test_lock_id_is_sqlxs() -> None:
    # SQLx: 0x3d32ad9e * crc32(database name); crc32("123456789") is the CRC-32 check value.
    assert sqlx_lock_id("123456789") == 0x3D32AD9E * 0xCBF43926


# -- on a database ------------------------------------------------------------------------


def test_up_down_up_leaves_the_same_schema(database_url: str) -> None:
    source = load_source(MIGRATIONS)
    with connect(database_url) as connection:
        migrator = Migrator(connection, source)
        assert len(migrator.run()) == len(source.forward)
        first = dump_schema(database_url)
        assert len(migrator.revert(target_version=0)) == len(source.forward)
        assert tables(connection) == {"_sqlx_migrations"}
        assert connection.execute("SELECT count(*) FROM _sqlx_migrations").fetchone() == (0,)
        assert len(migrator.run()) == len(source.forward)
    assert dump_schema(database_url) == first
    assert "CREATE TABLE public.events" in first


def test_info_shows_each_state(database_url: str, source_copy: Path) -> None:
    with connect(database_url) as connection:
        migrator = Migrator(connection, load_source(source_copy))
        assert {s.status for s in migrator.states()} == {Status.PENDING}
        migrator.run(target_version=20250123000010)
        statuses = [s.status for s in migrator.states()]
        assert statuses == [Status.APPLIED] * 10 + [Status.PENDING] * (len(statuses) - 10)

        changed = source_copy / "20250123000003_create_users_table.up.sql"
        changed.write_text(changed.read_text() + "\n-- edited\n")
        (source_copy / "20250123000010_create_checkpoints_table.up.sql").unlink()
        (source_copy / "20250123000010_create_checkpoints_table.down.sql").unlink()
        connection.execute(
            "UPDATE _sqlx_migrations SET success = false WHERE version = 20250123000005"
        )
        by_version = {
            s.version: s.status for s in Migrator(connection, load_source(source_copy)).states()
        }
    assert by_version[20250123000003] is Status.CHANGED
    assert by_version[20250123000005] is Status.FAILED
    assert by_version[20250123000010] is Status.MISSING
    assert by_version[20250123000011] is Status.PENDING
    assert by_version[20250123000001] is Status.APPLIED


def test_revert_undoes_exactly_the_last_migration(database_url: str) -> None:
    with connect(database_url) as connection:
        migrator = Migrator(connection, load_source(MIGRATIONS))
        migrator.run(target_version=20250123000015)  # the last one to touch what follows
        reverted = migrator.revert()
        assert [m.path.name for m, _ in reverted] == ["20250123000015_api_accounts.down.sql"]
        assert "api_keys" not in tables(connection)
        assert {"users", "agent_mcp_tokens", "action_jobs"} <= tables(connection)
        indexes = {row[0] for row in connection.execute("SELECT indexname FROM pg_indexes")}
        assert "events_time_id_idx" not in indexes
        assert "events_chain_time_idx" in indexes
        statuses = [s.status for s in migrator.states()]
        assert statuses == [Status.APPLIED] * 14 + [Status.PENDING] * (len(statuses) - 14)


def history(connection: psycopg.Connection) -> tuple[set[str], list[tuple[object, ...]]]:
    """The tables and the _sqlx_migrations rows: what a refused command must leave as it was."""
    rows = connection.execute(
        "SELECT version, description, installed_on, success, checksum, execution_time "
        "FROM _sqlx_migrations ORDER BY version"
    ).fetchall()
    return tables(connection), rows


@pytest.mark.parametrize(
    ("operation", "target", "message"),
    [
        # A digit short of 20250123000008: it used to revert every migration.
        ("revert", 2025012300008, "2025012300008 is not the version of a migration in"),
        ("run", 2025012300008, "2025012300008 is not the version of a migration in"),
        ("run", 20990101000000, "20990101000000 is not the version of a migration in"),
        # SQLx's VersionTooOld and VersionTooNew.
        ("run", 20250123000008, "older than the latest applied migration 20250123000010"),
        ("revert", 20250123000012, "newer than the latest applied migration 20250123000010"),
    ],
)
def test_bad_target_version_is_refused_and_changes_nothing(
    database_url: str, operation: str, target: int, message: str
) -> None:
    with connect(database_url) as connection:
        migrator = Migrator(connection, load_source(MIGRATIONS))
        migrator.run(target_version=20250123000010)
        before = history(connection)
        with pytest.raises(MigrationError, match=message):
            getattr(migrator, operation)(target_version=target)
        assert history(connection) == before


def test_target_version_at_the_latest_applied_changes_nothing(database_url: str) -> None:
    with connect(database_url) as connection:
        migrator = Migrator(connection, load_source(MIGRATIONS))
        migrator.run(target_version=20250123000010)
        before = history(connection)
        assert migrator.run(target_version=20250123000010) == []
        assert migrator.revert(target_version=20250123000010) == []
        assert history(connection) == before


def test_unknown_target_on_a_new_database_creates_nothing(database_url: str) -> None:
    with connect(database_url) as connection:
        migrator = Migrator(connection, load_source(MIGRATIONS))
        with pytest.raises(MigrationError, match="is not the version of a migration"):
            migrator.run(target_version=2025012300008)
        assert tables(connection) == set()


def test_add_reversible_creates_a_pair_that_run_applies(
    database_url: str, source_copy: Path
) -> None:
    created = add_migration(
        source_copy,
        "add notes table",
        reversible=True,
        now=datetime(2026, 11, 24, 8, 30, 0, tzinfo=UTC),
    )
    assert [p.name for p in created] == [
        "20261124083000_add_notes_table.up.sql",
        "20261124083000_add_notes_table.down.sql",
    ]
    assert created[0].read_text() == "-- Add up migration script here\n"
    created[0].write_text("CREATE TABLE notes (id bigint PRIMARY KEY);\n")
    created[1].write_text("DROP TABLE notes;\n")
    with connect(database_url) as connection:
        applied = Migrator(connection, load_source(source_copy)).run()
        assert [m.version for m, _ in applied][-1] == 20261124083000
        assert "notes" in tables(connection)
        row = connection.execute(
            "SELECT description, success, checksum, execution_time FROM _sqlx_migrations "
            "WHERE version = 20261124083000"
        ).fetchone()
    assert row is not None
    assert row[:3] == ("add notes table", True, hashlib.sha384(created[0].read_bytes()).digest())
    assert row[3] > 0


def test_add_refuses_to_mix_simple_and_reversible(source_copy: Path) -> None:
    with pytest.raises(MigrationError, match="cannot mix them with simple ones"):
        add_migration(source_copy, "plain", reversible=False)
    with pytest.raises(MigrationError, match="malformed migration name"):
        add_migration(source_copy, "../escape", reversible=True)


def test_tampered_applied_migration_is_refused_and_nothing_runs(
    database_url: str, source_copy: Path
) -> None:
    with connect(database_url) as connection:
        Migrator(connection, load_source(source_copy)).run(target_version=20250123000011)
        tampered = source_copy / "20250123000004_create_triggers_table.up.sql"
        tampered.write_text(tampered.read_text().replace("DEFAULT 10", "DEFAULT 20"))
        migrator = Migrator(connection, load_source(source_copy))
        with pytest.raises(
            MigrationError, match=r"20250123000004_create_triggers_table\.up\.sql was changed"
        ):
            migrator.run()
        with pytest.raises(MigrationError, match="was changed"):
            migrator.revert()
        assert "agent_mcp_tokens" not in tables(connection)


def test_half_applied_migration_is_refused(database_url: str) -> None:
    with connect(database_url) as connection:
        migrator = Migrator(connection, load_source(MIGRATIONS))
        migrator.run(target_version=20250123000011)
        # What an interrupted tool or an older SQLx leaves behind.
        connection.execute(
            "UPDATE _sqlx_migrations SET success = false WHERE version = 20250123000011"
        )
        with pytest.raises(
            MigrationError,
            match=r"20250123000011_create_action_results_table\.up\.sql is partially applied",
        ):
            migrator.run()
        with pytest.raises(MigrationError, match="partially applied"):
            migrator.revert()
        assert "agent_mcp_tokens" not in tables(connection)


def test_checksum_covers_the_raw_bytes_of_crlf_files(tmp_path: Path) -> None:
    raw = b"CREATE TABLE t (id int);\r\nDROP TABLE t;\r\n"
    (tmp_path / "1_crlf.sql").write_bytes(raw)
    assert load_source(tmp_path).forward[0].checksum == hashlib.sha384(raw).digest()


def test_failing_migration_in_a_transaction_leaves_nothing(
    database_url: str, source_copy: Path
) -> None:
    (source_copy / "20990101000000_breaks.up.sql").write_text(
        "CREATE TABLE half (id int);\nSELECT no_such_function();\n"
    )
    (source_copy / "20990101000000_breaks.down.sql").write_text("DROP TABLE half;\n")
    with connect(database_url) as connection:
        with pytest.raises(MigrationError, match="failed"):
            Migrator(connection, load_source(source_copy)).run()
        assert "half" not in tables(connection)
        assert "agent_mcp_tokens" in tables(connection)  # earlier migrations committed one by one
        assert connection.execute(
            "SELECT count(*) FROM _sqlx_migrations WHERE version = 20990101000000"
        ).fetchone() == (0,)


def test_database_migrated_the_sqlx_way_is_up_to_date(database_url: str) -> None:
    """Apply the files and write _sqlx_migrations rows as SQLx does; our tool agrees."""
    source = load_source(MIGRATIONS)
    with connect(database_url) as connection:
        connection.execute(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,"
            " installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL,"
            " checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)"
        )
        for migration in source.forward:
            sql = migration.path.read_bytes()
            with connection.transaction():
                connection.execute(sql)
                connection.execute(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)"
                    " VALUES (%s, %s, TRUE, %s, %s)",
                    (
                        migration.version,
                        migration.path.name.split("_", 1)[1]
                        .removesuffix(".up.sql")
                        .replace("_", " "),
                        hashlib.sha384(sql).digest(),
                        1234567,
                    ),
                )
        migrator = Migrator(connection, source)
        assert {s.status for s in migrator.states()} == {Status.APPLIED}
        assert migrator.run() == []
