"""The processor against PostgreSQL: chain order, confirmations, exactly-once jobs, state in
trigger_state, cooldown and one processor per chain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from erc8004_backend.chain.decode import decode_log
from erc8004_backend.chain.encode import encode_log
from erc8004_backend.chain.events import SPECS
from erc8004_backend.indexer.store import BlockHeader, EventStore
from erc8004_backend.triggers import processor
from erc8004_backend.triggers.backtest import TriggerNotFoundError, backtest
from erc8004_backend.triggers.fields import FIELDS
from erc8004_backend.triggers.processor import (
    ChainMemory,
    Processor,
    _ready_events,
    load_trigger_index,
    process_batch,
    process_chain,
)
from erc8004_backend.triggers.templates import render_template

CHAIN = 84532
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
ConditionRow = tuple[str, str, str, str, dict[str, Any]]
LOW_SCORE: list[ConditionRow] = [
    ("agent_id_equals", "agent_id", "=", "42", {}),
    ("score_threshold", "score", "<", "60", {}),
]


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        await connection.execute(
            "INSERT INTO users (id, username, email, password_hash)"
            " VALUES ('a11ce000-0000-4000-8000-000000000001', 'alice', 'a@example.com', 'x')"
        )
        await connection.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)",
            [CHAIN],
        )
        yield connection


async def add_trigger(conn: psycopg.AsyncConnection, conditions: list[tuple[str, str, str, str, dict[str, Any]]],
                      *, cooldown: int = 0, actions: int = 1, threshold: int = 10,
                      fires_from: datetime = T0) -> str:  # fmt: skip
    """A trigger that fires for events from `fires_from` on (by default all of these tests'
    events: it has existed since before them)."""
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, cooldown_seconds,"
        " failure_threshold, fires_from)"
        " VALUES ('a11ce000-0000-4000-8000-000000000001', 'test', %s, 'reputation', %s, %s, %s)"
        " RETURNING id::text",
        [CHAIN, cooldown, threshold, fires_from],
    )
    row = await cursor.fetchone()
    assert row is not None
    for position, (kind, field, operator, value, config) in enumerate(conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field, operator,"
            " value, config) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [row[0], position, kind, field, operator, value, json.dumps(config)],
        )
    for position in range(actions):
        await conn.execute(
            "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
            " VALUES (%s, %s, 'rest', %s, '{}')",
            [row[0], position, position + 1],
        )
    return str(row[0])


async def add_feedback(conn: psycopg.AsyncConnection, block: int, agent: int, score: int,
                       *, minutes: float = 0, log_index: int = 0) -> None:  # fmt: skip
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " client_address, value, value_decimals, score, tag1)"
        " VALUES (%s, 'reputation', 'NewFeedback', %s, %s, %s, %s, %s, 0, %s, %s, %s, %s, 0, %s, 'refund')",
        [CHAIN, "0x" + "aa" * 20, block, f"0x{block:064x}", T0 + timedelta(minutes=minutes),
         f"0x{block:064x}", log_index, agent, "0x" + "cc" * 20, score, score],
    )  # fmt: skip


async def confirm(conn: psycopg.AsyncConnection, block: int) -> None:
    await conn.execute("UPDATE checkpoints SET block_number = %s, confirmed_block_number = %s"
                       " WHERE chain_id = %s", [block, block, CHAIN])  # fmt: skip


async def jobs(conn: psycopg.AsyncConnection) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT e.block_number, e.agent_id, j.priority, j.payload, j.idempotency_key"
        " FROM action_jobs j JOIN events e ON e.id = j.event_id ORDER BY e.block_number, j.priority"
    )
    return await cursor.fetchall()


async def test_low_score_example_creates_one_job_per_action_for_the_right_event(
    conn: psycopg.AsyncConnection,
) -> None:
    await add_trigger(conn, LOW_SCORE, actions=2)
    await add_feedback(conn, 1, 42, 45)
    await add_feedback(conn, 2, 43, 45)
    await add_feedback(conn, 3, 42, 60)
    await confirm(conn, 3)
    result = await process_batch(conn, CHAIN, await load_trigger_index(conn))
    assert (result.events, result.fired, result.jobs) == (3, 1, 2)
    rows = await jobs(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, Decimal(42), 1), (1, Decimal(42), 2)]
    payload = rows[0][3]
    assert payload["event"]["score"] == "45"
    assert payload["event"]["tag1"] == "refund"
    assert payload["computed"]["trigger_name"] == "test"
    assert rows[0][4] != rows[1][4]  # one idempotency key per action
    cursor = await conn.execute("SELECT block_number, log_index FROM processing_cursors")
    assert await cursor.fetchone() == (3, 0)


async def test_payload_numbers_are_the_text_templates_show(
    conn: psycopg.AsyncConnection,
) -> None:
    """A fixed-point score stored with its scale (value 4550, 2 decimals: 45.50) travels as
    "45.5", so that the worker, which renders the payload's text as it is, shows what
    render_template shows for the number itself."""
    await add_trigger(conn, LOW_SCORE)
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " client_address, value, value_decimals, score, tag1)"
        " VALUES (%s, 'reputation', 'NewFeedback', %s, 1, %s, %s, %s, 0, 0, 42, %s, 4550, 2,"
        " 45.50, 'q')",
        [CHAIN, "0x" + "aa" * 20, "0x" + "01" * 32, T0, "0x" + "02" * 32, "0x" + "cc" * 20],
    )
    await confirm(conn, 1)
    await process_batch(conn, CHAIN, await load_trigger_index(conn))
    (row,) = await jobs(conn)
    event = row[3]["event"]
    assert (event["score"], event["value"], event["value_decimals"]) == ("45.5", "4550", 2)
    template = "{{score}} ({{value}} / 10^{{value_decimals}})"
    assert render_template(template, event) == "45.5 (4550 / 10^2)"
    assert render_template(template, event) == render_template(
        template, {"score": Decimal("45.50"), "value": Decimal(4550), "value_decimals": 2}
    )


async def test_feedback_of_the_interim_abi_meets_conditions_on_score_tag2_and_endpoint(
    conn: psycopg.AsyncConnection,
) -> None:
    """Feedback in the ABI testnets ran in January 2026 (a uint8 score, tag1 indexed, so only
    its hash), decoded and stored as the indexer does, fires like current feedback."""
    await add_trigger(conn, [
        ("score_threshold", "score", "<", "50", {}),
        ("tag_equals", "tag2", "=", "fast", {}),
        ("field", "endpoint", "STARTS_WITH", "https://agent.example/", {}),
        ("field", "value_decimals", "=", "0", {}),
    ])  # fmt: skip
    interim = next(s for s in SPECS if s.name == "NewFeedback" and s.version == "interim")
    rows = []
    for log_index, (score, tag2) in enumerate([(30, "fast"), (80, "fast"), (30, "slow")]):
        values = {"agentId": 42, "clientAddress": b"\xcc" * 20, "feedbackIndex": log_index + 1,
                  "score": score, "tag1": "refund", "tag2": tag2,
                  "endpoint": "https://agent.example/mcp", "feedbackURI": "ipfs://bafkrei",
                  "feedbackHash": b"\x00" * 32}  # fmt: skip
        log = encode_log(interim, values, address="0x" + "aa" * 20, block_number=1,
                         block_hash="0x" + "01" * 32, transaction_hash="0x" + "02" * 32,
                         log_index=log_index)  # fmt: skip
        row = decode_log(log, chain_id=CHAIN, registry="reputation", block_time=T0)
        assert row is not None
        rows.append(row)
    block = BlockHeader(1, "0x" + "01" * 32, "0x" + "00" * 32, T0)
    await EventStore(CHAIN).write_batch(conn, previous=0, rows=rows, blocks=[block],
                                        checkpoint=block, head=1, confirmed=1,
                                        keep_blocks_from=0)  # fmt: skip
    result = await process_batch(conn, CHAIN, await load_trigger_index(conn))
    assert (result.events, result.fired) == (3, 1)
    ((block_number, agent, _, payload, _),) = await jobs(conn)
    assert (block_number, agent) == (1, Decimal(42))
    event = payload["event"]
    assert (event["score"], event["value"], event["value_decimals"]) == ("30", "30", 0)
    assert (event["tag1"], event["tag2"], event["feedback_index"]) == (None, "fast", "1")


async def test_only_confirmed_events_are_processed_and_a_replay_adds_no_job(
    conn: psycopg.AsyncConnection,
) -> None:
    await add_trigger(conn, LOW_SCORE)
    for block in (1, 2, 3):
        await add_feedback(conn, block, 42, 10)
    await confirm(conn, 2)
    index = await load_trigger_index(conn)
    assert (await process_batch(conn, CHAIN, index)).events == 2
    assert len(await jobs(conn)) == 2
    await confirm(conn, 3)
    assert (await process_batch(conn, CHAIN, index)).events == 1
    # A rewound cursor (a deep reorg) replays events: the unique key keeps one job each, and
    # the batch's COPY, which meets the existing jobs, gives way to INSERT ... ON CONFLICT,
    # which still queues the new event's.
    await add_feedback(conn, 4, 42, 10)
    await confirm(conn, 4)
    await conn.execute("UPDATE processing_cursors SET block_number = -1, log_index = -1")
    assert (await process_batch(conn, CHAIN, index)).events == 4
    assert [row[0] for row in await jobs(conn)] == [1, 2, 3, 4]


async def test_ready_events_hold_every_field(conn: psycopg.AsyncConnection) -> None:
    """The processor reads named columns, not `e.*`: each field conditions and payloads name
    (fields.FIELDS; `timestamp` is block_time), with the id."""
    await add_feedback(conn, 1, 42, 10)
    await confirm(conn, 1)
    await conn.execute("INSERT INTO processing_cursors (chain_id, block_number, log_index)"
                       " VALUES (%s, -1, -1)", [CHAIN])  # fmt: skip
    async with conn.transaction():
        (event,) = await _ready_events(conn, CHAIN, (-1, -1), 10)
    assert set(FIELDS) - {"timestamp"} | {"id", "block_time"} <= set(event)


async def test_a_failed_batch_leaves_the_memory_of_the_chain_empty(
    conn: psycopg.AsyncConnection,
) -> None:
    """A batch that does not commit leaves nothing of itself remembered: its state rows may
    not exist, and the next batch reads them again."""
    trigger_id = await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("ema_threshold", "score", "<", "70", {"window_size": 10}),
    ])  # fmt: skip
    for block in (1, 2):
        await add_feedback(conn, block, 42, 50, minutes=block)
    await confirm(conn, 2)
    index = await load_trigger_index(conn)
    memory = ChainMemory()
    assert (await process_batch(conn, CHAIN, index, limit=1, memory=memory)).events == 1
    assert memory.position == (1, 0)
    assert (trigger_id, "agent:42") in memory.states
    # The trigger is deleted (its state with it) before the processor reloads its triggers:
    # the next batch's writes fail on the foreign key.
    await conn.execute("DELETE FROM triggers WHERE id = %s", [trigger_id])
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        await process_batch(conn, CHAIN, index, limit=1, memory=memory)
    assert memory.position is None
    assert not memory.states


@pytest.mark.parametrize("ahead", [False, True])
async def test_a_trigger_deleted_before_the_processor_reloads_stops_nothing(
    conn: psycopg.AsyncConnection, migrated_url: str, ahead: bool
) -> None:
    """A user deletes a trigger while the processor still has it (the notice is read between
    runs): the batch's write fails on the foreign key, which stopped the processor, and with
    it `erc8004 run`, for every user. Now the run loads the triggers anew and the batch is
    processed with the others."""
    kept = await add_trigger(conn, LOW_SCORE)
    deleted = await add_trigger(conn, LOW_SCORE)
    await add_feedback(conn, 1, 42, 10)
    await confirm(conn, 1)
    processor = Processor(migrated_url)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as reader:
        assert await processor.run_once(conn, reader if ahead else None) == 1
        await conn.execute("DELETE FROM triggers WHERE id = %s", [deleted])
        await add_feedback(conn, 2, 42, 10)
        await confirm(conn, 2)
        assert await processor.run_once(conn, reader if ahead else None) == 0  # refused, noted
        assert await processor.run_once(conn, reader if ahead else None) == 1
    cursor = await conn.execute(
        "SELECT trigger_id::text, event_id FROM action_jobs ORDER BY event_id, trigger_id"
    )
    by_event = [row async for row in cursor]
    assert [trigger for trigger, _ in by_event].count(kept) == 2
    assert len(by_event) == 2  # the deleted trigger's first job went with it


async def _ema_trigger_over_seven_blocks(conn: psycopg.AsyncConnection) -> str:
    """A stateful trigger on agent 42 and a confirmed feedback to it in each of blocks 1-7
    (each of which fires it); its id."""
    trigger_id = await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("ema_threshold", "score", "<", "70", {"window_size": 10}),
    ])  # fmt: skip
    for block in range(1, 8):
        await add_feedback(conn, block, 42, 50, minutes=block)
    await confirm(conn, 7)
    return trigger_id


async def test_batches_planned_ahead_start_where_the_cursor_is(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    """process_chain starts from the cursor, not from where its memory says the last batch
    left it: after a deep reorg's restore rewound the cursor (and the state), the memory is
    forgotten, and every event gets its one job, the state that of every event once."""
    trigger_id = await _ema_trigger_over_seven_blocks(conn)
    index = await load_trigger_index(conn)
    memory = ChainMemory()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as reader:
        done = await process_chain(conn, reader, CHAIN, index, memory, limit=2)
        assert (done.events, done.jobs, done.last_position) == (7, 7, (7, 0))
        assert memory.position == (7, 0)
        # As a restore does: the state and the cursor back to before block 4, and those
        # blocks' jobs gone with their events (here: deleted, the events kept).
        await conn.execute("DELETE FROM action_jobs WHERE event_id IN (SELECT id FROM events"
                           " WHERE block_number >= 4)")  # fmt: skip
        await conn.execute("UPDATE processing_cursors SET block_number = 3, log_index = 0")
        await conn.execute("UPDATE trigger_state SET state = %s",
                           [json.dumps({"2": {"ema": 50.0, "n": 3}})])  # fmt: skip
        again = await process_chain(conn, reader, CHAIN, index, memory, limit=2)
    assert (again.events, again.jobs) == (4, 4)
    assert [row[0] for row in await jobs(conn)] == list(range(1, 8))
    cursor = await conn.execute("SELECT state FROM trigger_state WHERE trigger_id = %s",
                                [trigger_id])  # fmt: skip
    assert await cursor.fetchone() == ({"2": {"ema": 50.0, "n": 7}},)


@pytest.mark.parametrize("restore", [True, False])
async def test_a_batch_planned_ahead_is_not_written_if_the_chain_moved_meanwhile(
    conn: psycopg.AsyncConnection,
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    restore: bool,
) -> None:
    """While batch 2 is planned and batch 1 commits, a reorg happens: with `restore`, one
    deeper than what was processed (the cursor, state and jobs go back to the start, as the
    indexer's restore does); without, one above the cursor (the events from block 4 go, the
    cursor stays). Batch 2's transaction finds the cursor elsewhere than batch 1 left it, or
    its last event gone: it writes nothing, and the batches are planned again from the
    cursor."""
    trigger_id = await _ema_trigger_over_seven_blocks(conn)
    index = await load_trigger_index(conn)
    planned = processor._read_and_plan
    calls = 0

    async def plan_then_reorg(*args: Any) -> Any:
        nonlocal calls
        batch = await planned(*args)
        calls += 1
        if calls == 2:  # batch 1 is being written: the reorg waits for its commit
            async with await psycopg.AsyncConnection.connect(migrated_url) as other:
                await other.execute("SELECT * FROM processing_cursors FOR UPDATE")
                if restore:
                    await other.execute("DELETE FROM action_jobs")
                    await other.execute("DELETE FROM trigger_state")
                    await other.execute("UPDATE processing_cursors SET block_number = -1,"
                                        " log_index = -1")  # fmt: skip
                else:
                    await other.execute("DELETE FROM events WHERE block_number >= 4")
                    await other.execute("UPDATE checkpoints SET block_number = 3,"
                                        " confirmed_block_number = 3")  # fmt: skip
        return batch

    monkeypatch.setattr(processor, "_read_and_plan", plan_then_reorg)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as reader:
        done = await process_chain(conn, reader, CHAIN, index, ChainMemory(), limit=2)
    blocks = 7 if restore else 3
    assert calls > 3  # batch 2 was planned twice
    assert done.last_position == (blocks, 0)
    assert [row[0] for row in await jobs(conn)] == list(range(1, blocks + 1))
    cursor = await conn.execute("SELECT state FROM trigger_state WHERE trigger_id = %s",
                                [trigger_id])  # fmt: skip
    assert await cursor.fetchone() == ({"2": {"ema": 50.0, "n": blocks}},)


async def test_a_failure_while_planning_ahead_leaves_the_memory_empty(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    """A batch written while the next is planned fails: nothing it planned is remembered
    (neither is the next batch's plan, made from it), and nothing of it is stored."""
    trigger_id = await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("ema_threshold", "score", "<", "70", {"window_size": 10}),
    ])  # fmt: skip
    for block in (1, 2, 3):
        await add_feedback(conn, block, 42, 50, minutes=block)
    await confirm(conn, 3)
    index = await load_trigger_index(conn)
    await conn.execute("DELETE FROM triggers WHERE id = %s", [trigger_id])
    memory = ChainMemory()
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as reader:
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            await process_chain(conn, reader, CHAIN, index, memory, limit=1)
    assert (memory.position, memory.states, memory.latest) == (None, {}, {})
    cursor = await conn.execute("SELECT block_number FROM processing_cursors")
    assert await cursor.fetchone() == (-1,)


