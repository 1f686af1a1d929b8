"""`erc8004 triggers test` (a backtest) as a person runs it."""

from __future__ import annotations

import psycopg

from tests.cli.test_db_commands import erc8004

USER = "a11ce000-0000-4000-8000-000000000001"


def test_backtest_prints_what_would_fire(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("INSERT INTO users (id, username, email, password_hash)"
                     " VALUES (%s, 'alice', 'a@example.com', 'x')", [USER])  # fmt: skip
        row = conn.execute(
            "INSERT INTO triggers (user_id, name, chain_id, registry, enabled)"
            " VALUES (%s, 'low scores', 84532, 'reputation', false) RETURNING id::text",
            [USER],
        ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO trigger_conditions (trigger_id, condition_type, field, operator,"
                     " value) VALUES (%s, 'score_threshold', 'score', '<', '60')", [row[0]])  # fmt: skip
        for block, score in ((1, 45), (2, 90), (3, 10)):
            conn.execute(
                "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
                " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
                " score) VALUES (84532, 'reputation', 'NewFeedback', '0xaa', %s, %s, now(), '0x1',"
                " 0, 0, 42, %s)", [block, f"0x{block}", score],
            )  # fmt: skip
    result = erc8004("triggers", "test", row[0], "--from-block", "2", database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    assert "low scores: 1 firings in 2 events (1 matched)" in result.stdout
    assert "NewFeedback" in result.stdout
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM action_jobs").fetchone() == (0,)


def test_a_bad_trigger_id_is_one_clear_line(migrated_url: str) -> None:
    result = erc8004("triggers", "test", "nope", database_url=migrated_url)
    assert result.returncode == 1
    assert "'nope' is not a trigger id (a UUID)" in result.stderr
    missing = erc8004("triggers", "test", USER, database_url=migrated_url)
    assert missing.returncode == 1
    assert f"no trigger {USER}" in missing.stderr
