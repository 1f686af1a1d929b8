"""`erc8004 triggers test` (a backtest) as a person runs it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from tests.actions.test_formatted_delivery import store_template_example
from tests.cli.test_db_commands import erc8004
from tests.conftest import ROOT

USER = "a11ce000-0000-4000-8000-000000000001"


def test_backtest_prints_what_would_fire(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger_id = low_scores_trigger(conn)
        for block, score in ((1, 45), (2, 90), (3, 10)):
            feedback(conn, block, score)
    result = erc8004("triggers", "test", trigger_id, "--from-block", "2", database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    assert "low scores: 1 firing in 2 events (1 matched)" in result.stdout
    assert "NewFeedback" in result.stdout
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM action_jobs").fetchone() == (0,)


def low_scores_trigger(
    conn: psycopg.Connection,
    condition: tuple[str, str, str, str] = ("score_threshold", "<", "60", "{}"),
) -> str:
    conn.execute("INSERT INTO users (id, username, email, password_hash)"
                 " VALUES (%s, 'alice', 'a@example.com', 'x')", [USER])  # fmt: skip
    row = conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, enabled)"
        " VALUES (%s, 'low scores', 84532, 'reputation', false) RETURNING id::text",
        [USER],
    ).fetchone()
    assert row is not None
    condition_type, operator, value, config = condition
    conn.execute("INSERT INTO trigger_conditions (trigger_id, condition_type, field, operator,"
                 " value, config) VALUES (%s, %s, 'score', %s, %s, %s)",
                 [row[0], condition_type, operator, value, config])  # fmt: skip
    return str(row[0])


def feedback(
    conn: psycopg.Connection, block: int, score: Decimal | int, agent_id: int = 42
) -> None:
    """A NewFeedback on chain 84532, alone in its block."""
    conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " score) VALUES (84532, 'reputation', 'NewFeedback', '0xaa', %s, %s, now(), '0x1',"
        " 0, 0, %s, %s)", [block, f"0x{block:x}", agent_id, score],
    )  # fmt: skip


def firing_rows(output: str) -> list[list[str]]:
    """The table's rows of firings, as cells."""
    return [
        [cell.strip() for cell in line.strip("│ ").split("│")]
        for line in output.splitlines()
        if "NewFeedback" in line
    ]


