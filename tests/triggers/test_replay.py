"""Replays against PostgreSQL: history asked for on purpose gets exactly the replayed events'
jobs, once; a second replay of the same range queues none; a replay evaluates from empty
state and leaves the live state alone; a batch that never commits is taken again from the
replay's cursor; a replay of a trigger that is off waits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from erc8004_backend.indexer.store import EventStore
from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.processor import Processor
from erc8004_backend.triggers.replay import replay_batch, start_replays
from tests.triggers.test_processor import (
    CHAIN,
    LOW_SCORE,
    T0,
    ConditionRow,
    add_feedback,
    add_trigger,
    confirm,
)

LATER = T0 + timedelta(days=30)  # a trigger made after every event of these tests
EMA: list[ConditionRow] = [
    ("agent_id_equals", "agent_id", "=", "42", {}),
    ("ema_threshold", "score", "<", "101", {"alpha": 0.5}),
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


async def request_replay(conn: psycopg.AsyncConnection, trigger: str, *,
                         from_block: int | None = None, from_time: datetime | None = None) -> int:  # fmt: skip
    """What the API stores for a replay request."""
    cursor = await conn.execute(
        "INSERT INTO trigger_replays (trigger_id, chain_id, from_block, from_time)"
        " SELECT id, chain_id, %s, %s FROM triggers WHERE id = %s RETURNING id",
        [from_block, from_time, trigger],
    )
    row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def job_blocks(conn: psycopg.AsyncConnection) -> list[int]:
    cursor = await conn.execute(
        "SELECT e.block_number FROM action_jobs j JOIN events e ON e.id = j.event_id"
        " ORDER BY e.block_number, j.priority"
    )
    return [row[0] for row in await cursor.fetchall()]


async def replay_row(conn: psycopg.AsyncConnection, replay: int) -> dict[str, Any]:
    cursor = await conn.execute(
        "SELECT status, events, firings, jobs, end_block, cursor_block, finished_at IS NOT NULL"
        " AS finished FROM trigger_replays WHERE id = %s",
        [replay],
    )
    row = await cursor.fetchone()
    assert row is not None
    names = ("status", "events", "firings", "jobs", "end_block", "cursor_block", "finished")
    return dict(zip(names, row, strict=True))


async def six_blocks_of_history(conn: psycopg.AsyncConnection) -> str:
    """Feedback in blocks 1-6 (agent 42 low in all but block 4, agent 43 low in block 5),
    processed live by a trigger made after them: history, no job."""
    for block, agent, score in [(1, 42, 10), (2, 42, 20), (3, 42, 30), (4, 42, 90),
                                (5, 43, 10), (6, 42, 40)]:  # fmt: skip
        await add_feedback(conn, block, agent, score, minutes=block)
    await confirm(conn, 6)
    trigger = await add_trigger(conn, LOW_SCORE, actions=2, fires_from=LATER)
    assert await Processor("unused").run_once(conn) == 6
    assert await job_blocks(conn) == []
    return trigger


async def test_exactly_the_replayed_events_get_jobs_once_and_a_second_replay_none(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await six_blocks_of_history(conn)
    processor = Processor("unused", batch_size=2)
    first = await request_replay(conn, trigger, from_block=3)
    await processor.run_once(conn)
    # Blocks 3 and 6 (block 4 scored 90, block 5 is agent 43's), one job per action.
    assert await job_blocks(conn) == [3, 3, 6, 6]
    assert await replay_row(conn, first) == {
        "status": "done", "events": 4, "firings": 2, "jobs": 4, "end_block": 6,
        "cursor_block": 6, "finished": True}  # fmt: skip

    again = await request_replay(conn, trigger, from_block=3)
    await processor.run_once(conn)
    assert await job_blocks(conn) == [3, 3, 6, 6]
    assert (await replay_row(conn, again))["jobs"] == 0
    assert (await replay_row(conn, again))["firings"] == 2

    # Further back: only the events without a job get one.
    earlier = await request_replay(conn, trigger, from_time=T0)
    await processor.run_once(conn)
    assert await job_blocks(conn) == [1, 1, 2, 2, 3, 3, 6, 6]
    assert (await replay_row(conn, earlier))["jobs"] == 4
    cursor = await conn.execute("SELECT count(DISTINCT idempotency_key) FROM action_jobs")
    assert await cursor.fetchone() == (8,)


async def test_events_after_the_replays_end_are_the_live_processors_from_its_start(
    conn: psycopg.AsyncConnection,
) -> None:
    """An event the processor had not passed when the replay was taken up, older than the
    trigger's start, is in the history asked for: it fires live, once."""
    trigger = await six_blocks_of_history(conn)
    await add_feedback(conn, 7, 42, 10, minutes=7)  # not confirmed yet: the processor waits
    await request_replay(conn, trigger, from_block=2)
    processor = Processor("unused")
    await processor.run_once(conn)
    assert await job_blocks(conn) == [2, 2, 3, 3, 6, 6]
    await confirm(conn, 7)
    await processor.run_once(conn)
    assert await job_blocks(conn) == [2, 2, 3, 3, 6, 6, 7, 7]
    cursor = await conn.execute("SELECT fires_from FROM triggers")
    assert await cursor.fetchone() == (T0 + timedelta(minutes=2),)


