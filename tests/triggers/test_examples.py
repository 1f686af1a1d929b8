"""The simple examples of trigger-examples.md: the events that should and should not fire."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from erc8004_backend.triggers.conditions import parse_conditions
from erc8004_backend.triggers.stateful import evaluate_trigger

AGENT_42_LOW_SCORE = [
    {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
    {"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "60"},
]
NEW_AGENTS = [
    {
        "condition_type": "event_type_equals",
        "field": "event_type",
        "operator": "=",
        "value": "Registered",
    },
]
REFUNDS = [
    {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
    {"condition_type": "tag_equals", "field": "tag1", "operator": "=", "value": "refund"},
]
TRUSTED_VALIDATOR_FAILURE = [
    {
        "condition_type": "validator_whitelist",
        "field": "validator_address",
        "operator": "IN",
        "value": '["0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222"]',
    },
    {"condition_type": "response_threshold", "field": "response", "operator": "<", "value": "80"},
]
MCP_PUSH = [
    {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
    {
        "condition_type": "file_uri_exists",
        "field": "file_uri",
        "operator": "IS NOT NULL",
        "value": "",
    },
]
VALIDATOR = "0x2222222222222222222222222222222222222222"


@pytest.mark.parametrize(
    ("rows", "event", "fires"),
    [
        (AGENT_42_LOW_SCORE, {"event_type": "NewFeedback", "agent_id": 42, "score": Decimal(45)}, True),
        (AGENT_42_LOW_SCORE, {"event_type": "NewFeedback", "agent_id": 43, "score": Decimal(45)}, False),
        (AGENT_42_LOW_SCORE, {"event_type": "NewFeedback", "agent_id": 42, "score": Decimal(60)}, False),
        (NEW_AGENTS, {"event_type": "Registered", "agent_id": 0}, True),
        (NEW_AGENTS, {"event_type": "MetadataSet", "agent_id": 0}, False),
        (NEW_AGENTS, {"event_type": "Transfer", "agent_id": 0}, False),
        (REFUNDS, {"agent_id": 42, "tag1": "refund"}, True),
        (REFUNDS, {"agent_id": 42, "tag1": "quality"}, False),
        (TRUSTED_VALIDATOR_FAILURE, {"event_type": "ValidationResponse", "response": 50,
                                     "validator_address": VALIDATOR.upper().replace("0X", "0x")}, True),
        (TRUSTED_VALIDATOR_FAILURE, {"event_type": "ValidationResponse", "response": 50,
                                     "validator_address": "0x" + "33" * 20}, False),
        # A ValidationRequest has no response: it does not fire.
        (TRUSTED_VALIDATOR_FAILURE, {"event_type": "ValidationRequest", "response": None,
                                     "validator_address": VALIDATOR}, False),
        (MCP_PUSH, {"agent_id": 42, "file_uri": "ipfs://bafy/feedback.json"}, True),
        (MCP_PUSH, {"agent_id": 42, "file_uri": None}, False),
    ],
)  # fmt: skip
def test_examples_fire_for_exactly_the_events_they_describe(
    rows: list[dict[str, Any]], event: dict[str, Any], fires: bool
) -> None:
    result = evaluate_trigger(parse_conditions(rows), event, {},
                              block_time=datetime(2026, 1, 1, tzinfo=UTC))  # fmt: skip
    assert result.fired is fires
