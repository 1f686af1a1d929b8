"""The worker against real targets on loopback: a signed-webhook sink and a server speaking
Telegram's Bot API, with the queue and the audit trail in a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import orjson
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.actions.queue import claim_jobs, dead_jobs, decide, redeliver_jobs
from erc8004_backend.actions.worker import Worker, record_batch
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from erc8004_backend.retry import RetryPolicy
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import TelegramServer, WebhookSink, unescape_markdown_v2
from tests.support.jobs import CHAIN_ID, OTHER_USER, create_trigger, queue_jobs
from tests.support.waiting import eventually, lock_waited_for

BOT_TOKEN = "123456:TEST-token"


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": url,
        "allow_private_urls": True,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "worker_lease_seconds": 30,
        "telegram_bot_token": BOT_TOKEN,
        # The stand-in is not Telegram: its limits are tested on their own (test_noise.py).
        "telegram_rate_limits": False,
        **overrides,
    }
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, **options: Any) -> AsyncIterator[Worker]:
    assert settings.database_url
    async with AsyncConnectionPool(
        settings.database_url, min_size=2, max_size=4, open=False, kwargs={"autocommit": True}
    ) as pool:
        worker = Worker(pool, settings, **options)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        try:
            yield worker
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


async def job_status_counts(conn: psycopg.AsyncConnection) -> dict[str, int]:
    cursor = await conn.execute("SELECT status, count(*) FROM action_jobs GROUP BY status")
    return {status: count for status, count in await cursor.fetchall()}


async def results(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    cursor = await conn.execute(
        "SELECT job_id, status, retry_count, duration_ms, error_message, response_data,"
        " action_type, user_id::text, trigger_id::text FROM action_results ORDER BY id"
    )
    names = [column.name for column in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


def rest_config(url: str, **extra: Any) -> dict[str, Any]:
    return {"method": "POST", "url": url, "timeout_ms": 2000,
            "headers": {"Authorization": "Bearer EXAMPLE"},
            "body_template": {"agent_id": "{{agent_id}}", "score": "{{score}}",
                              "client": "{{client_address}}", "tag": "{{tag1}}",
                              "nested": ["{{trigger_name}}", 7, None]},
            **extra}  # fmt: skip


@contextlib.asynccontextmanager
async def webhook_target(
    conn: psycopg.AsyncConnection, box: SecretBox, *, failure_threshold: int = 10, **config: Any
) -> AsyncIterator[tuple[WebhookSink, str, str, str]]:
    """A signature-checking sink on loopback and a trigger whose webhook goes to it:
    (sink, its URL, trigger id, action id)."""
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        trigger, action, secret = await create_trigger(
            conn, "rest", rest_config(url, **config), box=box,
            failure_threshold=failure_threshold,
        )  # fmt: skip
        assert secret is not None
        sink.secret = secret
        yield sink, url, trigger, action


# -- webhooks ----------------------------------------------------------------------------


async def test_messages_link_to_the_event_on_the_explorer_of_its_chain(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """`{{transaction_url}}` and `{{block_url}}` as the worker renders them, with the
    explorers of the chains it was given (`erc8004 worker` and `run`: their chains files')."""
    links = {"tx": "{{transaction_url}}", "block": "{{block_url}}"}
    async with webhook_target(conn, box, body_template=links) as (sink, _, trigger, action):
        await queue_jobs(conn, trigger, action, 1)
        explorers = {CHAIN_ID: "https://explorer.example", 1: "https://etherscan.io"}
        async with running_worker(settings_for(migrated_url), explorers=explorers):
            await eventually(lambda: len(sink.processed) == 1)
    [request] = sink.received
    assert request.json() == {"tx": "https://explorer.example/tx/0x" + f"{2:064x}",
                              "block": "https://explorer.example/block/1001"}  # fmt: skip


async def test_a_webhook_is_signed_keyed_and_recorded(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    awkward = 'quote " backslash \\ newline \n brace {{x}} unicode ✓'
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        trigger, action, secret = await create_trigger(conn, "rest", rest_config(url + "/hook"),
                                                       box=box)  # fmt: skip
        assert secret
        assert secret.startswith("whsec_")
        sink.secret = secret
        [job] = await queue_jobs(conn, trigger, action, 1, tag1=awkward)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(sink.processed) == 1)
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}), timeout=5)
    [request] = sink.received
    assert request.signature_ok
    assert request.method == "POST"
    assert request.path == "/hook"
    assert request.headers["authorization"] == "Bearer EXAMPLE"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"agent_id": "42", "score": "45", "client": "0x" + "cc" * 20,
                              "tag": awkward, "nested": ["test trigger", 7, None]}  # fmt: skip
    cursor = await conn.execute("SELECT idempotency_key FROM action_jobs WHERE id = %s", [job])
    assert request.key == (await cursor.fetchone() or [None])[0]
    [result] = await results(conn)
    assert result["status"] == "success"
    assert result["job_id"] == job
    assert result["retry_count"] == 0
    assert result["error_message"] is None
    assert result["duration_ms"] is not None
    assert result["duration_ms"] >= 0
    sent = result["response_data"].pop("request")
    assert result["response_data"] == {"status": 200, "body": '{"status": 200}'}
    # The request inspector: what was sent, the configured header's value masked.
    assert (sent["method"], sent["url"]) == ("POST", url + "/hook")
    assert sent["headers"]["Authorization"] == "********MPLE"  # of "Bearer EXAMPLE"
    assert sent["headers"]["Idempotency-Key"] == request.key
    assert sent["headers"]["X-ERC8004-Signature"] == request.headers["x-erc8004-signature"]
    assert orjson.loads(sent["body"]) == request.json()
    assert result["trigger_id"] == trigger
    assert result["action_type"] == "rest"