async def test_a_state_holding_an_integer_beyond_64_bits_is_saved(
    conn: psycopg.AsyncConnection,
) -> None:
    """jsonb gives back a number like 1e20 as an integer, which orjson cannot encode: the
    state row is written all the same, the number as it was."""
    trigger_id = await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("ema_threshold", "score", "<", "70", {"window_size": 10}),
    ])  # fmt: skip
    await conn.execute(
        "INSERT INTO trigger_state (trigger_id, scope, state) VALUES (%s, 'agent:42', %s)",
        [trigger_id, json.dumps({"2": {"ema": 50.0, "n": 1}, "9": {"n": 10**20}})],
    )
    await add_feedback(conn, 1, 42, 50)
    await confirm(conn, 1)
    assert (await process_batch(conn, CHAIN, await load_trigger_index(conn))).events == 1
    cursor = await conn.execute("SELECT state FROM trigger_state")
    assert await cursor.fetchone() == ({"2": {"ema": 50.0, "n": 2}, "9": {"n": 10**20}},)


async def test_ema_state_lives_in_trigger_state_across_small_batches(
    conn: psycopg.AsyncConnection,
) -> None:
    await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("ema_threshold", "score", "<", "70", {"window_size": 10}),
    ])  # fmt: skip
    scores = [90, 90, 90] + [40] * 10
    for block, score in enumerate(scores, start=1):
        await add_feedback(conn, block, 42, score, minutes=block)
    await confirm(conn, len(scores))
    index = await load_trigger_index(conn)
    while (await process_batch(conn, CHAIN, index, limit=2)).events:
        pass
    average: float = scores[0]
    expected = []
    for i, score in enumerate(scores):
        average = score if i == 0 else 2 / 11 * score + (1 - 2 / 11) * average
        expected.append(average < 70)
    fired_blocks = [row[0] for row in await jobs(conn)]
    assert fired_blocks == [block for block, fires in enumerate(expected, start=1) if fires]
    cursor = await conn.execute("SELECT scope, state, last_block_number FROM trigger_state")
    scope, state, last_block = await cursor.fetchone() or (None, None, None)
    assert scope == "agent:42"
    assert state["2"]["ema"] == pytest.approx(average)
    assert last_block == len(scores)


