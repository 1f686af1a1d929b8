"""PagerDuty actions: the Events API v2 request a job makes (pure), its routing key at rest,
and the worker delivering to a server speaking the Events API on 127.0.0.1, with its rate
limit, retries and resolves."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erc8004_backend.actions.configs import ActionConfigError, validate_config
from erc8004_backend.actions.delivery import DeliveryFailed
from erc8004_backend.actions.pagerduty import (
    CUT_MARKER,
    MAX_DETAIL_CHARS,
    MAX_SUMMARY_CHARS,
    PagerDutyConfig,
    deliver_pagerduty,
    event_body,
    mask_routing_key,
    seal_routing_key,
)
from erc8004_backend.actions.preview import ActionPreviews
from erc8004_backend.actions.rest import MASK, CredentialError
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox
from tests.actions.test_email import HOSTILE, queue_retraction
from tests.actions.test_worker import job_status_counts, results, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.jobs import create_trigger, feedback_event, queue_jobs
from tests.support.pagerduty_server import EVENTS_PATH, PagerDutyServer, event_problems
from tests.support.waiting import eventually

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def pagerduty_config(**overrides: Any) -> dict[str, Any]:
    return {"routing_key": ROUTING_KEY, "severity": "error",
            "summary_template": "Agent {{agent_id}} got score {{score}} ({{tag1}})", **overrides}  # fmt: skip


# -- configs and requests ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"severity": "fatal"},
            "severity: Input should be 'critical', 'error', 'warning' or 'info'",
        ),
        ({"routing_key": "has space"}, "routing_key: must be the integration key"),
        ({"routing_key": ""}, "routing_key: String should have at least 1 character"),
        ({"summary_template": ""}, "summary_template: String should have at least 1 character"),
    ],
)
def test_configs_are_checked(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ActionConfigError, match=problem):
        validate_config(PagerDutyConfig, "pagerduty", pagerduty_config(**overrides), strict=True)


def test_a_trigger_event_carries_the_summary_severity_and_the_event() -> None:
    config = PagerDutyConfig.model_validate(pagerduty_config(component="reputation"))
    values = {**feedback_event(1), "transaction_url": "https://explorer.example/tx/0x02",
              "trigger_name": "low scores", "retracted": "false"}  # fmt: skip
    body = event_body(config, values, dedup_key="key-1", retracted=False)
    assert body["routing_key"] == ROUTING_KEY
    assert (body["event_action"], body["dedup_key"]) == ("trigger", "key-1")
    payload = body["payload"]
    assert payload["summary"] == "Agent 42 got score 45 (refund)"
    assert payload["source"] == "erc8004 chain 31337 reputation registry"
    assert payload["severity"] == "error"
    assert payload["component"] == "reputation"
    assert payload["timestamp"] == "2026-11-24T12:00:00+00:00"
    assert payload["custom_details"] == values
    assert body["links"] == [{"href": "https://explorer.example/tx/0x02", "text": "Transaction"}]
    assert event_problems(body, ROUTING_KEY) == []


def test_a_retraction_resolves_the_alert_of_the_same_key() -> None:
    config = PagerDutyConfig.model_validate(pagerduty_config())
    body = event_body(config, feedback_event(1), dedup_key="key-1", retracted=True)
    assert body == {"routing_key": ROUTING_KEY, "dedup_key": "key-1", "event_action": "resolve"}


hostile_text = st.one_of(
    st.text(),
    st.sampled_from(HOSTILE),
    st.tuples(st.sampled_from([*HOSTILE, "y"]), st.integers(1, 5_000)).map(lambda t: t[0] * t[1]),
)


@settings(max_examples=200, deadline=None)
@given(tag=hostile_text, agent=hostile_text)
def test_hostile_values_make_a_valid_event_within_pagerdutys_limits(tag: str, agent: str) -> None:
    config = PagerDutyConfig.model_validate(pagerduty_config())
    values = {**feedback_event(1), "tag1": tag, "agent_id": agent}
    body = orjson.loads(orjson.dumps(event_body(config, values, dedup_key="k", retracted=False)))
    assert event_problems(body, ROUTING_KEY) == []
    summary = body["payload"]["summary"]
    assert len(summary) <= MAX_SUMMARY_CHARS
    assert "\n" not in summary
    assert "\r" not in summary
    assert len(body["payload"]["custom_details"]["tag1"]) <= MAX_DETAIL_CHARS
    if len(tag) > MAX_DETAIL_CHARS:
        assert body["payload"]["custom_details"]["tag1"].endswith(CUT_MARKER)
    else:
        assert body["payload"]["custom_details"]["tag1"] == tag  # JSON: no escaping needed


def test_the_preview_is_the_summary_without_the_routing_key(box: SecretBox) -> None:
    stored = seal_routing_key(pagerduty_config(), box, "a1", None)
    previews = ActionPreviews([{"id": "a1", "action_type": "pagerduty", "priority": 1,
                                "config": stored}])  # fmt: skip
    [shown] = previews.render({"event": feedback_event(1), "computed": {}}, None)
    assert shown.text == "Agent 42 got score 45 (refund)"


# -- the routing key at rest -------------------------------------------------------------


def test_the_routing_key_is_stored_sealed_and_shown_masked(box: SecretBox) -> None:
    stored = seal_routing_key(pagerduty_config(), box, "action-1", None)
    assert ROUTING_KEY not in orjson.dumps(stored).decode()
    shown = mask_routing_key(stored, box, "action-1")
    assert shown["routing_key"] == MASK + ROUTING_KEY[-4:]
    # The mask sent back keeps the key; a mask of another key is refused.
    assert seal_routing_key(shown, box, "action-1", stored) == stored
    with pytest.raises(CredentialError, match="routing_key is masked"):
        seal_routing_key({**shown, "routing_key": MASK + "zzzz"}, box, "action-1", stored)
    # Bound to its action: another action's row does not open it.
    assert mask_routing_key(stored, box, "action-2")["routing_key"] == MASK


# -- through the worker ------------------------------------------------------------------


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def _sealed_trigger(
    conn: psycopg.AsyncConnection, box: SecretBox, config: dict[str, Any]
) -> tuple[str, str]:
    """A trigger with a pagerduty action whose key is stored as the API stores it."""
    trigger, action, _ = await create_trigger(conn, "pagerduty", config)
    sealed = seal_routing_key(config, box, action, None)
    await conn.execute("UPDATE trigger_actions SET config = %s WHERE id = %s",
                       [orjson.dumps(sealed).decode(), action])  # fmt: skip
    return trigger, action


def pagerduty_settings(url: str, server_url: str) -> Settings:
    return settings_for(url, pagerduty_events_url=server_url + EVENTS_PATH)


async def test_an_alert_is_triggered_with_the_jobs_key_and_resolved_by_a_retraction(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    hostile = '<b>"quoted"</b>\r\nline two'
    async with serve_asgi(server := PagerDutyServer(ROUTING_KEY)) as url:
        trigger, action = await _sealed_trigger(
            conn, box, pagerduty_config(notify_retractions=True)
        )
        [job] = await queue_jobs(conn, trigger, action, 1, tag1=hostile)
        async with running_worker(pagerduty_settings(migrated_url, url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
            await queue_retraction(conn, job)
            await eventually(lambda: len(server.events) == 2)
    cursor = await conn.execute("SELECT idempotency_key FROM action_jobs WHERE id = %s", [job])
    key = (await cursor.fetchone() or [""])[0]
    triggered, resolved = server.events
    assert triggered["dedup_key"] == resolved["dedup_key"] == key
    assert (triggered["event_action"], resolved["event_action"]) == ("trigger", "resolve")
    assert triggered["payload"]["summary"] == 'Agent 42 got score 45 (<b>"quoted"</b> line two)'
    assert triggered["payload"]["custom_details"]["tag1"] == hostile
    assert triggered["payload"]["custom_details"]["client_address"] == "0x" + "cc" * 20
    assert server.alerts == {key: "resolved"}
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["success", "success"]
    sent = [row["response_data"].pop("request") for row in rows]
    assert rows[0]["response_data"] == {"status": 202, "message": "Event processed",
                                        "dedup_key": key, "result": "success"}  # fmt: skip
    # The request inspector: each attempt's request as received, its routing key masked.
    for request, event in zip(sent, server.events, strict=True):
        assert {k: request[k] for k in ("method", "url", "headers")} == {
            "method": "POST", "url": url + EVENTS_PATH,
            "headers": {"Content-Type": "application/json"}}  # fmt: skip
        assert orjson.loads(request["body"]) == {**event, "routing_key": MASK + ROUTING_KEY[-4:]}
    assert ROUTING_KEY not in orjson.dumps(rows).decode() + orjson.dumps(sent).decode()


@pytest.mark.slow
async def test_a_429_is_retried_after_its_retry_after(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with serve_asgi(server := PagerDutyServer(ROUTING_KEY)) as url:
        server.rate_limit_next(1, retry_after=1)
        server.rate_limit_next(1)  # without Retry-After: the backoff's
        trigger, action = await _sealed_trigger(conn, box, pagerduty_config())
        await queue_jobs(conn, trigger, action, 1)
        started = time.monotonic()
        async with running_worker(pagerduty_settings(migrated_url, url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
        elapsed = time.monotonic() - started
    assert elapsed >= 1.0  # the backoff alone would be 0.05 s and 0.1 s
    assert server.requests == 3
    assert len(server.events) == 1
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["retrying", "retrying", "success"]
    assert rows[0]["error_message"] == "PagerDuty answered HTTP 429"


async def test_a_5xx_is_retried_and_a_400_is_dead_at_once_with_pagerdutys_errors(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with serve_asgi(server := PagerDutyServer(ROUTING_KEY)) as url:
        server.fail_next(2, 502)
        trigger, action = await _sealed_trigger(conn, box, pagerduty_config())
        refused_trigger, refused = await _sealed_trigger(
            conn, box, pagerduty_config(routing_key="0therKey0123456789abcdefABCDEF00")
        )
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(pagerduty_settings(migrated_url, url)):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
            await queue_jobs(conn, refused_trigger, refused, 1, first_event=2)
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1, "dead": 1}))
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["retrying", "retrying", "success", "failed"]
    assert rows[0]["error_message"] == "PagerDuty answered HTTP 502"
    assert rows[3]["error_message"] == "PagerDuty answered HTTP 400: 'routing_key' is invalid"
    assert rows[3]["response_data"]["errors"] == ["'routing_key' is invalid"]


async def test_the_address_guard_applies_to_the_events_url(
    conn: psycopg.AsyncConnection, migrated_url: str, box: SecretBox
) -> None:
    async with serve_asgi(server := PagerDutyServer(ROUTING_KEY)) as url:
        trigger, action = await _sealed_trigger(conn, box, pagerduty_config())
        await queue_jobs(conn, trigger, action, 1)
        settings = settings_for(migrated_url, pagerduty_events_url=url + EVENTS_PATH,
                                allow_private_urls=False)  # fmt: skip
        async with running_worker(settings):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    assert server.requests == 0
    [row] = await results(conn)
    assert row["error_message"].startswith("refused to send to PagerDuty's events URL")


async def test_an_unreachable_events_url_is_retried() -> None:
    async with serve_asgi(PagerDutyServer(ROUTING_KEY)) as url:
        pass  # closed: nothing listens there now
    config = PagerDutyConfig.model_validate(pagerduty_config())
    body = event_body(config, feedback_event(1), dedup_key="k", retracted=False)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DeliveryFailed, match="cannot reach PagerDuty") as failed:
            await asyncio.wait_for(deliver_pagerduty(body, session=session, url=url + EVENTS_PATH,
                                                     response_max_bytes=1024), 15)  # fmt: skip
    assert failed.value.retryable is True
