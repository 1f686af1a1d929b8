"""The action queue: what an attempt's outcome means for its job (pure), what finished
deliveries tell the circuit breaker, and claiming, breaking and releasing on a real
PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg import sql

from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.queue import (
    Attempt,
    BreakerFeed,
    NextStatus,
    ResultStatus,
    breaker_feed,
    claim_jobs,
    decide,
    feed_circuit_breakers,
    record_attempts,
    release_expired_leases,
)
from erc8004_backend.indexer.store import EventStore
from erc8004_backend.retry import RetryPolicy
from erc8004_backend.triggers.processor import QUERIES as PROCESSOR_QUERIES
from erc8004_backend.triggers.processor import load_trigger_index
from tests.support.jobs import (
    CHAIN_ID,
    OTHER_USER,
    USER_ID,
    create_trigger,
    create_user,
    queue_jobs,
)
from tests.support.waiting import lock_waited_for

POLICY = RetryPolicy(max_attempts=5, backoff_initial=1.0, backoff_max=100.0)
REST = {"url": "https://api.example.com/hook"}


def job(attempt: int = 1, max_attempts: int = 5, trigger_id: str = "t1") -> Job:
    return Job(
        id=1,
        trigger_id=trigger_id,
        trigger_name="test",
        user_id=USER_ID,
        action_id="a1",
        action_type="rest",
        config=REST,
        event_id=1,
        chain_id=31337,
        attempt=attempt,
        max_attempts=max_attempts,
        idempotency_key="key",
        payload={},
    )


# -- decide ------------------------------------------------------------------------------


def test_a_success_ends_the_job() -> None:
    the_job = job(attempt=3)
    attempt = decide(the_job, None, POLICY, duration_ms=12, response={"status": 200})
    assert attempt == Attempt(the_job, "succeeded", "success", 0.0, 12, None, {"status": 200})


@pytest.mark.parametrize("attempt_number", [1, 2, 4])
def test_a_retryable_failure_requeues_after_the_backoff(attempt_number: int) -> None:
    failure = DeliveryFailed("HTTP 503", retryable=True, response={"status": 503})

    outcomes = [
        decide(job(attempt=attempt_number), failure, POLICY, duration_ms=5) for _ in range(20)
    ]

    ceiling = 2.0 ** (attempt_number - 1)  # backoff_initial 1 s, doubling per failed try
    for outcome in outcomes:
        assert (outcome.next_status, outcome.result_status) == ("queued", "retrying")
        assert ceiling / 2 <= outcome.retry_in <= ceiling
        assert outcome.error == "HTTP 503"
        assert outcome.response == {"status": 503}
        assert outcome.duration_ms == 5


def test_retry_after_is_the_least_wait() -> None:
    for retry_after, low, high in [(30.0, 30.0, 30.0), (1.5, 1.5, 2.0), (0.1, 1.0, 2.0)]:
        failure = DeliveryFailed("HTTP 429", retryable=True, retry_after=retry_after)
        outcome = decide(job(attempt=2), failure, POLICY, duration_ms=1)
        assert outcome.next_status == "queued"
        assert low <= outcome.retry_in <= high


def test_a_retryable_failure_on_the_last_attempt_is_dead() -> None:
    failure = DeliveryFailed("HTTP 503", retryable=True, retry_after=5.0)

    outcome = decide(job(attempt=5, max_attempts=5), failure, POLICY, duration_ms=7)

    assert (outcome.next_status, outcome.result_status) == ("dead", "failed")
    assert outcome.error == "HTTP 503 (gave up after 5 attempts)"
    assert outcome.retry_in == 0.0


def test_the_jobs_own_budget_counts_not_the_policys() -> None:
    failure = DeliveryFailed("timeout", retryable=True)
    assert decide(job(attempt=5, max_attempts=9), failure, POLICY, duration_ms=1).next_status == (
        "queued"
    )
    outcome = decide(job(attempt=1, max_attempts=1), failure, POLICY, duration_ms=1)
    assert (outcome.next_status, outcome.error) == ("dead", "timeout (gave up after 1 attempts)")


def test_a_permanent_failure_is_dead_at_once() -> None:
    failure = DeliveryFailed("HTTP 404", retryable=False, response={"status": 404, "body": ""})

    outcome = decide(job(attempt=1), failure, POLICY, duration_ms=3)

    assert outcome == Attempt(
        job(attempt=1), "dead", "failed", 0.0, 3, "HTTP 404", {"status": 404, "body": ""}
    )


def test_the_failures_response_is_kept_over_the_given_one() -> None:
    given_response = {"status": 500, "from": "caller"}
    with_own = DeliveryFailed("HTTP 500", retryable=False, response={"status": 500})
    without = DeliveryFailed("HTTP 500", retryable=False)

    assert decide(job(), with_own, POLICY, duration_ms=1, response=given_response).response == {
        "status": 500
    }
    assert decide(job(), without, POLICY, duration_ms=1, response=given_response).response == (
        given_response
    )


# -- breaker_feed ------------------------------------------------------------------------


RESULT_OF: dict[NextStatus, ResultStatus] = {
    "succeeded": "success",
    "queued": "retrying",
    "dead": "failed",
}


def finished(trigger_id: str, status: NextStatus, error: str | None = None) -> Attempt:
    return Attempt(job(trigger_id=trigger_id), status, RESULT_OF[status], 0.0, 1, error)


def test_breaker_feed_follows_the_order_of_outcomes() -> None:
    assert breaker_feed(
        [finished("t1", "dead", "e1"), finished("t1", "succeeded"), finished("t1", "dead", "e2")]
    ) == [BreakerFeed("t1", reset=True, failures=1, error="e2")]
    assert breaker_feed(
        [finished("t1", "succeeded"), finished("t1", "dead", "e1"), finished("t1", "dead", "e2")]
    ) == [BreakerFeed("t1", reset=True, failures=2, error="e2")]
    assert breaker_feed([finished("t1", "dead", "e1"), finished("t1", "succeeded")]) == [
        BreakerFeed("t1", reset=True, failures=0, error="")
    ]
    assert breaker_feed([finished("t1", "dead", "e1"), finished("t1", "dead", "e2")]) == [
        BreakerFeed("t1", reset=False, failures=2, error="e2")
    ]


def test_retries_do_not_feed_the_breaker() -> None:
    assert breaker_feed([finished("t1", "queued", "e1"), finished("t1", "queued", "e2")]) == []
    assert breaker_feed(
        [finished("t1", "dead", "e1"), finished("t1", "queued", "e2"), finished("t2", "queued")]
    ) == [BreakerFeed("t1", reset=False, failures=1, error="e1")]


def test_breaker_feed_keeps_triggers_apart() -> None:
    assert breaker_feed(
        [
            finished("t2", "dead", "b1"),
            finished("t1", "succeeded"),
            finished("t2", "dead", "b2"),
            finished("t1", "dead", "a1"),
        ]
    ) == [
        BreakerFeed("t2", reset=False, failures=2, error="b2"),
        BreakerFeed("t1", reset=True, failures=1, error="a1"),
    ]


# -- the circuit breaker (PostgreSQL) ----------------------------------------------------


@pytest.fixture
async def listener(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        await connection.execute("LISTEN trigger_changed")
        yield connection


async def notified(
    listener: psycopg.AsyncConnection,
    conn: psycopg.AsyncConnection,
    channel: str = "trigger_changed",
) -> list[str]:
    """The channel's payloads so far: a closing marker sent now arrives after them."""
    await conn.execute(sql.SQL("NOTIFY {}, 'end'").format(sql.Identifier(channel)))
    payloads: list[str] = []
    async for notify in listener.notifies(timeout=10):
        if notify.payload == "end":
            return payloads
        payloads.append(notify.payload)
    raise AssertionError("the closing notification did not arrive")