async def test_cooldown_in_block_time(conn: psycopg.AsyncConnection) -> None:
    await add_trigger(conn, LOW_SCORE, cooldown=3600)
    await add_feedback(conn, 1, 42, 10, minutes=0)
    await add_feedback(conn, 2, 42, 10, minutes=10)
    await add_feedback(conn, 3, 42, 10, minutes=70)
    await confirm(conn, 3)
    await process_batch(conn, CHAIN, await load_trigger_index(conn), limit=1)
    await process_batch(conn, CHAIN, await load_trigger_index(conn))
    assert [row[0] for row in await jobs(conn)] == [1, 3]
    cursor = await conn.execute("SELECT last_fired_at FROM triggers")
    assert await cursor.fetchone() == (T0 + timedelta(minutes=70),)


async def test_history_queues_no_job_and_starts_no_cooldown(
    conn: psycopg.AsyncConnection,
) -> None:
    """Events before the trigger's start would fire it, but are history: no job, no
    last_fired_at, and so no cooldown that would hold back the first new event."""
    await add_trigger(conn, LOW_SCORE, cooldown=3600, fires_from=T0 + timedelta(minutes=30))
    await add_feedback(conn, 1, 42, 10, minutes=0)
    await add_feedback(conn, 2, 42, 10, minutes=10)
    await confirm(conn, 2)
    result = await process_batch(conn, CHAIN, await load_trigger_index(conn))
    assert (result.events, result.fired, result.jobs) == (2, 0, 0)
    cursor = await conn.execute("SELECT last_fired_at FROM triggers")
    assert await cursor.fetchone() == (None,)
    await add_feedback(conn, 3, 42, 10, minutes=30)  # the trigger's start: new
    await add_feedback(conn, 4, 42, 10, minutes=40)  # within the cooldown of block 3
    await confirm(conn, 4)
    await process_batch(conn, CHAIN, await load_trigger_index(conn))
    assert [row[0] for row in await jobs(conn)] == [3]
    cursor = await conn.execute("SELECT last_fired_at FROM triggers")
    assert await cursor.fetchone() == (T0 + timedelta(minutes=30),)


