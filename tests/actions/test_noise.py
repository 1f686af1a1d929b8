"""Noise control under load, across workers: an action's rate limit is never exceeded at the
receiver, its dedup window sends a repeated message once, and Telegram's per-chat limit is
kept; all through PostgreSQL, to real servers on loopback."""

from __future__ import annotations

import bisect
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.channel import Preview
from erc8004_backend.actions.delivery import DeliveryFailed
from erc8004_backend.actions.noise import is_repeat
from erc8004_backend.actions.queue import claim_jobs
from erc8004_backend.actions.telegram import CHAT_INTERVAL
from erc8004_backend.encryption import SecretBox
from tests.actions.test_worker import BOT_TOKEN, results, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import TelegramServer, WebhookSink
from tests.support.jobs import create_trigger, queue_jobs
from tests.support.waiting import eventually

# Arrival times are measured at the receiver, the slots by PostgreSQL's clock: a few
# milliseconds of scheduling lie between them.
JITTER = 0.03
# Under load (many deliveries at once on a shared machine, the receiver sharing its event
# loop with the workers, the suite's other process beside) the lag varies more: a pause of
# the loop brings a few arrivals together. Up to this many of the rate's intervals.
SLOTS_OF_JITTER = 4


async def test_two_workers_never_exceed_an_actions_rate_limit(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        config: dict[str, Any] = {"url": url, "rate_limit_per_minute": 600}  # 10 a second
        trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
        sink.secret = secret or ""
        await queue_jobs(conn, trigger, action, 25)
        settings = settings_for(migrated_url)
        async with running_worker(settings), running_worker(settings):
            await eventually(lambda: len(sink.received) >= 25, timeout=30, what="25 deliveries")
    times = sorted(request.at for request in sink.received)
    assert len(times) == 25
    # Any k + 1 consecutive arrivals span at least k intervals: never more than 10 a second.
    for k in (1, 5, 10):
        spans = [later - earlier for earlier, later in zip(times, times[k:], strict=False)]
        assert min(spans) >= k * 0.1 - JITTER, (k, min(spans))
    assert times[-1] - times[0] < 2.4 + 1.0  # and not much slower either


async def test_under_load_three_workers_never_exceed_the_rate(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """150 jobs, 3 workers of 16 deliveries each, at 1,200 a minute (20 a second). The send
    slots are 50 ms apart; an arrival lags its slot by the time the request takes, which
    varies on a busy machine (2 cores shared by many tests) by up to about four slots. So any
    window of W seconds at the receiver holds at most 20 W arrivals, plus the four that
    jitter can bring in; and the 150 take about 7.5 s, not much more."""
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        config: dict[str, Any] = {"url": url, "rate_limit_per_minute": 1200}
        trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
        sink.secret = secret or ""
        await queue_jobs(conn, trigger, action, 150)
        settings = settings_for(migrated_url, worker_concurrency=16)
        async with running_worker(settings), running_worker(settings), running_worker(settings):
            await eventually(lambda: _finished(conn, 150), timeout=60, what="150 jobs done")
    assert len(sink.processed) == 150
    times = sorted(request.at for request in sink.received)
    for window in (1.0, 2.0, 5.0):
        busiest = max(bisect.bisect_left(times, at + window) - i for i, at in enumerate(times))
        assert busiest <= 20 * window + SLOTS_OF_JITTER, (window, busiest)
    for k in (20, 100):  # k + 1 arrivals span k slots, less the jitter
        spans = [later - earlier for earlier, later in zip(times, times[k:], strict=False)]
        assert min(spans) >= (k - SLOTS_OF_JITTER) * 0.05, (k, min(spans))
    assert times[-1] - times[0] < 149 * 0.05 + 1.5


async def test_under_load_each_repeated_message_is_sent_once(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """30 distinct messages queued 5 times each, delivered by 3 workers at once: each
    arrives once; the 120 repeats are recorded as delivered, deduplicated."""
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        config = {"url": url, "body_template": {"agent": "{{agent_id}}"}, "dedup_seconds": 600}
        trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
        sink.secret = secret or ""
        for repeat in range(5):
            for agent in range(30):
                await queue_jobs(conn, trigger, action, 1, first_event=repeat * 30 + agent + 1,
                                 agent_id=str(agent))  # fmt: skip
        settings = settings_for(migrated_url, worker_concurrency=16)
        async with running_worker(settings), running_worker(settings), running_worker(settings):
            await eventually(lambda: _finished(conn, 150), timeout=60, what="150 jobs done")
    agents = [request.json()["agent"] for request in sink.received]
    assert sorted(agents, key=int) == [str(agent) for agent in range(30)]
    outcomes = await results(conn)
    assert sum(row["response_data"] == {"deduplicated": True} for row in outcomes) == 120


async def test_the_same_message_within_the_dedup_window_is_sent_once(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        config = {"url": url, "body_template": {"agent": "{{agent_id}}"}, "dedup_seconds": 600}
        trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
        sink.secret = secret or ""
        await queue_jobs(conn, trigger, action, 4)  # agent 42 each time
        await queue_jobs(conn, trigger, action, 1, first_event=5, agent_id="7")
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: _finished(conn, 5), timeout=20, what="5 jobs done")
    assert sorted(r.json()["agent"] for r in sink.received) == ["42", "7"]
    outcomes = await results(conn)
    assert {row["status"] for row in outcomes} == {"success"}
    assert sum(row["response_data"] == {"deduplicated": True} for row in outcomes) == 3


async def test_a_message_whose_first_job_died_is_sent_by_the_next(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """Dedup suppresses what the action sent: a job dead-lettered sent nothing, and the next
    job with its message within the window is delivered, not recorded as a repeat."""
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        config = {"url": url, "body_template": {"agent": "{{agent_id}}"}, "dedup_seconds": 600}
        trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
        sink.secret = secret or ""
        sink.fail_next(1, 400)  # dead at once
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)):
            await eventually(
                lambda: _finished(conn, 1, "dead"), timeout=20, what="the first job dead"
            )
            await queue_jobs(conn, trigger, action, 1, first_event=2)
            await eventually(lambda: _finished(conn, 1), timeout=20, what="the second job")
    assert [r.json()["agent"] for r in sink.received] == ["42", "42"]  # refused, then taken
    assert len(sink.processed) == 1
    outcomes = await results(conn)
    assert [row["status"] for row in outcomes] == ["failed", "success"]
    assert outcomes[1]["response_data"] != {"deduplicated": True}


async def test_a_repeat_waits_for_the_job_that_holds_its_message_and_is_sent_if_it_dies(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """A repeat found while the first job with its message is still retrying is no repeat
    yet: it waits, not counted as an attempt, and when that job dies it is sent."""
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        config = {"url": url, "body_template": {"agent": "{{agent_id}}"}, "dedup_seconds": 600}
        trigger, action, secret = await create_trigger(conn, "rest", config, box=box)
        sink.secret = secret or ""
        sink.fail_next(2, 503)  # both attempts of the first job
        [first] = await queue_jobs(conn, trigger, action, 1, max_attempts=2)
        settings = settings_for(migrated_url, retry_initial_seconds=1.5, retry_max_seconds=1.5)
        async with running_worker(settings):
            await eventually(lambda: len(sink.received) == 1, timeout=10, what="a first try")
            [repeat] = await queue_jobs(conn, trigger, action, 1, first_event=2, max_attempts=2)
            await eventually(lambda: _finished(conn, 1), timeout=20, what="the repeat sent")
    assert len(sink.processed) == 1  # the repeat's, after the first job died
    cursor = await conn.execute("SELECT id, status, attempts FROM action_jobs ORDER BY id")
    assert await cursor.fetchall() == [(first, "dead", 2), (repeat, "succeeded", 1)]
    outcomes = [row for row in await results(conn) if row["job_id"] == repeat]
    assert [row["status"] for row in outcomes][-1] == "success"
    assert outcomes[-1]["response_data"] != {"deduplicated": True}
    assert "waits for its outcome" in (outcomes[0]["error_message"] or "")


async def test_a_repeat_of_a_message_being_sent_or_digested_is_told_without_a_long_wait(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """The holder being sent: the repeat looks again a few times, then is put back (not
    counted) rather than holding its slot; the holder folded into a digest: sent with it."""
    trigger, action, _ = await create_trigger(conn, "rest", {"url": "https://x.example/"},
                                              box=box)  # fmt: skip
    await queue_jobs(conn, trigger, action, 3)
    holder, repeat, other = await claim_jobs(conn, worker="w", limit=3, lease_seconds=30)
    preview = Preview(text="the same message", body=None)
    async with AsyncConnectionPool(migrated_url, min_size=1, max_size=2, open=False,
                                   kwargs={"autocommit": True}) as pool:  # fmt: skip
        assert not await is_repeat(pool, holder, preview, 600)  # the message is the holder's
        started = time.monotonic()
        with pytest.raises(DeliveryFailed, match="is sending the same message") as waited:
            await is_repeat(pool, repeat, preview, 600, max_wait=0.3)
        assert 0.1 < time.monotonic() - started < 0.6
        assert (waited.value.retryable, waited.value.counted) == (True, False)
        await conn.execute("UPDATE action_jobs SET status = 'digested' WHERE id = %s",
                           [holder.id])  # fmt: skip
        assert await is_repeat(pool, other, preview, 600, max_wait=0.3)


async def test_a_wait_for_a_send_slot_is_no_attempt(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    """Telegram's bot-wide slot is shared by every user's actions: when another's messages
    hold it for longer than a worker waits, the job is put back for when it frees, with its
    attempts as they were, and neither dead-lettered nor counted against its trigger's
    breaker (one attempt allowed here: counted, it would be dead at once)."""
    telegram = TelegramServer(token=BOT_TOKEN)
    async with serve_asgi(telegram) as url:
        config = {"chat_id": "1001", "message_template": "agent {{agent_id}}"}
        trigger, action, _ = await create_trigger(conn, "telegram", config)
        await conn.execute("INSERT INTO delivery_slots (target, next_at)"
                           " VALUES ('telegram:bot', clock_timestamp() + interval '1 hour')")  # fmt: skip
        [job] = await queue_jobs(conn, trigger, action, 1, max_attempts=1)
        settings = settings_for(migrated_url, telegram_api_url=url, telegram_rate_limits=True)
        async with running_worker(settings):
            await eventually(lambda: _has_results(conn, 1), timeout=20, what="the wait")
            cursor = await conn.execute(
                "SELECT status, attempts, run_at > now() + interval '50 minutes'"
                " FROM action_jobs WHERE id = %s", [job])  # fmt: skip
            assert await cursor.fetchone() == ("queued", 0, True)
            # The slot frees (the other user's messages went): the job is sent.
            await conn.execute("DELETE FROM delivery_slots WHERE target = 'telegram:bot'")
            await conn.execute("UPDATE action_jobs SET run_at = now() WHERE id = %s", [job])
            await conn.execute("NOTIFY action_job")
            await eventually(lambda: _finished(conn, 1), timeout=20, what="the message")
    assert len(telegram.messages) == 1
    outcomes = await results(conn)
    assert [row["status"] for row in outcomes] == ["retrying", "success"]
    assert outcomes[0]["error_message"].startswith("rate limited: telegram:bot has no free slot")
    cursor = await conn.execute("SELECT consecutive_failures FROM triggers WHERE id = %s",
                                [trigger])  # fmt: skip
    assert await cursor.fetchone() == (0,)


async def _has_results(conn: psycopg.AsyncConnection, count: int) -> bool:
    return len(await results(conn)) >= count


async def test_telegrams_per_chat_limit_is_kept(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    telegram = TelegramServer(token=BOT_TOKEN)
    async with serve_asgi(telegram) as url:
        config = {"chat_id": "1001", "message_template": "agent {{agent_id}}"}
        trigger, action, _ = await create_trigger(conn, "telegram", config)
        await queue_jobs(conn, trigger, action, 3)
        settings = settings_for(migrated_url, telegram_api_url=url, telegram_rate_limits=True)
        async with running_worker(settings):
            await eventually(lambda: _finished(conn, 3), timeout=20, what="3 messages")
    assert len(telegram.messages) == 3
    # As Telegram sees them (the results' recording times move with the worker's batches).
    first, _, third = telegram.arrivals
    assert third - first >= 2 * CHAT_INTERVAL - JITTER


async def _finished(conn: psycopg.AsyncConnection, count: int, status: str = "succeeded") -> bool:
    cursor = await conn.execute("SELECT count(*) FROM action_jobs WHERE status = %s", [status])
    return await cursor.fetchone() == (count,)