async def _equals(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_a_failing_sink_gets_every_job_once_per_key_after_it_recovers(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box) as (sink, url, trigger, action):
        sink.fail_next(25, 500)
        jobs = await queue_jobs(conn, trigger, action, 20)
        async with running_worker(settings_for(migrated_url), concurrency=8):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 20}))
    assert len(sink.processed) == 20
    assert not sink.repeats
    assert all(request.signature_ok for request in sink.received)
    rows = await results(conn)
    assert len(rows) == len(sink.received) == 45  # every attempt has its row
    assert sum(row["status"] == "retrying" for row in rows) == 25
    assert {row["job_id"] for row in rows if row["status"] == "success"} == set(jobs)
    assert all(row["error_message"] == f"{url} answered HTTP 500"
               for row in rows if row["status"] == "retrying")  # fmt: skip
    # A job's rows count its earlier attempts.
    by_job: dict[int, list[int]] = {}
    for row in rows:
        by_job.setdefault(row["job_id"], []).append(row["retry_count"])
    assert all(counts == list(range(len(counts))) for counts in by_job.values())


async def test_an_actions_own_backoff_replaces_the_workers(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    # The worker's backoff here is 0.05-0.2 s; the action's, 0.6 s (0.3-0.6 with jitter).
    async with webhook_target(conn, box, retry_initial_seconds=0.6,
                              retry_max_seconds=0.6) as (sink, _, trigger, action):  # fmt: skip
        sink.fail_next(2, 503)
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(sink.processed) == 1, timeout=10)
    times = [request.at for request in sink.received]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert len(gaps) == 2
    assert all(0.3 - 0.05 <= gap <= 0.6 + 0.5 for gap in gaps), gaps


async def test_a_400_is_dead_at_once_and_can_be_requeued(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box) as (sink, url, trigger, action):
        sink.fail_next(1, 400)
        [job] = await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
            [dead] = await dead_jobs(conn)
            assert dead.id == job
            assert dead.attempts == 1
            assert dead.last_error == f"{url} answered HTTP 400"
            assert await redeliver_jobs(conn, job_ids=[job, 999]) == [job]
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
    assert [row["status"] for row in await results(conn)] == ["failed", "success"]
    assert len(sink.processed) == 1


@pytest.mark.slow
async def test_a_timeout_is_retried(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box, timeout_ms=300) as (sink, _url, trigger, action):
        sink.stall_next(1, 2.0)
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
    rows = await results(conn)
    assert [(row["status"], row["error_message"]) for row in rows] == [
        ("retrying", "no answer within 300 ms"),
        ("success", None),
    ]
    assert 300 <= rows[0]["duration_ms"] < 1500