async def test_workers_are_woken_by_a_statement_that_queues_jobs_only(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    """NOTIFY action_job for an INSERT that adds jobs, not for one that adds none (a
    processor batch that fires nothing, a recording's retraction and alert inserts), which
    woke every worker for a claim that found nothing (migration 44)."""
    trigger, action, _ = await create_trigger(conn, "rest", REST)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as worker:
        await worker.execute("LISTEN action_job")
        await conn.execute(
            "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id,"
            " idempotency_key, payload) SELECT %s, %s, 1, %s, 'k', '{}' WHERE false",
            [trigger, action, CHAIN_ID],
        )
        assert await notified(worker, conn, "action_job") == []
        await queue_jobs(conn, trigger, action, 3)
        # (PostgreSQL folds the same notice within a transaction)
        assert len(await notified(worker, conn, "action_job")) >= 1


async def breaker_state(conn: psycopg.AsyncConnection, trigger_id: str) -> tuple[Any, ...]:
    cursor = await conn.execute(
        "SELECT consecutive_failures, disabled_at IS NOT NULL, disabled_reason, enabled"
        " FROM triggers WHERE id = %s",
        [trigger_id],
    )
    row = await cursor.fetchone()
    assert row is not None
    return tuple(row)


async def test_the_circuit_breaker_counts_resets_and_trips_once(
    conn: psycopg.AsyncConnection, listener: psycopg.AsyncConnection
) -> None:
    trigger, _, _ = await create_trigger(conn, "rest", REST, failure_threshold=3)
    await create_trigger(conn, "rest", REST, name="bystander")
    assert len(await load_trigger_index(conn)) == 2
    await notified(listener, conn)  # drop the creations' notifications

    assert await feed_circuit_breakers(conn, [BreakerFeed(trigger, False, 1, "HTTP 500")]) == []
    assert await breaker_state(conn, trigger) == (1, False, None, True)
    assert await feed_circuit_breakers(conn, [BreakerFeed(trigger, True, 0, "")]) == []
    assert await breaker_state(conn, trigger) == (0, False, None, True)
    assert await feed_circuit_breakers(conn, [BreakerFeed(trigger, False, 2, "HTTP 500")]) == []
    assert await breaker_state(conn, trigger) == (2, False, None, True)
    assert await notified(listener, conn) == []  # counting is bookkeeping

    assert await feed_circuit_breakers(conn, [BreakerFeed(trigger, False, 1, "HTTP 503")]) == [
        trigger
    ]
    reason = "circuit breaker: 3 consecutive failed deliveries, the last: HTTP 503"
    assert await breaker_state(conn, trigger) == (3, True, reason, True)
    assert await notified(listener, conn) == [trigger]
    assert len(await load_trigger_index(conn)) == 1  # a disabled trigger is not evaluated

    # Already disabled: counted, but not tripped (nor announced) again.
    assert await feed_circuit_breakers(conn, [BreakerFeed(trigger, False, 1, "HTTP 504")]) == []
    assert await breaker_state(conn, trigger) == (4, True, reason, True)
    assert await notified(listener, conn) == []


async def test_a_reset_in_the_same_batch_counts_only_the_failures_after_it(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger, _, _ = await create_trigger(conn, "rest", REST, failure_threshold=3)
    await feed_circuit_breakers(conn, [BreakerFeed(trigger, False, 2, "HTTP 500")])

    assert await feed_circuit_breakers(conn, [BreakerFeed(trigger, True, 2, "HTTP 502")]) == []
    assert await breaker_state(conn, trigger) == (2, False, None, True)


async def test_one_batch_can_trip_several_triggers_and_spare_others(
    conn: psycopg.AsyncConnection, listener: psycopg.AsyncConnection
) -> None:
    first, _, _ = await create_trigger(conn, "rest", REST, failure_threshold=2, name="first")
    second, _, _ = await create_trigger(conn, "rest", REST, failure_threshold=2, name="second")
    spared, _, _ = await create_trigger(conn, "rest", REST, failure_threshold=2, name="spared")
    await notified(listener, conn)  # drop the creations' notifications

    tripped = await feed_circuit_breakers(
        conn,
        [
            BreakerFeed(first, False, 5, "timeout"),
            BreakerFeed(spared, True, 1, "HTTP 500"),
            BreakerFeed(second, True, 2, "it's 100% broken"),
            BreakerFeed("00000000-0000-4000-8000-000000000000", False, 9, "deleted trigger"),
        ],
    )

    assert sorted(tripped) == sorted([first, second])
    assert sorted(await notified(listener, conn)) == sorted([first, second])
    assert (await breaker_state(conn, first))[2] == (
        "circuit breaker: 5 consecutive failed deliveries, the last: timeout"
    )
    assert (await breaker_state(conn, second))[2] == (
        "circuit breaker: 2 consecutive failed deliveries, the last: it's 100% broken"
    )
    assert await breaker_state(conn, spared) == (1, False, None, True)


# -- claiming (PostgreSQL) ---------------------------------------------------------------


async def statuses(conn: psycopg.AsyncConnection) -> dict[int, tuple[Any, ...]]:
    cursor = await conn.execute(
        "SELECT id, status, attempts, locked_by, last_error, finished_at IS NOT NULL"
        " FROM action_jobs ORDER BY id"
    )
    return {row[0]: tuple(row[1:]) for row in await cursor.fetchall()}


async def test_a_claimed_job_carries_what_the_worker_needs(conn: psycopg.AsyncConnection) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", REST, name="hooks")
    [job_id] = await queue_jobs(conn, trigger, action, 1, first_event=7, max_attempts=4)

    [claimed] = await claim_jobs(conn, worker="w1", limit=10, lease_seconds=30)

    assert (claimed.id, claimed.trigger_id, claimed.action_id) == (job_id, trigger, action)
    assert (claimed.trigger_name, claimed.user_id, claimed.action_type) == (
        "hooks",
        USER_ID,
        "rest",
    )
    assert claimed.config == REST
    assert (claimed.event_id, claimed.chain_id, claimed.attempt, claimed.max_attempts) == (
        7,
        31337,
        1,
        4,
    )
    assert claimed.payload["event"]["agent_id"] == "42"
    assert len(claimed.idempotency_key) == 64
    assert claimed.webhook_secret is None
    cursor = await conn.execute(
        "SELECT status, locked_by, locked_until - now() FROM action_jobs WHERE id = %s", [job_id]
    )
    status, locked_by, lease = await cursor.fetchone() or (None, None, None)
    assert (status, locked_by) == ("running", "w1")
    assert 29 <= lease.total_seconds() <= 30
    assert await claim_jobs(conn, worker="w2", limit=10, lease_seconds=30) == []


async def test_a_claim_takes_jobs_within_their_accounts_share(
    conn: psycopg.AsyncConnection,
) -> None:
    busy, busy_action, _ = await create_trigger(conn, "rest", REST)
    backlog = await queue_jobs(conn, busy, busy_action, 10)
    other, other_action, _ = await create_trigger(conn, "rest", REST, user_id=OTHER_USER)
    behind = await queue_jobs(conn, other, other_action, 3, first_event=100)

    # Two of the busy account's deliveries run already: one more is its share, and the
    # other account's jobs come next, although queued after the backlog.
    first = await claim_jobs(conn, worker="w", limit=4, lease_seconds=30, per_account=3,
                             running={USER_ID: 2})  # fmt: skip
    assert [job.id for job in first] == [backlog[0], *behind]
    # With its share in use, an account gets the slots no other account's job wants, in
    # the queue's order.
    [later] = await queue_jobs(conn, other, other_action, 1, first_event=200)
    second = await claim_jobs(conn, worker="w", limit=3, lease_seconds=30, per_account=3,
                              running={USER_ID: 3})  # fmt: skip
    assert [job.id for job in second] == [later, *backlog[1:3]]


async def test_claims_take_priority_then_run_at_and_skip_future_jobs(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", REST)
    late, early = await queue_jobs(conn, trigger, action, 2, first_event=1, priority=2)
    urgent_late, urgent_early, future = await queue_jobs(
        conn, trigger, action, 3, first_event=10, priority=1
    )
    for job_id, run_at in [
        (late, "-1 minute"),
        (early, "-2 minutes"),
        (urgent_late, "-10 seconds"),
        (urgent_early, "-20 seconds"),
        (future, "+1 hour"),
    ]:
        await conn.execute(
            "UPDATE action_jobs SET run_at = now() + %s::interval WHERE id = %s", [run_at, job_id]
        )

    order = []
    while claimed := await claim_jobs(conn, worker="w", limit=1, lease_seconds=30):
        order += [job.id for job in claimed]

    assert order == [urgent_early, urgent_late, early, late]
    assert (await statuses(conn))[future][0] == "queued"


async def test_two_open_claims_never_share_a_job(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", REST)
    job_ids = await queue_jobs(conn, trigger, action, 5)

    async with (
        await psycopg.AsyncConnection.connect(migrated_url) as first,
        await psycopg.AsyncConnection.connect(migrated_url) as second,
    ):
        # Both in open transactions: the first's locks are held while the second claims.
        taken_first = await claim_jobs(first, worker="w1", limit=3, lease_seconds=30)
        # Waiting for the first's locks instead of skipping them would hang: bound it.
        taken_second = await asyncio.wait_for(
            claim_jobs(second, worker="w2", limit=5, lease_seconds=30), 10
        )
        await first.commit()
        await second.commit()

    first_ids = {job.id for job in taken_first}
    second_ids = {job.id for job in taken_second}
    assert len(first_ids) == 3
    assert first_ids.isdisjoint(second_ids)
    assert first_ids | second_ids == set(job_ids)
    assert all(job.attempt == 1 for job in taken_first + taken_second)


async def test_parallel_claimers_take_each_job_exactly_once(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", REST)
    job_ids = await queue_jobs(conn, trigger, action, 60)

    async def claimer(name: str) -> list[int]:
        taken: list[int] = []
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as own:
            while jobs := await claim_jobs(own, worker=name, limit=3, lease_seconds=30):
                taken += [job.id for job in jobs]
        return taken

    results = await asyncio.gather(*(claimer(f"w{n}") for n in range(4)))

    claimed = [job_id for taken in results for job_id in taken]
    assert sorted(claimed) == sorted(job_ids)  # every job, none twice
    cursor = await conn.execute("SELECT DISTINCT status, attempts FROM action_jobs")
    assert await cursor.fetchall() == [("running", 1)]


# -- expired leases (PostgreSQL) ---------------------------------------------------------


async def test_expired_leases_are_requeued_or_dead_lettered(conn: psycopg.AsyncConnection) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", REST)
    [retried] = await queue_jobs(conn, trigger, action, 1, first_event=1, max_attempts=3)
    [last] = await queue_jobs(conn, trigger, action, 1, first_event=2, max_attempts=1)
    [leased] = await queue_jobs(conn, trigger, action, 1, first_event=3, max_attempts=3)
    claimed = await claim_jobs(conn, worker="w1", limit=10, lease_seconds=30)
    assert {job.id for job in claimed} == {retried, last, leased}
    [waiting] = await queue_jobs(conn, trigger, action, 1, first_event=4)
    # w1 stopped: the leases of two jobs end (the third's lease is still running).
    await conn.execute(
        "UPDATE action_jobs SET locked_until = now() - interval '1 second' WHERE id = ANY(%s)",
        [[retried, last]],
    )

    assert await release_expired_leases(conn) == 2

    state = await statuses(conn)
    lost = "worker w1 stopped before finishing attempt 1 (its lease expired)"
    assert state[retried] == ("queued", 1, None, lost, False)
    assert state[last] == ("dead", 1, None, lost, True)
    assert state[leased] == ("running", 1, "w1", None, False)
    assert state[waiting] == ("queued", 0, None, None, False)
    cursor = await conn.execute(
        "SELECT job_id, user_id::text, trigger_id::text, action_id::text, event_id, chain_id,"
        " action_type, status, retry_count, error_message FROM action_results ORDER BY job_id"
    )
    assert await cursor.fetchall() == [
        (retried, USER_ID, trigger, action, 1, 31337, "rest", "retrying", 0, lost),
        (last, USER_ID, trigger, action, 2, 31337, "rest", "failed", 0, lost),
    ]

    # Released once: nothing is released or recorded twice; the requeued job is due again.
    assert await release_expired_leases(conn) == 0
    cursor = await conn.execute("SELECT count(*) FROM action_results")
    assert await cursor.fetchone() == (2,)
    reclaimed = await claim_jobs(conn, worker="w2", limit=10, lease_seconds=30)
    assert sorted((job.id, job.attempt) for job in reclaimed) == sorted(
        [(retried, 2), (waiting, 1)]
    )


async def test_release_respects_its_limit(conn: psycopg.AsyncConnection) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", REST)
    await queue_jobs(conn, trigger, action, 5)
    await claim_jobs(conn, worker="w1", limit=5, lease_seconds=30)
    await conn.execute("UPDATE action_jobs SET locked_until = now() - interval '1 second'")

    assert await release_expired_leases(conn, limit=2) == 2
    assert await release_expired_leases(conn, limit=10) == 3
    assert {row[0] for row in (await statuses(conn)).values()} == {"queued"}


# -- a reorg during a delivery (PostgreSQL) ------------------------------------------------


async def test_a_delivery_under_way_when_its_event_is_reorged_out_is_retracted_or_never_retried(
    conn: psycopg.AsyncConnection,
) -> None:
    """The reorg leaves attempts under way to finish (migration 41): the one that delivered
    gets a retraction (its action asks for them), one that fails is cancelled instead of
    retried, one that fails for good is dead as any, and one whose worker stopped is
    cancelled when its lease ends, with a retraction too: its attempt may have arrived."""
    trigger, action, _ = await create_trigger(conn, "rest", {**REST, "notify_retractions": True})
    await conn.execute(
        "INSERT INTO events (id, chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id)"
        " SELECT n, %s, 'reputation', 'NewFeedback', %s, 1000 + n, format('0x%%064s', n), now(),"
        " format('0x%%064s', n), 0, 0, 42 FROM generate_series(1, 4) n",
        [CHAIN_ID, "0x" + "aa" * 20],
    )
    await conn.execute(
        "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
        " VALUES (%s, 1004, 1004)",
        [CHAIN_ID],
    )
    delivered, retried, refused, stopped = await queue_jobs(conn, trigger, action, 4)
    claimed = {job.id: job for job in await claim_jobs(conn, worker="w1", limit=10,
                                                       lease_seconds=30)}  # fmt: skip

    # A reorg below block 1001 while all four are being delivered.
    await EventStore(CHAIN_ID).roll_back(conn, (1000, None))
    assert set((await statuses(conn)).values()) == {("running", 1, "w1", None, False)}
    outcomes = [
        decide(claimed[delivered], None, POLICY, duration_ms=5),
        decide(claimed[retried], DeliveryFailed("HTTP 503", retryable=True), POLICY,
               duration_ms=5),
        decide(claimed[refused], DeliveryFailed("HTTP 400", retryable=False), POLICY,
               duration_ms=5),
    ]  # fmt: skip
    assert await record_attempts(conn, worker="w1", attempts=outcomes) == 3
    await conn.execute(
        "UPDATE action_jobs SET locked_until = now() - interval '1 second' WHERE id = %s",
        [stopped],
    )
    assert await release_expired_leases(conn) == 1

    state = await statuses(conn)
    lost = "worker w1 stopped before finishing attempt 1 (its lease expired)"
    assert state[delivered] == ("succeeded", 1, None, None, True)
    assert state[retried] == ("cancelled", 1, None, "HTTP 503 (reorged out: not tried again)",
                              True)  # fmt: skip
    assert state[refused] == ("dead", 1, None, "HTTP 400", True)
    assert state[stopped] == ("cancelled", 1, None, f"{lost} (reorged out: not tried again)",
                              True)  # fmt: skip
    cursor = await conn.execute(
        "SELECT event_id, status, payload->'retracted' FROM action_jobs WHERE retraction"
        " ORDER BY event_id"
    )
    assert await cursor.fetchall() == [(1, "queued", True), (4, "queued", True)]
    cursor = await conn.execute("SELECT job_id, status FROM action_results ORDER BY job_id")
    assert await cursor.fetchall() == [(delivered, "success"), (retried, "cancelled"),
                                       (refused, "failed"), (stopped, "cancelled")]  # fmt: skip
    # A retraction is itself never retracted, and a second expiry adds none.
    await conn.execute(
        "UPDATE action_jobs SET status = 'running', attempts = 1, locked_by = 'w2',"
        " reorged_out = true, locked_until = now() - interval '1 second' WHERE retraction"
    )
    assert await release_expired_leases(conn) == 2
    cursor = await conn.execute("SELECT count(*) FROM action_jobs WHERE retraction")
    assert await cursor.fetchone() == (2,)


async def test_a_batch_marking_firings_and_a_breaker_feed_wait_for_each_other_not_deadlock(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    """Both lock the triggers they share in id order (seen in bench.pipeline: the processor's
    mark_fired took them in the order it read them, the worker's breaker in id order)."""
    await create_user(conn)
    # Stored higher id first, so that reading them in storage or array order is not id order.
    high, low = "ffffffff-0000-4000-8000-000000000000", "00000000-0000-4000-8000-000000000000"
    for trigger_id in (high, low):
        await conn.execute(
            "INSERT INTO triggers (id, user_id, name, chain_id, registry)"
            " VALUES (%s, %s, 'shared', %s, 'reputation')",
            [trigger_id, USER_ID, CHAIN_ID],
        )
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as other:
        await other.execute("SET lock_timeout = '10s'")
        async with conn.transaction():
            # The worker's recording holds the lower trigger (its feed locks it first) ...
            await conn.execute("SELECT id FROM triggers WHERE id = %s FOR NO KEY UPDATE", [low])
            # ... while a processor batch marks both firings, the higher one named first.
            marking = asyncio.create_task(other.execute(
                PROCESSOR_QUERIES["mark_fired"],
                {"trigger_ids": [uuid.UUID(high), uuid.UUID(low)],
                 "fired_at": [datetime.now(UTC)] * 2},
            ))  # fmt: skip
            await lock_waited_for(conn, other.info.backend_pid)  # holding nothing
            await conn.execute("SET LOCAL lock_timeout = '5s'")
            # The feed goes on to the higher trigger: it is free, so nothing deadlocks.
            await feed_circuit_breakers(conn, [BreakerFeed(high, False, 1, "HTTP 500"),
                                               BreakerFeed(low, False, 1, "HTTP 500")])  # fmt: skip
        await asyncio.wait_for(marking, 10)
    cursor = await conn.execute(
        "SELECT consecutive_failures, last_fired_at IS NOT NULL FROM triggers ORDER BY id"
    )
    assert await cursor.fetchall() == [(1, True), (1, True)]