async def test_a_stateful_replay_starts_empty_and_leaves_the_live_state_alone(
    conn: psycopg.AsyncConnection,
) -> None:
    for block, score in enumerate([90, 80, 70, 60, 50, 40, 30], start=1):
        await add_feedback(conn, block, 42, score, minutes=block)
    await confirm(conn, 7)
    trigger = await add_trigger(conn, EMA, cooldown=150, fires_from=LATER)
    processor = Processor("unused", batch_size=3)
    await processor.run_once(conn)
    live = await conn.execute("SELECT state, last_block_number FROM trigger_state")
    live_state = await live.fetchall()
    assert live_state  # warmed by history

    await request_replay(conn, trigger, from_block=3)
    await processor.run_once(conn)
    cursor = await conn.execute(
        "SELECT e.block_number, j.payload->'computed'->>'ema_score' FROM action_jobs j"
        " JOIN events e ON e.id = j.event_id ORDER BY e.block_number"
    )
    replayed = await cursor.fetchall()
    # From empty state: the average starts at block 3's 70; a firing every 150 s of block
    # time at most (blocks a minute apart), its clock carried across batches of 3.
    assert [(block, float(ema)) for block, ema in replayed] == [
        (3, 70.0), (6, 70 * 0.125 + 60 * 0.125 + 50 * 0.25 + 40 * 0.5)]  # fmt: skip
    expected = await backtest(conn, trigger, from_block=3)
    assert [(f.block_number, f.computed["ema_score"]) for f in expected.fired] == [
        (block, pytest.approx(float(ema))) for block, ema in replayed]  # fmt: skip
    again = await conn.execute("SELECT state, last_block_number FROM trigger_state")
    assert await again.fetchall() == live_state
    cursor = await conn.execute("SELECT last_fired_at FROM triggers")
    assert await cursor.fetchone() == (None,)