@pytest.mark.slow
async def test_retry_after_is_honoured(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box) as (sink, _url, trigger, action):
        sink.fail_next(1, 429, {"Retry-After": "1"})
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(sink.processed) == 1)
    first, second = sink.received
    assert second.at - first.at >= 0.95  # the backoff alone would be 0.05 s


@pytest.mark.slow
async def test_transient_failures_end_in_the_dead_letters_after_max_attempts(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box) as (sink, url, trigger, action):
        sink.fail_next(100, 503)
        await queue_jobs(conn, trigger, action, 1, max_attempts=3)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["retrying", "retrying", "failed"]
    assert rows[-1]["error_message"] == f"{url} answered HTTP 503 (gave up after 3 attempts)"
    assert len(sink.received) == 3


async def test_consecutive_dead_jobs_trip_the_circuit_breaker(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box, failure_threshold=3) as (sink, url, trigger, action):
        sink.fail_next(3, 404)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as other:
            await other.execute("LISTEN trigger_changed")
            await queue_jobs(conn, trigger, action, 3)
            async with running_worker(settings_for(migrated_url), concurrency=1):
                await eventually(lambda: _equals(job_status_counts(conn), {"dead": 3}))
            notices = [n.payload async for n in other.notifies(timeout=1, stop_after=1)]
    cursor = await conn.execute(
        "SELECT consecutive_failures, disabled_at IS NOT NULL, disabled_reason FROM triggers"
    )
    failures, disabled, reason = await cursor.fetchone() or (None, None, None)
    assert failures == 3
    assert disabled
    assert (
        reason
        == f"circuit breaker: 3 consecutive failed deliveries, the last: {url} answered HTTP 404"
    )
    assert notices == [trigger]  # trigger engines drop it without waiting for a refresh


async def test_higher_priority_is_delivered_first(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box) as (sink, _url, trigger, action):
        await queue_jobs(conn, trigger, action, 5, priority=2)
        await queue_jobs(conn, trigger, action, 5, first_event=100, priority=1)
        async with running_worker(settings_for(migrated_url), concurrency=1):
            await eventually(lambda: len(sink.processed) == 10)
    events = [_event_of(request.key, trigger, action) for request in sink.received]
    assert events == [*range(100, 105), *range(1, 6)]


