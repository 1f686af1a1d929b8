"""The demo's triggers are the seven documented examples, adapted to the devnet; its files
and registration files are what the backend expects."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from eth_hash.auto import keccak

from erc8004_backend.actions.configs import parse_action_config
from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.demo.scenario import (
    SCENE,
    Feedback,
    Registration,
    Validation,
    demo_triggers,
    feedback_file,
)
from erc8004_backend.devnet.documents import registration_uri
from erc8004_backend.triggers.conditions import parse_conditions
from tests.triggers.test_examples_end_to_end import example_triggers

EXAMPLES = example_triggers()
VALIDATORS = ["0x" + "11" * 20, "0x" + "22" * 20]
TRIGGERS = demo_triggers(7, "http://127.0.0.1:9999", VALIDATORS)


def shape(trigger: dict[str, Any]) -> dict[str, Any]:
    """What makes an example that example: registry, statefulness, the conditions' types,
    fields and operators, the actions' types and templates."""
    return {
        "registry": trigger["registry"],
        "is_stateful": trigger.get("is_stateful", False),
        "conditions": [(c["condition_type"], c["field"], c["operator"], c.get("config"))
                       for c in trigger["conditions"]],
        "actions": [(a["action_type"], a["priority"], a["config"].get("message_template"),
                     a["config"].get("body_template"), a["config"].get("tool_name"))
                    for a in trigger["actions"]],
    }  # fmt: skip


@pytest.mark.parametrize("index", range(7))
def test_each_demo_trigger_is_its_example_on_the_devnet(index: int) -> None:
    demo, example = TRIGGERS[index], EXAMPLES[index]
    assert shape(demo) == shape(example)
    assert demo["chain_id"] == DEVNET_CHAIN_ID
    parse_conditions(demo["conditions"])
    for action in demo["actions"]:
        parse_action_config(action["action_type"], action["config"])
    values = {c["condition_type"]: c["value"] for c in demo["conditions"]}
    if "agent_id_equals" in values:
        assert values["agent_id_equals"] == "7"
    if "validator_whitelist" in values:
        assert json.loads(values["validator_whitelist"]) == VALIDATORS


def test_the_refund_webhook_goes_to_the_local_sink() -> None:
    (rest,) = [a for a in TRIGGERS[2]["actions"] if a["action_type"] == "rest"]
    assert rest["config"]["url"] == "http://127.0.0.1:9999/refund-alerts"


def test_a_feedback_file_hashes_to_its_on_chain_hash() -> None:
    uri, digest = feedback_file(7, 3, 45)
    header, encoded = uri.split(",", 1)
    assert header == "data:application/json;base64"
    raw = base64.b64decode(encoded)
    assert keccak(raw) == digest
    assert json.loads(raw)["score"] == 45


def test_the_demo_agents_registration_names_its_mcp_server() -> None:
    uri = registration_uri("Demo Agent", mcp_url="http://127.0.0.1:5555/mcp")
    document = json.loads(base64.b64decode(uri.split(",", 1)[1]))
    assert document["services"] == [
        {"name": "MCP", "endpoint": "http://127.0.0.1:5555/mcp", "version": "2025-06-18"}
    ]
    plain = json.loads(base64.b64decode(registration_uri("Other").split(",", 1)[1]))
    assert plain["services"] == []


def test_the_scene_sets_off_every_example() -> None:
    feedback = [step for step in SCENE if isinstance(step, Feedback)]
    assert any(isinstance(step, Registration) for step in SCENE)
    assert {step.trusted for step in SCENE if isinstance(step, Validation)} == {True, False}
    assert any(step.tag1 == "refund" for step in feedback)
    assert any(step.with_file for step in feedback)
    assert sum(step.score < 50 for step in feedback) > 10  # the spam window
    assert all(0 <= step.score <= 100 for step in feedback)