async def test_a_batch_that_never_commits_is_taken_again_from_the_replays_cursor(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await six_blocks_of_history(conn)
    replay = await request_replay(conn, trigger, from_block=1)
    assert await start_replays(conn, CHAIN) == 1
    first, more = await replay_batch(conn, CHAIN, replay, limit=2)  # blocks 1-2, committed
    assert (first.events, first.jobs, more) == (2, 4, True)
    async with conn.transaction(force_rollback=True):  # blocks 3-4: the process dies
        crashed, _ = await replay_batch(conn, CHAIN, replay, limit=2)
        assert crashed.jobs == 2
    assert (await replay_row(conn, replay))["cursor_block"] == 2
    while (await replay_batch(conn, CHAIN, replay, limit=2))[1]:
        pass
    assert await job_blocks(conn) == [1, 1, 2, 2, 3, 3, 6, 6]
    assert await replay_row(conn, replay) == {
        "status": "done", "events": 6, "firings": 4, "jobs": 8, "end_block": 6,
        "cursor_block": 6, "finished": True}  # fmt: skip


async def test_a_reorg_under_a_running_replay_hands_its_events_back_and_restarts_it(
    conn: psycopg.AsyncConnection,
) -> None:
    """A reorg deeper than the confirmations, below a replay's cursor: the events from where
    the processor resumes are the live processor's again (the replay ends there), and the
    replay, whose state holds orphaned events, starts over; the firings that stand are the
    backtest's over the chain as it is now, each once."""
    for block, score in enumerate([90, 80, 70, 60, 50, 40, 30], start=1):
        await add_feedback(conn, block, 42, score, minutes=block)
    # The blocks the indexer keeps for reorgs: the processor keeps undo records for them.
    await conn.execute(
        "INSERT INTO indexed_blocks (chain_id, block_number, block_hash, parent_hash, block_time)"
        " SELECT %s, n, format('0x%%064s', n), format('0x%%064s', n - 1), %s FROM generate_series(1, 7) n",
        [CHAIN, T0],
    )
    await confirm(conn, 7)
    trigger = await add_trigger(conn, EMA, fires_from=LATER)
    processor = Processor("unused", batch_size=3)
    await processor.run_once(conn)  # history: the live state moves, nothing fires
    replay = await request_replay(conn, trigger, from_block=1)
    assert await start_replays(conn, CHAIN) == 1
    for _ in range(2):
        await replay_batch(conn, CHAIN, replay, limit=3)
    assert (await replay_row(conn, replay))["cursor_block"] == 6

    # Blocks 5-7 replaced: the processor resumes before its batch of blocks 4-6.
    assert await EventStore(CHAIN).roll_back(conn, (4, f"0x{4:064x}")) is True
    for block, score in [(5, 20), (6, 10), (7, 5)]:
        await add_feedback(conn, block, 42, score, minutes=block)
    await confirm(conn, 7)
    # (A processor that loads the triggers as the replay's start left them.)
    await Processor("unused", batch_size=3).run_once(conn)

    cursor = await conn.execute(
        "SELECT e.block_number, (j.payload->'computed'->>'ema_score')::float FROM action_jobs j"
        " JOIN events e ON e.id = j.event_id WHERE j.status <> 'cancelled' AND NOT j.retraction"
        " ORDER BY e.block_number"
    )
    standing = await cursor.fetchall()
    expected = await backtest(conn, trigger, from_block=1)
    assert standing == [(f.block_number, pytest.approx(f.computed["ema_score"]))
                        for f in expected.fired]  # fmt: skip
    assert [block for block, _ in standing] == [1, 2, 3, 4, 5, 6, 7]
    assert await replay_row(conn, replay) == {
        "status": "done", "events": 3, "firings": 3, "jobs": 6, "end_block": 4,
        "cursor_block": 3, "finished": True}  # fmt: skip


async def test_a_replay_of_a_trigger_that_is_off_waits_until_it_is_on(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await six_blocks_of_history(conn)
    await conn.execute("UPDATE triggers SET enabled = false")
    replay = await request_replay(conn, trigger, from_block=1)
    processor = Processor("unused")
    await processor.run_once(conn)
    assert (await replay_row(conn, replay))["status"] == "pending"
    await conn.execute("UPDATE triggers SET enabled = true")
    await processor.run_once(conn)
    assert (await replay_row(conn, replay))["status"] == "done"
    assert await job_blocks(conn) == [1, 1, 2, 2, 3, 3, 6, 6]


async def test_the_backtest_as_a_replay_shows_the_events_it_covers_and_the_jobs_it_would_queue(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await six_blocks_of_history(conn)
    await add_feedback(conn, 7, 42, 10, minutes=7)  # past the processor: not a replay's
    await request_replay(conn, trigger, from_block=3)
    await Processor("unused").run_once(conn)
    preview = await backtest(conn, trigger, from_block=1, replay=True)
    assert preview.replay_end == (6, 0)
    assert preview.events_checked == 6
    assert [(f.block_number, f.new_jobs) for f in preview.fired] == [
        (1, 2), (2, 2), (3, 0), (6, 0)]  # fmt: skip
