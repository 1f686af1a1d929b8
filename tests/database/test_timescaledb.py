"""The same migrations on PostgreSQL with TimescaleDB: events becomes a hypertable with
7-day chunks. The server is PGlite (PostgreSQL 17 in WASM) with the real TimescaleDB
extension, from npm (package.json), since TimescaleDB has no package for this platform."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS
from erc8004_backend.database.admin import Level, load_sql_file, run_doctor
from erc8004_backend.database.connection import connect
from erc8004_backend.database.migrations import Migrator, Status, load_source
from tests.conftest import MIGRATIONS, ROOT
from tests.support.timescaledb import node_modules_ready, timescaledb_server

pytestmark = pytest.mark.subprocess  # the server runs in Node.js


@pytest.fixture
def timescaledb_url() -> Iterator[str]:
    assert node_modules_ready(), "Node.js packages missing: run scripts/bootstrap (npm install)"
    with timescaledb_server() as url:
        yield url


def catalog(connection: psycopg.Connection) -> list[tuple[str, ...]]:
    """Tables, columns and indexes of the public schema, chunks excepted."""
    columns = connection.execute(
        "SELECT table_name, column_name, data_type, is_nullable, coalesce(column_default, '')"
        " FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"
    ).fetchall()
    indexes = connection.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1, 2"
    ).fetchall()
    return [tuple(map(str, row)) for row in [*columns, *indexes]]


def test_migrations_up_down_up_with_a_hypertable(timescaledb_url: str) -> None:
    source = load_source(MIGRATIONS)
    with connect(timescaledb_url) as connection:
        migrator = Migrator(connection, source)
        assert len(migrator.run()) == len(source.forward)
        installed = connection.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone()
        assert installed is not None
        dimension = connection.execute(
            "SELECT column_name, time_interval FROM timescaledb_information.dimensions"
            " WHERE hypertable_name = 'events'"
        ).fetchone()
        assert dimension == ("block_time", timedelta(days=7))
        assert connection.execute(
            "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"
        ).fetchone() == (0,)
        first = catalog(connection)

        assert len(migrator.revert(target_version=0)) == len(source.forward)
        assert connection.execute("SELECT to_regclass('events')").fetchone() == (None,)
        # Reverting migration 1 keeps TimescaleDB (dropping it drops every hypertable).
        assert connection.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"
        ).fetchone() == (1,)
        assert len(migrator.run()) == len(source.forward)
        assert catalog(connection) == first
        assert {s.status for s in migrator.states()} == {Status.APPLIED}


def test_seed_data_lands_in_weekly_chunks_and_doctor_reports_the_mode(timescaledb_url: str) -> None:
    with connect(timescaledb_url) as connection:
        Migrator(connection, load_source(MIGRATIONS)).run()
        load_sql_file(connection, ROOT / "database" / "seeds" / "test_data.sql")
        assert connection.execute("SELECT count(*) FROM events").fetchone() == (10,)
        # ensure_event_partitions is a no-op here: TimescaleDB creates chunks itself.
        assert connection.execute(
            "SELECT ensure_event_partitions(now(), now() + interval '3 weeks')"
        ).fetchone() == (0,)
        connection.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index)"
            " VALUES (1, 'identity', 'Registered', %s, 1, %s, %s, %s, 0, 0)",
            (
                "0x" + "11" * 20,
                "0x" + "22" * 32,
                datetime(2025, 3, 5, tzinfo=UTC),
                "0x" + "33" * 32,
            ),
        )
        chunks = connection.execute(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'events'"
        ).fetchone()
        assert chunks == (2,)  # the seed's week and the week of 2025-03-05
        checks = {
            c.name: c
            for c in run_doctor(connection, load_source(MIGRATIONS), DEVELOPMENT_TOKEN_KEYS)
        }
    assert checks["events"].level is Level.OK
    assert checks["events"].detail == "TimescaleDB hypertable, chunks of 7 days"
    assert checks["timescaledb"].detail.startswith("enabled")