async def test_a_history_firing_resets_its_window_as_a_new_one_would(
    conn: psycopg.AsyncConnection,
) -> None:
    """The state a trigger reaches does not depend on when it was made: a window with
    reset_on_trigger that fills during history starts again (as one held back by a cooldown
    does), and the backtest, which ignores the start, shows the same state and the
    held-back firing."""
    trigger = await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("rate_limit", "feedback_count", ">=", "3", {"time_window": "1h", "reset_on_trigger": True}),
    ], fires_from=T0 + timedelta(minutes=4))  # fmt: skip
    for block in range(1, 7):
        await add_feedback(conn, block, 42, 10, minutes=block)
    await confirm(conn, 6)
    await process_batch(conn, CHAIN, await load_trigger_index(conn))
    # 1-3 fill the window (history: reset, no job); 4-6 fill it again.
    assert [row[0] for row in await jobs(conn)] == [6]
    cursor = await conn.execute("SELECT state FROM trigger_state")
    (stored,) = await cursor.fetchone() or (None,)
    result = await backtest(conn, trigger)
    assert [firing.block_number for firing in result.fired] == [3, 6]
    assert result.states["agent:42"] == stored == {"2": {"times": []}}


async def test_one_processor_per_chain(conn: psycopg.AsyncConnection, migrated_url: str) -> None:
    await add_trigger(conn, LOW_SCORE)
    await add_feedback(conn, 1, 42, 10)
    await confirm(conn, 1)
    first, second = Processor(migrated_url), Processor(migrated_url)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as other:
        assert await first.run_once(conn) == 1
        await add_feedback(conn, 2, 42, 10)
        await confirm(conn, 2)
        assert await second.run_once(other) == 0  # the first holds the chain
        assert await first.run_once(conn) == 1
    assert len(await jobs(conn)) == 2


