"""What the migrated schema promises: idempotent events, cascades, timestamps, notifications,
time partitioning, and database/schema.sql in step with the migrations."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from erc8004_backend.database.admin import dump_schema, normalize_schema
from erc8004_backend.database.connection import connect
from tests.conftest import ROOT

ALICE = "a11ce000-0000-4000-8000-000000000001"
# One block time for the sample block, inside a weekly partition that migration 9 creates.
BLOCK_TIME = datetime.now(UTC).replace(microsecond=0)


def insert_event(connection: psycopg.Connection, **fields: Any) -> int:
    """Inserts an event (ON CONFLICT DO NOTHING, as the indexer does); returns rows added."""
    row: dict[str, Any] = {
        "chain_id": 84532,
        "registry": "reputation",
        "event_type": "NewFeedback",
        "contract_address": "0x8004b663056a597dffe9eccc1965a193b7388713",
        "block_number": 100,
        "block_hash": "0x" + "ab" * 32,
        "block_time": BLOCK_TIME,
        "transaction_hash": "0x" + "cd" * 32,
        "transaction_index": 0,
        "log_index": 0,
        "agent_id": 42,
        "score": 45,
    } | fields
    columns = psycopg.sql.SQL(", ").join(map(psycopg.sql.Identifier, row))
    values = psycopg.sql.SQL(", ").join(map(psycopg.sql.Placeholder, row))
    query = psycopg.sql.SQL("INSERT INTO events ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
        columns, values
    )
    return connection.execute(query, row).rowcount


def create_user_with_trigger(connection: psycopg.Connection) -> str:
    connection.execute(
        "INSERT INTO users (id, username, email, password_hash) VALUES (%s, 'alice', 'a@example.com', 'x')",
        (ALICE,),
    )
    (trigger_id,) = connection.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry) VALUES (%s, 'low', 84532, 'reputation')"
        " RETURNING id::text",
        (ALICE,),
    ).fetchone()  # type: ignore[misc]
    connection.execute(
        "INSERT INTO trigger_conditions (trigger_id, condition_type, field, operator, value)"
        " VALUES (%s, 'score_threshold', 'score', '<', '60')",
        (trigger_id,),
    )
    connection.execute(
        "INSERT INTO trigger_actions (trigger_id, action_type, config) VALUES (%s, 'telegram', '{}')",
        (trigger_id,),
    )
    connection.execute(
        "INSERT INTO trigger_state (trigger_id, scope, state) VALUES (%s, 'agent:42', '{}')",
        (trigger_id,),
    )
    return str(trigger_id)


def count(connection: psycopg.Connection, table: str) -> int:
    row = connection.execute(
        psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(table))
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_same_chain_event_is_stored_once(db: psycopg.Connection) -> None:
    assert insert_event(db) == 1
    assert insert_event(db) == 0
    assert insert_event(db, log_index=1) == 1  # another log of the block is another event
    assert insert_event(db, block_hash="0x" + "ef" * 32) == 1  # same position, other fork
    assert count(db, "events") == 3
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index)"
            " SELECT chain_id, registry, event_type, contract_address, block_number, block_hash,"
            " block_time, transaction_hash, transaction_index, log_index FROM events LIMIT 1"
        )


def test_agent_zero_is_a_real_agent_and_uint256_fits(db: psycopg.Connection) -> None:
    insert_event(db, agent_id=0, log_index=1)
    insert_event(db, agent_id=2**256 - 1, log_index=2, value=-(2**127), value_decimals=18)
    rows = db.execute("SELECT agent_id, value FROM events ORDER BY log_index").fetchall()
    assert [int(r[0]) for r in rows] == [0, 2**256 - 1]
    assert rows[1][1] == -(2**127)


def test_deleting_a_user_cascades_to_triggers_conditions_actions_and_state(
    db: psycopg.Connection,
) -> None:
    create_user_with_trigger(db)
    db.execute("DELETE FROM users WHERE id = %s", (ALICE,))
    for table in ("triggers", "trigger_conditions", "trigger_actions", "trigger_state"):
        assert count(db, table) == 0, table


def test_deleting_a_trigger_keeps_its_action_results(db: psycopg.Connection) -> None:
    trigger_id = create_user_with_trigger(db)
    insert_event(db)
    (event_id,) = db.execute("SELECT id FROM events").fetchone()  # type: ignore[misc]
    (action_id,) = db.execute("SELECT id FROM trigger_actions").fetchone()  # type: ignore[misc]
    (job_id,) = db.execute(
        "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, idempotency_key, payload)"
        " VALUES (%s, %s, %s, 84532, 'k', '{}') RETURNING id",
        (trigger_id, action_id, event_id),
    ).fetchone()  # type: ignore[misc]
    db.execute(
        "INSERT INTO action_results (job_id, user_id, trigger_id, action_id, event_id, action_type, status)"
        " VALUES (%s, %s, %s, %s, %s, 'telegram', 'success')",
        (job_id, ALICE, trigger_id, action_id, event_id),
    )
    db.execute("DELETE FROM triggers WHERE id = %s", (trigger_id,))
    row = db.execute(
        "SELECT trigger_id, action_id, job_id, user_id::text, event_id, status FROM action_results"
    ).fetchone()
    assert row == (None, None, None, ALICE, event_id, "success")
    assert count(db, "action_jobs") == 0


def test_exactly_one_job_per_event_and_action(db: psycopg.Connection) -> None:
    trigger_id = create_user_with_trigger(db)
    (action_id,) = db.execute("SELECT id FROM trigger_actions").fetchone()  # type: ignore[misc]
    insert = (
        "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, idempotency_key,"
        " payload, retraction) VALUES (%s, %s, 7, 84532, 'k', '{}', %s)"
        " ON CONFLICT (event_id, action_id, retraction) DO NOTHING"
    )
    assert db.execute(insert, (trigger_id, action_id, False)).rowcount == 1
    assert db.execute(insert, (trigger_id, action_id, False)).rowcount == 0
    # And at most one retraction of it (after a reorg removed the event).
    assert db.execute(insert, (trigger_id, action_id, True)).rowcount == 1
    assert db.execute(insert, (trigger_id, action_id, True)).rowcount == 0


def test_updating_a_row_moves_updated_at(db: psycopg.Connection) -> None:
    trigger_id = create_user_with_trigger(db)
    before = db.execute("SELECT updated_at, created_at FROM triggers").fetchone()
    time.sleep(0.01)
    db.execute("UPDATE triggers SET name = 'renamed' WHERE id = %s", (trigger_id,))
    after = db.execute("SELECT updated_at, created_at FROM triggers").fetchone()
    assert before is not None
    assert after is not None
    assert after[0] > before[0]
    assert after[1] == before[1]
    for table in ("users", "trigger_actions", "trigger_state"):
        old = db.execute(
            psycopg.sql.SQL("SELECT updated_at FROM {}").format(psycopg.sql.Identifier(table))
        ).fetchone()
        time.sleep(0.01)
        db.execute(
            psycopg.sql.SQL("UPDATE {} SET created_at = created_at").format(
                psycopg.sql.Identifier(table)
            )
        )
        new = db.execute(
            psycopg.sql.SQL("SELECT updated_at FROM {}").format(psycopg.sql.Identifier(table))
        ).fetchone()
        assert old is not None
        assert new is not None
        assert new[0] > old[0], table


def test_an_insert_into_events_notifies_new_event(
    db: psycopg.Connection, migrated_url: str
) -> None:
    with connect(migrated_url) as listener:
        listener.execute("LISTEN new_event")
        insert_event(db)
        notifications = list(listener.notifies(timeout=5, stop_after=1))
    assert [n.channel for n in notifications] == ["new_event"]


def test_trigger_changes_notify_with_the_trigger_id_but_bookkeeping_does_not(
    db: psycopg.Connection, migrated_url: str
) -> None:
    with connect(migrated_url) as listener:
        listener.execute("LISTEN trigger_changed")
        trigger_id = create_user_with_trigger(db)
        received = {n.payload for n in listener.notifies(timeout=2, stop_after=3)}
        assert received == {trigger_id}
        db.execute("UPDATE triggers SET last_fired_at = now(), consecutive_failures = 1")
        assert list(listener.notifies(timeout=0.5)) == []
        db.execute("UPDATE triggers SET enabled = false")
        assert [n.payload for n in listener.notifies(timeout=2, stop_after=1)] == [trigger_id]


def test_events_are_partitioned_by_week_and_strays_move_into_their_week(
    db: psycopg.Connection,
) -> None:
    old = datetime(2024, 3, 6, 12, 0, tzinfo=UTC)  # a Wednesday, ISO week 2024-W10
    insert_event(db, block_time=old)
    insert_event(db)  # now: a partition created by migration 9
    assert count(db, "events_default") == 1
    row = db.execute("SELECT ensure_event_partitions(%s, %s)", (old, old)).fetchone()
    assert row == (1,)
    assert count(db, "events_default") == 0
    located = db.execute(
        "SELECT tableoid::regclass::text FROM events ORDER BY block_time"
    ).fetchall()
    assert located[0] == ("events_2024w10",)
    bounds = db.execute(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'events_2024w10'"
    ).fetchone()
    assert bounds == ("FOR VALUES FROM ('2024-03-04 00:00:00+00') TO ('2024-03-11 00:00:00+00')",)
    assert db.execute("SELECT ensure_event_partitions(%s, %s)", (old, old)).fetchone() == (0,)
    with pytest.raises(psycopg.errors.RaiseException, match="invalid range"):
        db.execute("SELECT ensure_event_partitions(now(), now() - interval '1 day')")


def test_schema_sql_matches_what_the_migrations_produce(migrated_url: str) -> None:
    committed = (ROOT / "database" / "schema.sql").read_text()
    generated = dump_schema(migrated_url)
    assert normalize_schema(generated) == normalize_schema(committed), (
        "database/schema.sql is out of date: run "
        "`erc8004 db dump-schema --output database/schema.sql` on a freshly migrated database"
    )
