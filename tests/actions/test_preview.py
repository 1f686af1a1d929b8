"""Backtest previews: what each action would send, rendered exactly as the worker renders it
(pure; the backtest and the API show them in tests/api and tests/cli)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from erc8004_backend.actions.channels import parse_action_config
from erc8004_backend.actions.preview import ActionPreview, ActionPreviews
from erc8004_backend.actions.rest import RestConfig, webhook_body
from erc8004_backend.actions.telegram import TelegramConfig, send_message_body
from tests.actions.test_rest import job
from tests.support.jobs import feedback_event

TELEGRAM = {"chat_id": "1", "parse_mode": "MarkdownV2",
            "message_template": "#{{agent_id}}: {{score|fixed:2}} {{transaction_url}}"}  # fmt: skip
BODY = {"score": "{{score|fixed:1}}", "who": "{{client_address|short}}", "n": [1, "{{tag1}}"]}


def row(action_id: str, action_type: str, priority: int, config: Any) -> dict[str, Any]:
    return {"id": action_id, "action_type": action_type, "priority": priority, "config": config}


def test_previews_are_what_the_worker_would_send() -> None:
    rest = {"url": "https://hooks.example.com/x", "body_template": BODY,
            "headers": {"Authorization": {"sealed": "AAAA", "key_id": "k1"}}}  # fmt: skip
    previews = ActionPreviews([row("a", "telegram", 1, TELEGRAM), row("b", "rest", 2, rest)])
    payload = {"event_id": 1, "event": feedback_event(1, score="4.55", tag1="x_y"),
               "computed": {"trigger_name": "t", "trigger_id": "id"}}  # fmt: skip

    shown = previews.render(payload, "https://basescan.org")

    the_job = dataclasses.replace(job(), payload=payload, explorer_url="https://basescan.org")
    telegram = parse_action_config("telegram", TELEGRAM)
    assert isinstance(telegram, TelegramConfig)
    webhook = parse_action_config("rest", {**rest, "headers": {}})
    assert isinstance(webhook, RestConfig)
    sent_body = orjson.loads(webhook_body(webhook, the_job))
    assert shown == [
        ActionPreview("a", "telegram", 1, text=send_message_body(telegram, the_job.values)["text"]),
        ActionPreview("b", "rest", 2, body=sent_body),
    ]
    assert shown[0].text == r"\#42: 4\.55 https://basescan\.org/tx/0x" + f"{2:064x}"
    assert shown[1].body == {"score": "4.6", "who": "0xcccc…cccc", "n": [1, "x_y"]}


def test_actions_without_a_template_of_their_own_have_no_preview() -> None:
    previews = ActionPreviews([
        row("mcp", "mcp", 1, {"tool_name": "agent.receiveFeedback"}),
        row("whole job", "rest", 1, {"url": "https://hooks.example.com/x"}),
        row("get", "rest", 1, {"url": "https://hooks.example.com/x", "method": "get",
                               "body_template": BODY}),
        row("stale", "telegram", 1, {"chat_id": "1"}),  # no longer parses
        row("odd", "rest", 1, None),
    ])  # fmt: skip
    assert previews.render({"event": {}, "computed": {}}, None) == []