async def test_backtest_reports_what_would_fire_and_writes_nothing(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await add_trigger(conn, [
        ("agent_id_equals", "agent_id", "=", "42", {}),
        ("rate_limit", "feedback_count", ">=", "3", {"time_window": "1h", "reset_on_trigger": True}),
    ])  # fmt: skip
    for block in range(1, 8):
        await add_feedback(conn, block, 42, 10, minutes=block)
    await conn.execute("UPDATE triggers SET enabled = false")  # tune before enabling
    result = await backtest(conn, trigger, from_block=2, to_block=7)
    assert result.events_checked == 6
    assert [f.block_number for f in result.fired] == [4, 7]
    assert result.fired[0].computed == {"count": 3}
    assert result.states["agent:42"]["2"] == {"times": []}  # reset when it fired at 7
    cursor = await conn.execute(
        "SELECT (SELECT count(*) FROM action_jobs), (SELECT count(*) FROM trigger_state)"
    )
    assert await cursor.fetchone() == (0, 0)
    with pytest.raises(TriggerNotFoundError, match="is not a trigger id"):
        await backtest(conn, "42")


async def test_the_processor_wakes_on_notify_and_finds_work_after_a_restart(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    await add_trigger(conn, LOW_SCORE)
    # Work left from before a restart: no notification will ever announce it.
    await add_feedback(conn, 1, 42, 10)
    await confirm(conn, 1)
    stop = asyncio.Event()
    processor = Processor(migrated_url, poll_interval=30)  # only a NOTIFY can wake it in time
    task = asyncio.create_task(processor.run(stop))
    try:
        await wait_for_jobs(conn, 1)
        async with conn.transaction():  # what the indexer commits: events and confirmation
            await add_feedback(conn, 2, 42, 10)
            await confirm(conn, 2)
        started = time.monotonic()
        await wait_for_jobs(conn, 2)
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for_jobs(conn: psycopg.AsyncConnection, count: int) -> None:
    for _ in range(200):
        if len(await jobs(conn)) >= count:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"fewer than {count} jobs after 5 s")