async def test_a_job_at_a_time_is_claimed_once_not_again_after_each_delivery(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Jobs queued one by one, as the trigger engine queues a block's: each wakes the worker
    (NOTIFY), which claims it and waits. Nothing else makes it claim again, to find nothing:
    not a claim that took every due job, not a delivery that frees a slot of a worker far
    from full, not the recording of the outcome (whose INSERTs into action_jobs queue none:
    migration 44). It was four claims a job."""
    claims: list[int] = []

    async def counted_claim(*args: Any, **kwargs: Any) -> Any:
        claimed = await claim_jobs(*args, **kwargs)
        claims.append(len(claimed))
        return claimed

    monkeypatch.setattr("erc8004_backend.actions.worker.claim_jobs", counted_claim)
    async with (
        webhook_target(conn, box) as (sink, _url, trigger, action),
        running_worker(settings_for(migrated_url), concurrency=8),
    ):
        await asyncio.sleep(0.3)  # listening
        claims.clear()
        for n in range(1, 21):
            await queue_jobs(conn, trigger, action, 1, first_event=n)
            await eventually(functools.partial(_delivered, sink, n))
            await asyncio.sleep(0.02)
    assert sum(claims) == 20
    assert len(claims) <= 24, claims  # one a job, and a few at timeouts


def _delivered(sink: WebhookSink, count: int) -> bool:
    return len(sink.processed) == count


def _event_of(key: str, trigger: str, action: str) -> int:
    for event_id in [*range(1, 6), *range(100, 105)]:
        if hashlib.sha256(f"{event_id}:{trigger}:{action}".encode()).hexdigest() == key:
            return int(event_id)
    raise AssertionError(key)


# -- outbound safety ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.0.0.1", "10.0.0.1 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a cloud metadata address"),
        ("localhost", "127.0.0.1 is a loopback address"),
    ],
)
async def test_private_targets_are_refused_by_default(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox, host: str, problem: str
) -> None:
    trigger, action, _ = await create_trigger(conn, "rest", rest_config(f"http://{host}:9/x"),
                                              box=box)  # fmt: skip
    await queue_jobs(conn, trigger, action, 1)
    async with running_worker(settings_for(migrated_url, allow_private_urls=False)):
        await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    [row] = await results(conn)
    assert row["status"] == "failed"
    assert row["error_message"].startswith(f"refused to send to http://{host}:9: {problem}")


async def test_private_targets_are_allowed_when_configured(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        port = url.rsplit(":", 1)[1]
        trigger, action, secret = await create_trigger(
            conn, "rest", rest_config(f"http://localhost:{port}/in"), box=box
        )
        sink.secret = secret or ""
        await queue_jobs(conn, trigger, action, 1)
        settings = settings_for(migrated_url, allow_private_urls=False,
                                allowed_networks="127.0.0.0/8, ::1/128")  # fmt: skip
        async with running_worker(settings):
            await eventually(lambda: len(sink.processed) == 1)


async def test_a_redirect_to_a_private_address_is_refused(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async def redirect(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 307,
                        "headers": [(b"location", b"http://169.254.169.254/latest/meta-data")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})

    async with serve_asgi(redirect) as url:
        trigger, action, _ = await create_trigger(conn, "rest", rest_config(url), box=box)
        await queue_jobs(conn, trigger, action, 1)
        # Only the first hop's address is allowed.
        settings = settings_for(migrated_url, allow_private_urls=False,
                                allowed_networks="127.0.0.1/32")  # fmt: skip
        async with running_worker(settings):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    [row] = await results(conn)
    # Another origin: not followed at all (the address guard judges each hop of the session's
    # requests as well: tests/test_outbound.py).
    assert row["error_message"] == (
        f"{url} redirected to http://169.254.169.254: a webhook is not sent on to another"
        " origin (give its final URL)"
    )


async def test_a_malformed_answer_is_reported_without_the_url(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """aiohttp's error for an answer that is not HTTP carries the whole request URL, whose
    path and query often hold the webhook's credentials: the stored error names the host."""

    async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HELLO WORLD\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer_garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        url = f"http://127.0.0.1:{port}/services/T0/B0/SECRETPATH?token=SECRETQUERY"
        trigger, action, _ = await create_trigger(conn, "rest", rest_config(url), box=box)
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: _any_result(conn))
    [row, *_] = await results(conn)
    assert row["error_message"].startswith(f"cannot reach http://127.0.0.1:{port}: ")
    assert "SECRET" not in row["error_message"]
    cursor = await conn.execute("SELECT last_error FROM action_jobs")
    assert "SECRET" not in str(await cursor.fetchall())


