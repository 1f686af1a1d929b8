"""Rows for action-delivery tests: a user, triggers with one action each, queued jobs."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import psycopg

from erc8004_backend.actions.rest import rotate_webhook_secret
from erc8004_backend.encryption import SecretBox

USER_ID = "a11ce000-0000-4000-8000-000000000001"
OTHER_USER = "b0b00000-0000-4000-8000-000000000002"  # a second account
CHAIN_ID = 31337


async def create_user(conn: psycopg.AsyncConnection, user_id: str = USER_ID) -> str:
    await conn.execute(
        "INSERT INTO users (id, username, email, password_hash) VALUES (%s, %s, %s, 'x')"
        " ON CONFLICT DO NOTHING",
        [user_id, f"user-{user_id[:8]}", f"{user_id[:8]}@example.com"],
    )
    return user_id


async def create_trigger(
    conn: psycopg.AsyncConnection,
    action_type: str,
    config: dict[str, Any],
    *,
    box: SecretBox | None = None,
    priority: int = 1,
    failure_threshold: int = 10,
    name: str = "test trigger",
    user_id: str = USER_ID,
) -> tuple[str, str, str | None]:
    """A trigger with one action: (trigger id, action id, webhook secret if a box is given)."""
    await create_user(conn, user_id)
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, failure_threshold)"
        " VALUES (%s, %s, %s, 'reputation', %s) RETURNING id::text",
        [user_id, name, CHAIN_ID, failure_threshold],
    )
    trigger_id = (await cursor.fetchone() or [""])[0]
    cursor = await conn.execute(
        "INSERT INTO trigger_actions (trigger_id, action_type, priority, config)"
        " VALUES (%s, %s, %s, %s) RETURNING id::text",
        [trigger_id, action_type, priority, orjson.dumps(config).decode()],
    )
    action_id = (await cursor.fetchone() or [""])[0]
    secret = await rotate_webhook_secret(conn, trigger_id, box) if box else None
    return trigger_id, action_id, secret


def feedback_event(event_id: int, **fields: Any) -> dict[str, Any]:
    """The fields of a NewFeedback event as the processor freezes them into a job."""
    return {
        "chain_id": CHAIN_ID,
        "registry": "reputation",
        "event_type": "NewFeedback",
        "block_number": 1000 + event_id,
        "block_hash": "0x" + f"{event_id:064x}",
        "transaction_hash": "0x" + f"{event_id + 1:064x}",
        "log_index": 0,
        "timestamp": "2026-11-24T12:00:00+00:00",
        "agent_id": "42",
        "client_address": "0x" + "cc" * 20,
        "feedback_index": "1",
        "value": "45",
        "value_decimals": 0,
        "score": "45",
        "tag1": "refund",
        "tag2": "",
        "endpoint": "",
        "file_uri": None,
        "file_hash": None,
        **fields,
    }


async def queue_jobs(
    conn: psycopg.AsyncConnection,
    trigger_id: str,
    action_id: str,
    count: int,
    *,
    first_event: int = 1,
    priority: int = 1,
    max_attempts: int = 8,
    **fields: Any,
) -> list[int]:
    """`count` queued jobs for consecutive events; returns their ids in event order."""
    rows = []
    for event_id in range(first_event, first_event + count):
        payload = {
            "event_id": event_id,
            "event": feedback_event(event_id, **fields),
            "computed": {"trigger_name": "test trigger", "trigger_id": trigger_id},
        }
        key = hashlib.sha256(f"{event_id}:{trigger_id}:{action_id}".encode()).hexdigest()
        rows.append((trigger_id, action_id, event_id, CHAIN_ID, priority, max_attempts, key,
                     orjson.dumps(payload).decode()))  # fmt: skip
    cursor = conn.cursor()
    await cursor.executemany(
        "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, priority,"
        " max_attempts, idempotency_key, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id",
        rows,
        returning=True,
    )
    ids = []
    while True:
        row = await cursor.fetchone()
        if row is not None:
            ids.append(row[0])
        if not cursor.nextset():
            break
    return ids
