"""The demo's triggers are the seven documented examples, adapted to the devnet, and the
documented reputation threshold; its files and registration files are what the backend
expects; its scene tells the story its notes say."""

from __future__ import annotations

import base64
import dataclasses
import json
from decimal import Decimal
from typing import Any

import pytest
from eth_hash.auto import keccak

from erc8004_backend.actions.channels import parse_action_config
from erc8004_backend.agents import summaries
from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.demo.scenario import (
    REPUTATION_FLOOR,
    SCENE,
    SCENE_CLIENTS,
    Feedback,
    NewcomerFeedback,
    Registration,
    Response,
    Revocation,
    Validation,
    demo_triggers,
    feedback_file,
    reputation_trigger,
)
from erc8004_backend.devnet.activity.context import client_addresses
from erc8004_backend.devnet.documents import registration_uri
from erc8004_backend.triggers.conditions import parse_conditions
from tests.conftest import ROOT
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


# -- the agents' part -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Crossing:
    before: Decimal | None
    after: Decimal
    count: int


def summary_value(summary: summaries.ReputationSummary) -> Decimal | None:
    """getSummary's value as a number (None when it counted nothing)."""
    if summary.counted == 0:
        return None
    return Decimal(summary.value).scaleb(-summary.decimals)


def demo_agent_summaries() -> list[summaries.ReputationSummary]:
    """The spec's getSummary of the demo agent over the scene's clients after each of the
    scene's events that can move it (its feedback and revocations), in one play of the scene
    (the random activity leaves the demo agent alone), computed by the spec's model."""
    given: list[summaries.Feedback] = []
    by_step: dict[int, int] = {}  # position in SCENE -> position in `given`
    after: list[summaries.ReputationSummary] = []
    for position, step in enumerate(SCENE):
        if isinstance(step, Feedback):
            client = SCENE_CLIENTS[step.client]
            index = 1 + sum(feedback.client == client for feedback in given)
            by_step[position] = len(given)
            given.append(summaries.Feedback(client, index, step.score, 0, step.tag1))
        elif isinstance(step, Revocation):
            revoked = given[by_step[step.step]]
            given[by_step[step.step]] = dataclasses.replace(revoked, revoked=True)
        else:
            continue
        after.append(summaries.reputation_summary(given, SCENE_CLIENTS))
    return after


def expected_crossings() -> list[Crossing]:
    """The events at which the demo agent's getSummary over the scene's clients falls below
    REPUTATION_FLOOR from not below it: the reputation threshold's firings."""
    crossings = []
    before: Decimal | None = None
    for summary in demo_agent_summaries():
        value = summary_value(summary)
        was_below = before is not None and before < REPUTATION_FLOOR
        if value is not None and value < REPUTATION_FLOOR and not was_below:
            crossings.append(Crossing(before, value, summary.counted))
        before = value
    return crossings


def test_the_reputation_trigger_is_the_documented_example_on_the_devnet() -> None:
    trigger = reputation_trigger(7, SCENE_CLIENTS)
    text = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    block = text.split("\n### Summary conditions\n", 1)[1].split("```json", 1)[1]
    example = json.loads(block.split("```", 1)[0])
    assert example["conditions"][1]["condition_type"] == "reputation_threshold"
    # Adapted: over the scene's clients, and of any tag (the scene's feedback has several).
    assert set(example["conditions"][1]["config"]) == {"clients", "tag1"}
    example["conditions"][1]["config"] = {"clients": list(SCENE_CLIENTS)}
    assert shape(trigger) == shape(example)
    assert trigger["chain_id"] == DEVNET_CHAIN_ID
    parse_conditions(trigger["conditions"])
    for action in trigger["actions"]:
        parse_action_config(action["action_type"], action["config"])
    on_agent, threshold = trigger["conditions"]
    assert on_agent["value"] == "7"
    assert threshold["value"] == str(REPUTATION_FLOOR)
    assert threshold["config"] == {"clients": list(SCENE_CLIENTS)}


def test_the_scene_moves_the_demo_agents_reputation_across_the_threshold_twice() -> None:
    """Below at B's 30, above again when B revokes it, below again at C's 25: as the notes
    say. The summary starts with the first feedback, and ends with every score but the
    revoked one."""
    assert expected_crossings() == [Crossing(Decimal(61), Decimal(57), 8)] * 2
    final = demo_agent_summaries()[-1]
    scores = [step.score for step in SCENE if isinstance(step, Feedback)]
    assert final == (len(scores) - 1, (sum(scores) - 30) // (len(scores) - 1), 0)
    notes = [step.note for step in SCENE if isinstance(step, Feedback | Revocation)]
    assert sum(f"below {REPUTATION_FLOOR}" in note for note in notes) == 2


def test_the_scene_refers_to_its_own_earlier_feedback() -> None:
    for position, step in enumerate(SCENE):
        if isinstance(step, Revocation | Response):
            assert 0 <= step.step < position
            assert isinstance(SCENE[step.step], Feedback)
        if isinstance(step, NewcomerFeedback):
            assert any(isinstance(earlier, Registration) for earlier in SCENE[:position])
    assert any(isinstance(step, Revocation) for step in SCENE)
    assert any(isinstance(step, Response) for step in SCENE)
    # Two clients come to have rated two agents (the lens's min_agents), and one never does.
    assert len({step.client for step in SCENE if isinstance(step, NewcomerFeedback)}) == 2


def test_the_scene_clients_are_none_of_the_random_activitys() -> None:
    """Not its extra clients (nor the node's accounts: the end-to-end test sees that no
    other feedback comes from them)."""
    assert len(set(SCENE_CLIENTS)) == 3
    assert all(client == client.lower() and len(client) == 42 for client in SCENE_CLIENTS)
    assert not set(SCENE_CLIENTS) & set(client_addresses(1000))