async def test_a_redirect_to_another_origin_is_not_followed(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """A webhook's own headers (an API key) and its body go to its URL, not to wherever a
    redirect there points: aiohttp would carry them to another origin (it strips only
    Authorization and Cookie). A redirect within the origin is followed."""
    async with serve_asgi(sink := WebhookSink(secret="")) as elsewhere:

        async def redirect(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                to = "/moved" if scope["path"] == "/same" else f"{elsewhere}/stolen"
                if scope["path"] == "/moved":
                    await send({"type": "http.response.start", "status": 200, "headers": []})
                else:
                    await send({"type": "http.response.start", "status": 307,
                                "headers": [(b"location", to.encode())]})  # fmt: skip
                await send({"type": "http.response.body", "body": b""})

        async with serve_asgi(redirect) as url:
            config = rest_config(url + "/away", headers={"X-Api-Key": "SECRETKEY"})
            trigger, action, _ = await create_trigger(conn, "rest", config, box=box)
            same, same_action, _ = await create_trigger(conn, "rest", rest_config(url + "/same"),
                                                        box=box)  # fmt: skip
            await queue_jobs(conn, trigger, action, 1)
            await queue_jobs(conn, same, same_action, 1)
            async with running_worker(settings_for(migrated_url)):
                await eventually(
                    lambda: _equals(job_status_counts(conn), {"dead": 1, "succeeded": 1})
                )
    assert sink.received == []
    [dead] = await dead_jobs(conn)
    assert dead.last_error == (
        f"{url} redirected to {elsewhere}: a webhook is not sent on to another origin"
        " (give its final URL)"
    )


async def test_an_account_whose_backlog_hangs_leaves_the_other_slots_to_other_accounts(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """One account's 40 jobs, queued first, all hang at their endpoint. It has its share of
    the worker's 8 slots (6), and another account's jobs queued behind its backlog go out at
    once, not after the hanging ones time out (2 s). Alone, it has every slot."""
    async with (
        serve_asgi(hanging := WebhookSink(secret="")) as slow,
        serve_asgi(sink := WebhookSink(secret="")) as fast,
    ):
        hanging.stall_next(1000, 5.0)
        busy, busy_action, _ = await create_trigger(conn, "rest", rest_config(slow), box=box)
        await queue_jobs(conn, busy, busy_action, 40)
        other, other_action, secret = await create_trigger(
            conn, "rest", rest_config(fast), box=box, user_id=OTHER_USER
        )
        sink.secret = secret or ""
        await queue_jobs(conn, other, other_action, 2, first_event=100)
        async with running_worker(settings_for(migrated_url), concurrency=8) as worker:
            assert worker.per_account == 6
            started = time.monotonic()
            await eventually(lambda: len(sink.processed) == 2, timeout=10)
            waited = time.monotonic() - started
            await eventually(lambda: len(hanging.received) == 8, timeout=1.5)
    assert waited < 1.0
    # Its share (6) and the other account's two first; the two slots they left after.
    assert max(r.at for r in sink.received) <= min(r.at for r in hanging.received[6:])


async def _any_result(conn: psycopg.AsyncConnection) -> bool:
    return bool(await results(conn))


# -- Telegram ----------------------------------------------------------------------------


async def test_telegram_messages_are_escaped_for_their_parse_mode(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    template = ("Agent #{{agent_id}} received a low score: {{score}}\nFrom: {{client_address}}\n"
                "Tags: {{tag1}}, {{tag2}}\nBlock: {{block_number}}")  # fmt: skip
    async with serve_asgi(telegram := TelegramServer(token=BOT_TOKEN)) as url:
        trigger, action, _ = await create_trigger(conn, "telegram", {
            "chat_id": 123456789, "parse_mode": "MarkdownV2", "message_template": template})  # fmt: skip
        await queue_jobs(conn, trigger, action, 1, tag1="re_fund*[1](x)!", tag2="a.b-c")
        async with running_worker(settings_for(migrated_url, telegram_api_url=url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
    [message] = telegram.messages
    assert message["chat_id"] == "123456789"
    assert message["parse_mode"] == "MarkdownV2"
    assert unescape_markdown_v2(message["text"]) == (
        f"Agent #42 received a low score: 45\nFrom: 0x{'cc' * 20}\n"
        "Tags: re_fund*[1](x)!, a.b-c\nBlock: 1001"
    )
    [row] = await results(conn)
    sent = row["response_data"].pop("request")
    assert row["response_data"] == {"status": 200, "message_id": 1}
    assert sent["url"] == f"{url}/bot…/sendMessage"  # the token is never shown
    assert BOT_TOKEN not in str(sent)


@pytest.mark.slow
async def test_telegram_429_retry_after_is_honoured(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_asgi(telegram := TelegramServer(token=BOT_TOKEN)) as url:
        trigger, action, _ = await create_trigger(
            conn, "telegram", {"chat_id": "42", "message_template": "score {{score}}"}
        )
        telegram.rate_limit_next(1, retry_after=1)
        await queue_jobs(conn, trigger, action, 1)
        started = time.monotonic()
        async with running_worker(settings_for(migrated_url, telegram_api_url=url)):
            await eventually(lambda: len(telegram.messages) == 1)
            elapsed = time.monotonic() - started
    assert elapsed >= 1.0
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["retrying", "success"]
    assert (
        rows[0]["error_message"] == "Telegram refused the message: Too Many Requests: retry after 1"
    )
    assert telegram.messages[0]["text"] == "score 45"


async def test_telegram_permanent_errors_are_dead_and_never_show_the_token(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_asgi(TelegramServer(token="other:token")) as url:
        trigger, action, _ = await create_trigger(
            conn, "telegram", {"chat_id": "42", "message_template": "x"}
        )
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url, telegram_api_url=url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    [row] = await results(conn)
    assert (
        row["error_message"]
        == "Telegram refused the message: the bot token was refused (Unauthorized)"
    )
    assert BOT_TOKEN not in json.dumps(row, default=str)


async def test_an_invalid_action_config_is_dead_with_the_reason(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    trigger, action, _ = await create_trigger(conn, "telegram", {"message_template": "x"})
    await queue_jobs(conn, trigger, action, 1)
    async with running_worker(settings_for(migrated_url)):
        await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    [row] = await results(conn)
    assert row["error_message"] == "telegram action: chat_id: is required"


# -- leases and shutdown -----------------------------------------------------------------


@pytest.mark.slow
async def test_jobs_of_a_dead_worker_are_delivered_after_their_lease(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box) as (sink, _url, trigger, action):
        await queue_jobs(conn, trigger, action, 3)
        claimed = await claim_jobs(conn, worker="ghost", limit=10, lease_seconds=2)
        assert len(claimed) == 3
        started = time.monotonic()
        async with running_worker(settings_for(migrated_url, worker_lease_seconds=2)):
            await eventually(lambda: len(sink.processed) == 3)
            assert time.monotonic() - started >= 1.5
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 3}))
    rows = await results(conn)
    assert sorted(row["status"] for row in rows) == ["retrying"] * 3 + ["success"] * 3
    assert {row["error_message"] for row in rows if row["status"] == "retrying"} == {
        "worker ghost stopped before finishing attempt 1 (its lease expired)"
    }


async def test_a_worker_with_nothing_in_flight_stops_at_once(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    """The recorder is woken by the stop, not left to its next look at the outcomes (half a
    second after the last one was written)."""
    async with webhook_target(conn, box) as (_, _, trigger, action):
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(settings_for(migrated_url)) as worker:
            await eventually(lambda: worker.delivered == 1)
            stopping = time.perf_counter()
        assert time.perf_counter() - stopping < 0.3


@pytest.mark.slow
async def test_stopping_finishes_deliveries_in_flight_and_requeues_the_rest(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box, timeout_ms=10_000) as (sink, _url, trigger, action):
        sink.stall_next(2, 0.3)  # finish within the grace
        sink.stall_next(2, 5.0)  # do not
        await queue_jobs(conn, trigger, action, 4)
        async with running_worker(settings_for(migrated_url), concurrency=4, shutdown_grace=1.0):
            await eventually(lambda: len(sink.received) == 4)
        counts = await job_status_counts(conn)
    assert counts == {"succeeded": 2, "queued": 2}
    cursor = await conn.execute("SELECT locked_by FROM action_jobs WHERE status = 'queued'")
    assert [row[0] for row in await cursor.fetchall()] == [None, None]
    interrupted = [row for row in await results(conn) if row["status"] == "retrying"]
    assert [row["error_message"] for row in interrupted] == [
        "interrupted: the worker was stopping"
    ] * 2


async def test_a_recording_that_loses_a_deadlock_is_written_again(migrated_url: str) -> None:
    """A real deadlock: another transaction holds the job's trigger and then wants the job
    row the recording has just updated. PostgreSQL rolls the recording back (its own check
    comes first); it is written again once the other commits: once, whole."""
    async with (
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as other,
        AsyncConnectionPool(migrated_url, min_size=1, max_size=1, open=False,
                            kwargs={"autocommit": True,
                                    "options": "-c deadlock_timeout=100ms"}) as pool,
    ):  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "rest", {"url": "https://example.com"})
        [job_id] = await queue_jobs(conn, trigger, action, 1)
        [job] = await claim_jobs(conn, worker="w1", limit=1, lease_seconds=30)
        batch = [decide(job, None, RetryPolicy(), duration_ms=3)]
        await other.execute("SET deadlock_timeout = '10s'")  # the recording's check first
        async with other.transaction():
            await other.execute("SELECT FROM triggers WHERE id = %s FOR NO KEY UPDATE", [trigger])
            recording = asyncio.create_task(record_batch(pool, "w1", batch))
            await lock_waited_for(conn)  # the recording, for the trigger
            # This waits for the job row; the recording's deadlock check ends its transaction.
            await other.execute("UPDATE action_jobs SET priority = priority WHERE id = %s",
                                [job_id])  # fmt: skip
        assert await asyncio.wait_for(recording, 10) == ([], [])
        cursor = await conn.execute("SELECT status FROM action_jobs WHERE id = %s", [job_id])
        assert await cursor.fetchone() == ("succeeded",)
        cursor = await conn.execute("SELECT job_id, status FROM action_results")
        assert await cursor.fetchall() == [(job_id, "success")]
