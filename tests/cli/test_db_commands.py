"""The `erc8004 db` commands as a person runs them: a real process, real output, exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import bcrypt
import psycopg
import pytest

from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.database.connection import connect, database_name, with_database
from erc8004_backend.encryption import Sealed, SecretBox, agent_token_context
from tests.conftest import MIGRATIONS, ROOT, create_database, drop_database
from tests.support.agent_events import ChainEvents, address
from tests.support.read_model import model_rows

SEED = ROOT / "database" / "seeds" / "test_data.sql"
TABLES = (
    "users",
    "triggers",
    "trigger_conditions",
    "trigger_actions",
    "trigger_state",
    "events",
    "checkpoints",
    "indexed_blocks",
    "processing_cursors",
    "action_jobs",
    "action_results",
    "agent_mcp_tokens",
    "_sqlx_migrations",
)

MIGRATION_COUNT = len(list(MIGRATIONS.glob("*.up.sql")))


def erc8004(
    *args: str, database_url: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["COLUMNS"] = "500"  # usage errors' boxes wrap no path, however long the temp dir's
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "erc8004_backend", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def row_counts(url: str) -> dict[str, int]:
    with connect(url) as connection:
        return {
            table: connection.execute(
                psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
            ).fetchone()[0]  # type: ignore[index]
            for table in TABLES
        }


def test_migrate_info_run_revert_through_the_cli(database_url: str) -> None:
    info = erc8004("db", "migrate", "info", database_url=database_url)
    assert info.returncode == 0, info.stderr
    assert info.stdout.count("pending") == MIGRATION_COUNT
    run = erc8004("db", "migrate", "run", database_url=database_url)
    assert run.returncode == 0, run.stderr
    assert "Applied 20250123000012/migrate create agent mcp tokens table" in run.stdout
    assert (
        "Database is up to date."
        in erc8004("db", "migrate", "run", database_url=database_url).stdout
    )
    revert = erc8004("db", "migrate", "revert", database_url=database_url)
    latest = sorted(MIGRATIONS.glob("*.up.sql"))[-1].name.split("_", 1)[0]
    assert revert.stdout.startswith(f"Reverted {latest}/revert")
    info = erc8004("db", "migrate", "info", database_url=database_url)
    assert info.stdout.count("applied") == MIGRATION_COUNT - 1
    assert info.stdout.count("pending") == 1


def usage_error(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a usage error (exit 2), unwrapped from the box it is printed in."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())


def public_tables(url: str) -> set[str]:
    with connect(url) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {row[0] for row in tables}


def migration_history(url: str) -> tuple[set[str], list[tuple[object, ...]]]:
    with connect(url) as connection:
        rows = connection.execute("SELECT * FROM _sqlx_migrations ORDER BY version").fetchall()
    return public_tables(url), rows


def test_bad_target_version_exits_2_and_changes_nothing(migrated_url: str) -> None:
    before = migration_history(migrated_url)
    latest = sorted(MIGRATIONS.glob("*.up.sql"))[-1].name.split("_", 1)[0]
    # 2025012300008 is 20250123000008 with a digit missing: it used to revert everything.
    revert = erc8004(
        "db", "migrate", "revert", "--target-version", "2025012300008", database_url=migrated_url
    )
    message = usage_error(revert)
    assert "'--target-version'" in message
    assert "2025012300008 is not the version of a migration in database/migrations" in message
    assert "nothing was reverted" in message
    for args, fragment in [
        (["run", "--target-version", "2025012300008"], "is not the version of a migration"),
        (["run", "--dry-run", "--target-version", "2025012300008"], "is not the version of"),
        (
            ["run", "--target-version", "20250123000008"],
            f"20250123000008 is older than the latest applied migration {latest}",
        ),
    ]:
        assert fragment in usage_error(erc8004("db", "migrate", *args, database_url=migrated_url))
    assert migration_history(migrated_url) == before


def test_seed_loads_through_the_cli_and_with_psql(migrated_url: str, admin_url: str) -> None:
    result = erc8004("db", "seed", database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    through_cli = row_counts(migrated_url)
    assert through_cli["users"] == 3
    assert through_cli["triggers"] == 3
    assert through_cli["events"] == 10
    assert through_cli["action_results"] == 3
    assert through_cli["agent_mcp_tokens"] == 3
    assert through_cli["checkpoints"] == 2
    assert (
        erc8004("db", "seed", database_url=migrated_url).returncode == 0
    )  # loading twice is a no-op
    assert row_counts(migrated_url) == through_cli

    # The seed's own command, on another freshly migrated database.
    other = create_database(admin_url)
    try:
        assert erc8004("db", "migrate", "run", database_url=other).returncode == 0
        psql = subprocess.run(
            ["psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-d", other, "-f", str(SEED)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert psql.returncode == 0, psql.stderr
        assert row_counts(other) == through_cli
    finally:
        drop_database(admin_url, other)


def test_seed_users_and_tokens_are_usable(migrated_url: str) -> None:
    assert erc8004("db", "seed", database_url=migrated_url).returncode == 0
    box = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)
    with connect(migrated_url) as connection:
        users: dict[str, str] = dict(
            connection.execute("SELECT username, password_hash FROM users").fetchall()
        )
        tokens = connection.execute(
            "SELECT chain_id, agent_id, token_ciphertext, key_id FROM agent_mcp_tokens ORDER BY agent_id"
        ).fetchall()
    assert set(users) == {"alice", "bob", "charlie"}
    for password_hash in users.values():
        assert bcrypt.checkpw(b"password123", password_hash.encode())
        assert not bcrypt.checkpw(b"password124", password_hash.encode())
    plain = {}
    for chain_id, agent_id, ciphertext, key_id in tokens:
        assert b"mcp-token" not in bytes(ciphertext)
        plain[(chain_id, int(agent_id))] = box.open(
            Sealed(bytes(ciphertext), key_id), agent_token_context(chain_id, int(agent_id))
        )
    assert plain == {
        (80002, 3): "mcp-token-agent-3-dev",
        (84532, 7): "mcp-token-agent-7-dev",
        (84532, 42): "mcp-token-agent-42-dev",
    }


def test_backup_then_restore_into_a_new_database_keeps_row_counts(
    migrated_url: str, admin_url: str, tmp_path: Path
) -> None:
    assert erc8004("db", "seed", database_url=migrated_url).returncode == 0
    dump = tmp_path / "backup.dump"
    backup = erc8004("db", "backup", str(dump), database_url=migrated_url)
    assert backup.returncode == 0, backup.stderr
    assert dump.read_bytes()[:5] == b"PGDMP"
    assert_one_line_error(
        erc8004("db", "backup", str(dump), database_url=migrated_url), "exists already"
    )

    target = with_database(
        admin_url, f"{psycopg.conninfo.conninfo_to_dict(migrated_url)['dbname']}_restored"
    )
    try:
        restore = erc8004("db", "restore", str(dump), database_url=target)
        assert restore.returncode == 0, restore.stderr
        assert row_counts(target) == row_counts(migrated_url)
        assert_one_line_error(
            erc8004("db", "restore", str(dump), database_url=target), "already has tables"
        )
    finally:
        drop_database(admin_url, target)

    schema = tmp_path / "schema.sql"
    assert (
        erc8004("db", "backup", str(schema), "--schema-only", database_url=migrated_url).returncode
        == 0
    )
    assert "CREATE TABLE public.events" in schema.read_text()


def database_exists(admin_url: str, url: str) -> bool:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with connect(admin_url) as connection:
        return bool(
            connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        )


def seeded_backup(url: str, path: Path, *flags: str) -> Path:
    assert erc8004("db", "seed", database_url=url).returncode == 0
    backup = erc8004("db", "backup", str(path), *flags, database_url=url)
    assert backup.returncode == 0, backup.stderr
    return path


def negate_entry_count(dump: Path) -> None:
    """Flips the sign of the archive's entry count (the integer after the header's pg_dump
    version): pg_restore then reads no entry, restores nothing and exits 0."""
    listing = subprocess.run(
        ["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True
    ).stdout
    count = int(re.search(r"TOC Entries: (\d+)", listing)[1])  # type: ignore[index]
    version = re.search(r"Dumped by pg_dump version: (.+)", listing)[1].encode()  # type: ignore[index]
    data = bytearray(dump.read_bytes())
    at = data[:1024].rindex(version) + len(version)
    assert data[at : at + 5] == b"\x00" + count.to_bytes(4, "little")  # sign byte, 4 bytes LE
    data[at] = 1
    dump.write_bytes(bytes(data))


def test_restore_of_a_corrupt_dump_drops_the_database_it_created(
    migrated_url: str, admin_url: str, tmp_path: Path
) -> None:
    dump = seeded_backup(migrated_url, tmp_path / "backup.dump")
    dump.write_bytes(dump.read_bytes()[:-64])  # cut short, as by a full disk
    target = with_database(admin_url, f"{database_name(migrated_url)}_restored")
    empty = create_database(admin_url)
    try:
        result = erc8004("db", "restore", str(dump), database_url=target)
        assert result.returncode == 1
        assert not database_exists(admin_url, target)
        assert_one_line_error(
            result, "pg_restore failed", "end of file", "database created for the restore"
        )

        # A database that existed before the restore stays, empty as it was.
        result = erc8004("db", "restore", str(dump), database_url=empty)
        assert_one_line_error(result, "pg_restore failed", "end of file")
        assert "dropped" not in result.stderr
        assert database_exists(admin_url, empty)
        assert public_tables(empty) == set()
    finally:
        drop_database(admin_url, target)
        drop_database(admin_url, empty)


def test_restore_refuses_a_dump_pg_restore_cannot_read_whole(
    migrated_url: str, admin_url: str, tmp_path: Path
) -> None:
    dump = seeded_backup(migrated_url, tmp_path / "backup.dump")
    negate_entry_count(dump)
    target = with_database(admin_url, f"{database_name(migrated_url)}_restored")
    try:
        message = usage_error(erc8004("db", "restore", str(dump), database_url=target))
        assert "'FILE'" in message
        assert f"{dump} is not a whole pg_dump archive" in message
        assert not database_exists(admin_url, target)
    finally:
        drop_database(admin_url, target)


def test_restore_refuses_a_truncated_plain_dump_and_restores_a_whole_one(
    migrated_url: str, admin_url: str, tmp_path: Path
) -> None:
    whole = seeded_backup(migrated_url, tmp_path / "schema.sql", "--schema-only")
    text = whole.read_text()
    truncated = tmp_path / "truncated.sql"
    truncated.write_text(text[: text.index("\nCREATE INDEX")])  # before indexes and foreign keys
    target = with_database(admin_url, f"{database_name(migrated_url)}_restored")
    try:
        message = usage_error(erc8004("db", "restore", str(truncated), database_url=target))
        assert "'FILE'" in message
        assert "does not end with pg_dump's '-- PostgreSQL database dump complete'" in message
        assert "nothing was restored" in message
        assert not database_exists(admin_url, target)

        restore = erc8004("db", "restore", str(whole), database_url=target)
        assert restore.returncode == 0, restore.stderr
        with connect(target) as connection:
            foreign_keys = connection.execute(
                "SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
            ).fetchone()
        assert foreign_keys is not None
        assert foreign_keys[0] > 0
    finally:
        drop_database(admin_url, target)


@pytest.mark.parametrize("server", ["system", "embedded"])
def test_stats_and_doctor_on_each_server(
    server: str, admin_url: str, embedded_admin_url: str
) -> None:
    base = embedded_admin_url if server == "embedded" else admin_url
    url = create_database(base)
    try:
        assert erc8004("db", "migrate", "run", database_url=url).returncode == 0
        assert erc8004("db", "seed", database_url=url).returncode == 0
        stats = erc8004("db", "stats", database_url=url)
        assert stats.returncode == 0, stats.stderr
        assert "Database size by table" in stats.stdout
        assert "Index usage" in stats.stdout
        assert "Active connections" in stats.stdout
        events_line = next(line for line in stats.stdout.splitlines() if " events " in line)
        assert events_line.split()[-2] == "10"  # live rows, partitions included
        doctor = erc8004("db", "doctor", database_url=url)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert f"ok migrations: all {MIGRATION_COUNT} applied" in doctor.stdout
        assert "native partitioning" in doctor.stdout
        if server == "embedded":
            assert "pgcrypto: not available" in doctor.stdout
    finally:
        drop_database(base, url)


def test_doctor_warns_with_a_fix_when_migrations_are_pending(database_url: str) -> None:
    doctor = erc8004("db", "doctor", database_url=database_url)
    assert doctor.returncode == 0
    assert f"warn migrations: 0 applied, {MIGRATION_COUNT} pending" in doctor.stdout
    assert "fix: erc8004 db migrate run" in doctor.stdout


def test_doctor_fails_on_a_changed_migration(migrated_url: str, tmp_path: Path) -> None:
    import shutil

    source = Path(shutil.copytree(ROOT / "database" / "migrations", tmp_path / "m"))
    changed = source / "20250123000002_create_helper_functions.up.sql"
    changed.write_text(changed.read_text() + "-- edit\n")
    doctor = erc8004("db", "doctor", "--source", str(source), database_url=migrated_url)
    assert doctor.returncode == 1
    assert "FAIL migrations: 20250123000002 changed" in doctor.stdout
    assert doctor.stderr.strip() == "error: doctor found problems: migrations"


def test_unreachable_database_is_one_line() -> None:
    result = erc8004(
        "db", "migrate", "info", database_url="postgresql://postgres:secret@127.0.0.1:1/x"
    )
    assert_one_line_error(
        result, "cannot connect to postgresql://postgres:***@127.0.0.1:1/x", "refused"
    )
    assert "secret" not in result.stderr


def test_wrong_password_is_one_line(embedded_admin_url: str) -> None:
    """The embedded server trusts local users; give one role password authentication."""
    with connect(embedded_admin_url) as connection:
        connection.execute("DROP ROLE IF EXISTS locked_out")
        connection.execute("CREATE ROLE locked_out LOGIN PASSWORD 'right'")
        hba = connection.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
        original = Path(hba).read_text()
        Path(hba).write_text("local all locked_out scram-sha-256\n" + original)
        connection.execute("SELECT pg_reload_conf()")
    try:
        url = psycopg.conninfo.make_conninfo(
            embedded_admin_url, user="locked_out", password="wrong"
        )
        # The reload takes effect when the postmaster gets to it: until then, trust.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                psycopg.connect(url, connect_timeout=3).close()
            except psycopg.OperationalError:
                break
            time.sleep(0.05)
        assert_one_line_error(
            erc8004("db", "migrate", "info", database_url=url),
            'password authentication failed for user "locked_out"',
        )
    finally:
        Path(hba).write_text(original)
        with connect(embedded_admin_url) as connection:
            connection.execute("SELECT pg_reload_conf()")


def test_missing_migrations_directory_is_one_line(migrated_url: str, tmp_path: Path) -> None:
    result = erc8004(
        "db", "migrate", "run", "--source", str(tmp_path / "nope"), database_url=migrated_url
    )
    assert_one_line_error(result, "migrations directory not found")


def test_malformed_migration_name_is_one_line(migrated_url: str, tmp_path: Path) -> None:
    (tmp_path / "create_users.sql").write_text("SELECT 1;")
    result = erc8004("db", "migrate", "run", "--source", str(tmp_path), database_url=migrated_url)
    assert_one_line_error(result, "malformed migration file name 'create_users.sql'")
    add = erc8004("db", "migrate", "add", "-r", "bad/name", "--source", str(tmp_path / "new"))
    assert_one_line_error(add, "malformed migration name 'bad/name'")


def test_add_reversible_through_the_cli(tmp_path: Path) -> None:
    result = erc8004("db", "migrate", "add", "-r", "add_agents_table", "--source", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2
    assert names[0].endswith("_add_agents_table.down.sql")
    assert names[1].endswith("_add_agents_table.up.sql")
    assert names[0].split("_")[0] == names[1].split("_")[0]


async def test_rebuild_read_model_makes_again_the_model_its_events_give(migrated_url: str) -> None:
    """`erc8004 db rebuild-read-model` as a person runs it, over a model gone wrong: the
    model, counts included, ends as the indexer's batches made it, and the command says what
    it rebuilt."""
    chain_id = 31337
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        chain = ChainEvents(conn, chain_id)
        owner, client, other = address(0xA11CE), address(0xB0B), address(0xCA501)
        agents = [await chain.register(owner) for _ in range(3)]
        for agent_id in agents:
            await chain.feedback(agent_id, client, 70)
            await chain.feedback(agent_id, other, -5, decimals=1)
        await chain.apply()
        await chain.revoke(agents[0], client, 1)
        await chain.respond(agents[1], other, 1, owner)
        await chain.request_validation(agents[2], other, "0x" + "ab" * 32)
        await chain.respond_validation(agents[2], other, "0x" + "ab" * 32, 90)
        await chain.apply()
        kept = await model_and_counts(conn, chain_id)
        await conn.execute("UPDATE feedback SET value = 0, revoked = NOT revoked")
        await conn.execute("DELETE FROM agents WHERE agent_id = %s", [agents[1]])
        await conn.execute("UPDATE agent_feedback_stats SET feedback_count = 99")
        assert await model_and_counts(conn, chain_id) != kept

    result = erc8004("db", "rebuild-read-model", database_url=migrated_url)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "chain 31337: 19 events in blocks 1-13 -> 3 agents, 6 feedback (1 revoked),"
        " 1 responses, 1 validation requests ("
    )
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        assert await model_and_counts(conn, chain_id) == kept


async def model_and_counts(conn: psycopg.AsyncConnection, chain_id: int) -> dict[str, Any]:
    rows: dict[str, Any] = dict(await model_rows(conn, chain_id))
    for table in ("agent_feedback_stats", "client_feedback_stats"):
        cursor = await conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2")
        rows[table] = await cursor.fetchall()
    return rows
