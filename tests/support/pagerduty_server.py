"""PagerDuty's Events API v2 (POST /v2/enqueue) as an ASGI app, for tests: it checks an
event as PagerDuty does (https://developer.pagerduty.com/api-reference/368ae3d938c9e-send-an-
event-to-pager-duty), answers 400 with its `errors` for an invalid one and 202 otherwise, and
keeps alerts by dedup_key (a repeated trigger updates the alert, a resolve resolves it). On
command it answers 429 (with or without Retry-After) or a 5xx. Serve with `serve_asgi`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tests.support.delivery_targets import Scope, _respond, read_body

EVENTS_PATH = "/v2/enqueue"
SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}


def event_problems(event: Any, routing_key: str) -> list[str]:
    """What PagerDuty would say is wrong with `event` (empty: it is accepted)."""
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    problems = []
    if event.get("routing_key") != routing_key:
        problems.append("'routing_key' is invalid")
    action = event.get("event_action")
    if action not in ACTIONS:
        problems.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup_key = event.get("dedup_key")
    if action != "trigger" and not dedup_key:
        problems.append("'dedup_key' is required for acknowledge and resolve")
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        problems.append("'dedup_key' must be a string of at most 255 characters")
    if action != "trigger":
        return problems
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return [*problems, "'payload' is missing or not an object"]
    summary, source = payload.get("summary"), payload.get("source")
    if not isinstance(summary, str) or not summary.strip() or len(summary) > 1024:
        problems.append("'payload.summary' must be 1 to 1024 characters")
    if not isinstance(source, str) or not source.strip() or len(source) > 255:
        problems.append("'payload.source' must be 1 to 255 characters")
    if payload.get("severity") not in SEVERITIES:
        problems.append("'payload.severity' is invalid (must be critical, error, warning or info)")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict | str):
        problems.append("'payload.custom_details' must be an object")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(str(payload["timestamp"]))
        except ValueError:
            problems.append("'payload.timestamp' is not an ISO 8601 time")
    return problems


@dataclass
class PagerDutyServer:
    routing_key: str
    events: list[dict[str, Any]] = field(default_factory=list)  # accepted events, in order
    alerts: dict[str, str] = field(default_factory=dict)  # dedup_key -> triggered / resolved
    requests: int = 0
    _plan: list[tuple[int, dict[str, str]]] = field(default_factory=list)

    def rate_limit_next(self, count: int, retry_after: int | None = None) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._plan.extend([(429, headers)] * count)

    def fail_next(self, count: int, status: int = 503) -> None:
        self._plan.extend([(status, {})] * count)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.requests += 1
        if scope["method"] != "POST" or scope["path"] != EVENTS_PATH:
            await _respond(send, 404, b'{"status": "not found"}')
            return
        if self._plan:
            status, headers = self._plan.pop(0)
            answer = {"status": "throttle event" if status == 429 else "error",
                      "message": "Requests for this service are arriving too quickly."
                      if status == 429 else "Internal server error"}  # fmt: skip
            await _respond(send, status, json.dumps(answer).encode(), headers)
            return
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        problems = event_problems(event, self.routing_key)
        if problems:
            invalid = {"status": "invalid event", "message": "Event object is invalid",
                       "errors": problems}  # fmt: skip
            await _respond(send, 400, json.dumps(invalid).encode())
            return
        self.events.append(event)
        key = event.get("dedup_key") or f"generated-{len(self.events)}"
        if event["event_action"] == "trigger":
            self.alerts[key] = "triggered"
        elif event["event_action"] == "resolve" and key in self.alerts:
            self.alerts[key] = "resolved"
        answer = {"status": "success", "message": "Event processed", "dedup_key": key}
        await _respond(send, 202, json.dumps(answer).encode())
