"""/me/alert-action: the action that tells a user when one of their triggers' circuit
breakers opens. Checked like a trigger's action, its credentials encrypted and shown masked
(each user's own: tests/api/test_isolation.py); and the alert it sends, end to end through
the worker."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from erc8004_backend.actions.rest import masked
from tests.actions.test_worker import running_worker, settings_for
from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import SIMPLE
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import queue_jobs
from tests.support.waiting import eventually

TOKEN = "alert-credential-0123456789abcdef"


def rest_alert(url: str) -> dict[str, Any]:
    return {"action_type": "rest", "config": {"url": url, "headers": {"X-Api-Key": TOKEN}}}


def stored(url: str) -> str:
    with psycopg.connect(url) as conn:
        return str(conn.execute("SELECT config FROM account_alert_actions").fetchall())


async def test_set_read_masked_keep_and_clear(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    assert (await api.get("/me/alert-action", headers=alice.headers)).status_code == 404
    put = await api.put("/me/alert-action", json=rest_alert("https://hooks.example/alert"),
                        headers=alice.headers)  # fmt: skip
    assert put.status_code == 200, put.text
    shown = put.json()
    assert shown["action_type"] == "rest"
    assert shown["config"]["headers"] == {"X-Api-Key": masked(TOKEN)}
    assert TOKEN not in stored(migrated_url)
    read = await api.get("/me/alert-action", headers=alice.headers)
    assert read.json() == shown
    # The mask sent back keeps the stored value (and the same alert action).
    again = await api.put("/me/alert-action", json={"action_type": "rest",
                                                    "config": shown["config"]},
                          headers=alice.headers)  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["id"] == shown["id"]
    assert again.json()["config"]["headers"] == shown["config"]["headers"]
    # An email alert with the default texts.
    email = await api.put("/me/alert-action",
                          json={"action_type": "email", "config": {"to": ["me@example.com"]}},
                          headers=alice.headers)  # fmt: skip
    assert email.status_code == 200, email.text
    assert "{{disabled_reason}}" in email.json()["config"]["text_template"]
    assert (await api.delete("/me/alert-action", headers=alice.headers)).status_code == 204
    assert (await api.get("/me/alert-action", headers=alice.headers)).status_code == 404
    assert (await api.delete("/me/alert-action", headers=alice.headers)).status_code == 404


async def test_bad_alert_actions_are_refused_naming_the_problem(
    api: ApiClient, alice: Account
) -> None:
    cases = {
        "mcp": ({"action_type": "mcp", "config": {"tool_name": "x"}},
                "mcp actions cannot send alerts"),
        "no recipients": ({"action_type": "email", "config": {}}, "email action: to: is required"),
        "event field": ({"action_type": "slack", "config": {
            "webhook_url": "https://hooks.slack.com/x", "text_template": "{{agent_id}}"}},
            "unknown alert field(s) {{agent_id}}"),
        "digest": ({"action_type": "slack", "config": {
            "webhook_url": "https://hooks.slack.com/x", "digest": {"window_seconds": 60}}},
            "digest: is not a setting of alerts"),
    }  # fmt: skip
    for name, (body, message) in cases.items():
        response = await api.put("/me/alert-action", json=body, headers=alice.headers)
        assert response.status_code == 422, (name, response.text)
        assert message in response.json()["error"]["message"], (name, response.text)


async def test_a_webhook_alert_is_delivered_signed_with_its_credentials(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    """A trigger whose deliveries fail until its breaker opens: its owner's webhook gets one
    alert, signed with the trigger's secret, with the header credential decrypted."""
    async with serve_asgi(failing := WebhookSink(secret="")) as target_url, serve_asgi(
        alerts := WebhookSink(secret="")
    ) as alert_url:  # fmt: skip
        put = await api.put("/me/alert-action", json=rest_alert(alert_url), headers=alice.headers)
        assert put.status_code == 200, put.text
        action = {"action_type": "rest", "config": {"url": target_url}}
        created = await api.post("/triggers", json={**SIMPLE, "failure_threshold": 2,
                                                    "actions": [action]},
                                 headers=alice.headers)  # fmt: skip
        assert created.status_code == 201, created.text
        trigger = created.json()
        failing.secret = alerts.secret = trigger["webhook_secret"]
        failing.fail_next(100, 410)
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            await queue_jobs(conn, trigger["id"], trigger["actions"][0]["id"], 4)
            async with running_worker(settings_for(migrated_url)):
                await eventually(lambda: alerts.processed, timeout=20, what="the alert")
    (request,) = alerts.received
    assert request.signature_ok
    assert request.headers["x-api-key"] == TOKEN
    body = request.json()
    assert body["alert"] == "circuit_breaker"
    assert body["computed"]["trigger_id"] == trigger["id"]
    assert re.fullmatch(
        r"circuit breaker: \d consecutive failed deliveries, the last: .*"
        r" answered HTTP 410",
        body["computed"]["disabled_reason"],
    )
    assert "/circuit-breaker/reset" in body["computed"]["reset_instructions"]
    # The owner sees the alert among their jobs, with no action of the trigger.
    jobs = (await api.get("/jobs", params={"trigger_id": trigger["id"]},
                          headers=alice.headers)).json()["items"]  # fmt: skip
    (alert_job,) = [job for job in jobs if job["action_id"] is None]
    assert alert_job["action_type"] == "rest"
    assert alert_job["state"] == "delivered"
