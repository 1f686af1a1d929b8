"""The owner's alert when a trigger's circuit breaker opens: exactly one, to the owner's
account alert action (and no one else's), queued in the transaction that opened the
breaker; none when the owner named no alert action."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import psycopg
import pytest

from erc8004_backend.actions.alerts import alert_config, queue_breaker_alerts
from erc8004_backend.actions.configs import ActionConfigError
from erc8004_backend.actions.queue import BreakerFeed, feed_circuit_breakers
from erc8004_backend.encryption import SecretBox
from tests.actions.test_worker import BOT_TOKEN, running_worker, settings_for, webhook_target
from tests.support.asgi import serve_asgi
from tests.support.chat_webhooks import SlackWebhook
from tests.support.delivery_targets import TelegramServer, unescape_markdown_v2
from tests.support.jobs import USER_ID, create_trigger, create_user, queue_jobs
from tests.support.waiting import eventually

BOB_ID = "b0b00000-0000-4000-8000-000000000002"


async def set_alert(
    conn: psycopg.AsyncConnection, user_id: str, action_type: str, config: dict[str, Any]
) -> str:
    await create_user(conn, user_id)
    cursor = await conn.execute(
        "INSERT INTO account_alert_actions (user_id, action_type, config) VALUES (%s, %s, %s)"
        " RETURNING id::text",
        [user_id, action_type, orjson.dumps(alert_config(action_type, config)).decode()],
    )
    return (await cursor.fetchone() or [""])[0]


async def _alert_jobs(conn: psycopg.AsyncConnection) -> list[tuple[str, str]]:
    cursor = await conn.execute(
        "SELECT alert_action_id::text, status FROM action_jobs WHERE alert_action_id IS NOT NULL"
    )
    return [tuple(row) for row in await cursor.fetchall()]


async def test_an_opened_breaker_sends_its_owner_exactly_one_alert(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    alices, bobs = SlackWebhook(), SlackWebhook()
    async with serve_asgi(alices) as alice_url, serve_asgi(bobs) as bob_url:
        await set_alert(conn, USER_ID, "slack", {"webhook_url": alice_url})
        await set_alert(conn, BOB_ID, "slack", {"webhook_url": bob_url})
        async with webhook_target(conn, box, failure_threshold=3) as (sink, _, trigger, action):
            sink.fail_next(100, 400)  # every delivery dead at once
            await queue_jobs(conn, trigger, action, 3)
            async with running_worker(settings_for(migrated_url)):
                await eventually(lambda: alices.messages, timeout=20, what="the alert")
                # More failures, on the open breaker (queued jobs are still delivered).
                await queue_jobs(conn, trigger, action, 3, first_event=4)
                await eventually(lambda: _dead(conn, 6), timeout=20, what="6 dead jobs")
                await asyncio.sleep(0.5)
    (message,) = alices.messages
    assert not bobs.messages
    cursor = await conn.execute(
        "SELECT disabled_reason, disabled_at IS NOT NULL FROM triggers WHERE id = %s", [trigger]
    )
    reason, disabled = await cursor.fetchone() or (None, None)
    assert disabled
    assert reason.startswith("circuit breaker: 3 consecutive failed deliveries, the last:")
    text = message["text"]
    assert text.startswith(f"Trigger test trigger, id {trigger}, is disabled: its circuit breaker")
    assert reason.replace("&", "&amp;") in text
    assert f"POST /triggers/{trigger}/circuit-breaker/reset" in text
    assert len(await _alert_jobs(conn)) == 1
    # The alert is not one of the trigger's deliveries: its failures count stays theirs.
    cursor = await conn.execute("SELECT consecutive_failures FROM triggers WHERE id = %s",
                                [trigger])  # fmt: skip
    assert await cursor.fetchone() == (6,)


async def _dead(conn: psycopg.AsyncConnection, count: int) -> bool:
    cursor = await conn.execute(
        "SELECT count(*) FROM action_jobs WHERE status = 'dead' AND action_id IS NOT NULL"
    )
    return await cursor.fetchone() == (count,)


async def test_no_alert_action_queues_nothing(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with webhook_target(conn, box, failure_threshold=2) as (sink, _, trigger, action):
        sink.fail_next(100, 400)
        await queue_jobs(conn, trigger, action, 3)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: _dead(conn, 3), timeout=20, what="3 dead jobs")
    cursor = await conn.execute("SELECT disabled_at IS NOT NULL FROM triggers")
    assert await cursor.fetchone() == (True,)
    assert await _alert_jobs(conn) == []


async def test_the_alert_is_queued_with_the_opening_or_not_at_all(
    conn: psycopg.AsyncConnection,
) -> None:
    """In the opening's transaction: rolled back, neither happened; committed, one alert;
    failures after that, on the open breaker, queue no other."""
    trigger, _, _ = await create_trigger(conn, "slack", {"webhook_url": "https://x.example",
                                                         "text_template": "x"},
                                         failure_threshold=2)  # fmt: skip
    alert = await set_alert(conn, USER_ID, "email", {"to": ["owner@example.com"]})
    feeds = [BreakerFeed(trigger, reset=False, failures=2, error="HTTP 500")]

    async def open_breaker(commit: bool) -> list[int]:
        async with conn.transaction(force_rollback=not commit):
            return await queue_breaker_alerts(conn, await feed_circuit_breakers(conn, feeds))

    assert len(await open_breaker(commit=False)) == 1
    assert await _alert_jobs(conn) == []
    cursor = await conn.execute("SELECT disabled_at FROM triggers")
    assert await cursor.fetchone() == (None,)
    assert len(await open_breaker(commit=True)) == 1
    assert await open_breaker(commit=True) == []  # open already: no second alert
    assert await _alert_jobs(conn) == [(alert, "queued")]
    cursor = await conn.execute("SELECT payload FROM action_jobs WHERE alert_action_id IS NOT NULL")
    payload: dict[str, Any] = (await cursor.fetchone() or [{}])[0]
    assert payload["alert"] == "circuit_breaker"
    assert payload["computed"]["disabled_reason"] == (
        "circuit breaker: 2 consecutive failed deliveries, the last: HTTP 500"
    )


def test_alert_configs_are_checked_by_the_channels_and_know_their_fields() -> None:
    assert alert_config("email", {"to": ["a@example.com"]})["subject_template"].startswith(
        "Trigger {{trigger_name}}"
    )
    with pytest.raises(ActionConfigError, match=r"mcp actions cannot send alerts"):
        alert_config("mcp", {"tool_name": "x"})
    with pytest.raises(ActionConfigError, match=r"email action: to: is required"):
        alert_config("email", {})
    with pytest.raises(ActionConfigError, match=r"unknown alert field\(s\) \{\{agent_id\}\}"):
        alert_config("slack", {"webhook_url": "https://h.example", "text_template": "{{agent_id}}"})
    with pytest.raises(ActionConfigError, match=r"digest: is not a setting of alerts"):
        alert_config("slack", {"webhook_url": "https://h.example", "digest": {"window_seconds": 9}})


async def test_the_default_alert_text_is_valid_markdown_v2_for_telegram(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    telegram = TelegramServer(token=BOT_TOKEN)
    async with serve_asgi(telegram) as url:
        await set_alert(conn, USER_ID, "telegram", {"chat_id": "1001",
                                                    "parse_mode": "MarkdownV2"})  # fmt: skip
        async with webhook_target(conn, box, failure_threshold=1) as (sink, _, trigger, action):
            sink.fail_next(100, 400)
            await queue_jobs(conn, trigger, action, 1)
            async with running_worker(settings_for(migrated_url, telegram_api_url=url)):
                await eventually(lambda: telegram.messages, timeout=20, what="the alert")
    (message,) = telegram.messages
    text = unescape_markdown_v2(message["text"])
    assert text.startswith(f"Trigger test trigger, id {trigger}, is disabled:")
    assert f"POST /triggers/{trigger}/circuit-breaker/reset" in text