def test_backtest_shows_the_first_firings_and_sums_up_the_rest(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger_id = low_scores_trigger(conn)
        # Blocks 100-129: scores 20, 20.5, 21, ... all below 60; blocks 130-134: 90 (no firing).
        scores = [Decimal(20) + Decimal(n) / 2 for n in range(30)] + [Decimal(90)] * 5
        for offset, score in enumerate(scores):
            feedback(conn, 100 + offset, score)

    default = erc8004("triggers", "test", trigger_id, database_url=migrated_url)
    assert default.returncode == 0, default.stderr
    rows = firing_rows(default.stdout)
    assert len(rows) == 20
    assert [(row[0], row[5]) for row in rows[:3]] == [("100", "20"), ("101", "20.5"), ("102", "21")]
    assert "low scores: 30 firings in 35 events (30 matched)" in default.stdout
    assert (
        "… 10 more (--limit 0 shows all); 30 firings over 35 events in blocks 100-134"
        in default.stdout
    )

    five = erc8004("triggers", "test", trigger_id, "--limit", "5", database_url=migrated_url)
    assert [row[0] for row in firing_rows(five.stdout)] == ["100", "101", "102", "103", "104"]
    assert "… 25 more (--limit 0 shows all);" in five.stdout

    every = erc8004("triggers", "test", trigger_id, "--limit", "0", database_url=migrated_url)
    assert len(firing_rows(every.stdout)) == 30
    assert "more" not in every.stdout


def test_backtest_shows_the_first_states_and_counts_the_rest(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger_id = low_scores_trigger(conn, ("ema_threshold", "<", "70", '{"window_size": 10}'))
        for agent_id in range(25):  # a state per agent
            feedback(conn, agent_id + 1, 90, agent_id=agent_id)

    result = erc8004("triggers", "test", trigger_id, database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    states = [line for line in result.stdout.splitlines() if line.startswith("state ")]
    assert len(states) == 20
    assert "… 5 more states (--limit 0 shows all)" in result.stdout
    every = erc8004("triggers", "test", trigger_id, "--limit", "0", database_url=migrated_url)
    assert len([line for line in every.stdout.splitlines() if line.startswith("state ")]) == 25


def test_backtest_shows_what_the_actions_would_send(migrated_url: str, tmp_path: Path) -> None:
    """Each firing's Telegram message and webhook body, rendered as the worker would, links
    to the explorer of the chains files (here one that overrides Base Sepolia's)."""
    message = ("Agent #{{agent_id}} scored {{score|fixed:2}} ({{tag1|default:no tag}})\n"
               "{{block_url}}")  # fmt: skip
    body = {"score": "{{score|fixed:0}}", "block": "{{block_number}}"}
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger_id = low_scores_trigger(conn)
        for priority, action_type, config in [
            (1, "telegram", {"chat_id": "1", "message_template": message}),
            (2, "rest", {"url": "https://hooks.example.com/x", "body_template": body}),
        ]:
            conn.execute("INSERT INTO trigger_actions (trigger_id, action_type, priority, config)"
                         " VALUES (%s, %s, %s, %s)",
                         [trigger_id, action_type, priority, Jsonb(config)])  # fmt: skip
        for block, score in ((1, Decimal("45.505")), (2, 90), (3, Decimal("-0.004"))):
            feedback(conn, block, score)
    chains = tmp_path / "chains.toml"
    chains.write_text('[chains.base-sepolia]\nexplorer_url = "https://explorer.example"\n')

    result = erc8004("triggers", "test", trigger_id, "--chains-file", str(chains),
                     database_url=migrated_url)  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    first = lines.index("block 1 log 0, telegram (priority 1): Agent #42 scored 45.51 (no tag)")
    assert lines[first + 1 : first + 5] == [
        "    https://explorer.example/block/1",
        # As jsonb stores the template, and as the worker sends it: keys in jsonb's order.
        'block 1 log 0, rest (priority 2): {"block":"1","score":"46"}',
        "block 3 log 0, telegram (priority 1): Agent #42 scored 0.00 (no tag)",
        "    https://explorer.example/block/3",
    ]
    assert 'block 3 log 0, rest (priority 2): {"block":"3","score":"0"}' in lines
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM action_jobs").fetchone() == (0,)


async def test_the_readme_shows_the_backtest_of_the_template_example(migrated_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        trigger_id = await store_template_example(conn, "https://api.example.com")

    result = erc8004("triggers", "test", trigger_id, database_url=migrated_url)

    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = readme.split("The messages of the template example", 1)[1]
    lines = shown.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    output = result.stdout.splitlines()
    start = output.index(lines[0])
    assert output[start + 1 : start + 3] == lines[1:3]
    assert lines[3].endswith(",…}")
    assert output[start + 3].startswith(lines[3].removesuffix("…}"))


def test_a_bad_trigger_id_is_one_clear_line(migrated_url: str) -> None:
    result = erc8004("triggers", "test", "nope", database_url=migrated_url)
    assert result.returncode == 1
    assert "'nope' is not a trigger id (a UUID)" in result.stderr
    missing = erc8004("triggers", "test", USER, database_url=migrated_url)
    assert missing.returncode == 1
    assert f"no trigger {USER}" in missing.stderr


def test_backtest_as_a_replay_and_a_replay_requested(migrated_url: str) -> None:
    """`--replay` shows the events a replay would cover (up to the processor's cursor) and
    the jobs each firing would queue; `triggers replay` asks for one."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger_id = low_scores_trigger(conn)
        action = conn.execute("INSERT INTO trigger_actions (trigger_id, position, action_type,"
                              " priority, config) VALUES (%s, 0, 'rest', 1, '{}')"
                              " RETURNING id", [trigger_id]).fetchone()  # fmt: skip
        assert action is not None
        for block, score in ((1, 45), (2, 90), (3, 10), (4, 20)):
            feedback(conn, block, score)
        conn.execute("INSERT INTO processing_cursors (chain_id, block_number, log_index)"
                     " VALUES (84532, 3, 0)")  # fmt: skip
        conn.execute(  # block 1's job was delivered live
            "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id,"
            " idempotency_key, payload) SELECT %s, %s, id, 84532, 'k', '{}' FROM events"
            " WHERE block_number = 1", [trigger_id, action[0]],
        )  # fmt: skip

    preview = erc8004("triggers", "test", trigger_id, "--from-block", "1", "--replay",
                      database_url=migrated_url)  # fmt: skip
    assert preview.returncode == 0, preview.stderr
    assert "a replay would cover up to block 3 log 0 and queue 1 job" in preview.stdout
    assert [(row[0], row[-1]) for row in firing_rows(preview.stdout)] == [("1", "0"), ("3", "1")]

    both = erc8004("triggers", "replay", trigger_id, "--from-block", "1", "--from-time",
                   "2026-01-01T00:00:00", database_url=migrated_url)  # fmt: skip
    assert both.returncode != 0
    assert "exactly one of --from-block and --from-time" in both.stderr
    requested = erc8004("triggers", "replay", trigger_id, "--from-block", "2",
                        database_url=migrated_url)  # fmt: skip
    assert requested.returncode == 0, requested.stderr
    assert "requested" in requested.stdout
    with psycopg.connect(migrated_url) as conn:
        row = conn.execute("SELECT from_block, status FROM trigger_replays").fetchone()
    assert row == (2, "pending")

    # A range: the preview and the request end at its own end.
    ranged = erc8004("triggers", "test", trigger_id, "--from-block", "1", "--to-block", "2",
                     "--replay", database_url=migrated_url)  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr
    assert [row[0] for row in firing_rows(ranged.stdout)] == ["1"]
    backwards = erc8004("triggers", "replay", trigger_id, "--from-block", "3", "--to-block",
                        "2", database_url=migrated_url)  # fmt: skip
    assert backwards.returncode != 0
    assert "--from-block 3 is after --to-block 2" in backwards.stderr
    bounded = erc8004("triggers", "replay", trigger_id, "--from-time", "2026-01-01T00:00:00",
                      "--to-block", "3", database_url=migrated_url)  # fmt: skip
    assert bounded.returncode == 0, bounded.stderr
    with psycopg.connect(migrated_url) as conn:
        rows = conn.execute("SELECT from_block, to_block FROM trigger_replays ORDER BY id")
        assert rows.fetchall() == [(2, None), (None, 3)]


def test_backtest_shows_a_silence_the_head_fired(migrated_url: str) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        trigger_id = low_scores_trigger(conn, ("silence", ">=", "1h", "{}"))
        conn.execute("UPDATE trigger_conditions SET field = 'silence' WHERE trigger_id = %s",
                     [trigger_id])  # fmt: skip
        feedback(conn, 1, 50)
        conn.execute("INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
                     " VALUES (84532, 7, 7)")  # fmt: skip
        conn.execute("INSERT INTO indexed_blocks (chain_id, block_number, block_hash,"
                     " parent_hash, block_time) VALUES (84532, 7, '0x7', '0x6',"
                     " now() + interval '2 hours')")  # fmt: skip
    result = erc8004("triggers", "test", trigger_id, database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    assert "low scores: 1 firing in 1 event" in result.stdout
    [row] = [line for line in result.stdout.splitlines() if "silence" in line and "│" in line]
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    assert cells[:2] == ["7", "head"]
    assert cells[4] == "42"  # the agent of the silent scope
