"""What the demo sets up and plays: the seven example triggers of the documentation adapted to
the devnet, a reputation threshold over the scene's clients, the demo agent's registration
file, and a scripted scene of feedback, revocations and responses that makes each of them fire
(plain data; `runner` sends it).

The examples name agent 42 on Base Sepolia and Polygon Amoy; here they watch the demo agent on
the devnet (chain 31337), send Telegram messages to a local Bot API, the refund webhook to a
local sink and the MCP push to the demo agent's own MCP server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

from erc8004_backend.agents.lenses import Lens
from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.devnet.documents import data_uri

LOW_SCORE_CHAT = "123456789"
REGISTRATIONS_CHAT = "987654321"

# The clients the scene's feedback comes from: addresses of the demo's own (the devnet lets
# them send, impersonated), which the random activity never uses, so that everything they
# did is the scene's. The view shows the spec's getSummary over them, and the reputation
# threshold watches it.
SCENE_CLIENTS: tuple[str, ...] = tuple(
    "0x" + keccak(f"erc8004 demo client {name}".encode())[12:].hex() for name in "ABC"
)
CLIENT_NAMES = dict(zip(SCENE_CLIENTS, "ABC", strict=True))
# The lens the view shows: a client counts once it has given feedback to at least two
# agents, with one vote, its latest feedback.
DEMO_LENS = Lens(min_agents=2, vote="latest")
REPUTATION_FLOOR = 60  # the reputation threshold fires when the summary falls below it


def demo_triggers(agent_id: int, webhook_url: str, validators: list[str]) -> list[dict[str, Any]]:
    """The seven examples as `POST /api/v1/triggers` bodies, in the examples' order."""
    agent = str(agent_id)
    on_agent = {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
                "value": agent}  # fmt: skip
    return [
        {
            "name": f"Low score alert for agent {agent}",
            "chain_id": DEVNET_CHAIN_ID, "registry": "reputation",
            "conditions": [on_agent, {"condition_type": "score_threshold", "field": "score",
                                      "operator": "<", "value": "60"}],
            "actions": [{"action_type": "telegram", "priority": 1, "config": {
                "chat_id": LOW_SCORE_CHAT, "parse_mode": "MarkdownV2",
                "message_template": "Agent #{{agent_id}} received a low score: {{score}}\n"
                                    "From: {{client_address}}\nTags: {{tag1}}, {{tag2}}\n"
                                    "Block: {{block_number}}"}}],
        },
        {
            "name": "New agents on the devnet",
            "chain_id": DEVNET_CHAIN_ID, "registry": "identity",
            "conditions": [{"condition_type": "event_type_equals", "field": "event_type",
                            "operator": "=", "value": "Registered"}],
            "actions": [{"action_type": "telegram", "priority": 1, "config": {
                "chat_id": REGISTRATIONS_CHAT,
                "message_template": "New agent #{{agent_id}} owned by {{owner}}: "
                                    "{{token_uri}} (tx {{transaction_hash}})"}}],
        },
        {
            "name": "Refund requests",
            "chain_id": DEVNET_CHAIN_ID, "registry": "reputation",
            "conditions": [on_agent, {"condition_type": "tag_equals", "field": "tag1",
                                      "operator": "=", "value": "refund"}],
            "actions": [
                {"action_type": "telegram", "priority": 1, "config": {
                    "chat_id": LOW_SCORE_CHAT,
                    "message_template": "Refund request for agent {{agent_id}}: score {{score}},"
                                        " file {{file_uri}}"}},
                {"action_type": "rest", "priority": 2, "config": {
                    "method": "POST", "url": f"{webhook_url}/refund-alerts",
                    "headers": {"Authorization": "Bearer EXAMPLE"}, "timeout_ms": 10000,
                    "body_template": {"agent_id": "{{agent_id}}", "score": "{{score}}",
                                      "client": "{{client_address}}",
                                      "file_uri": "{{file_uri}}"}}},
            ],
        },
        {
            "name": "Trusted validator failure",
            "chain_id": DEVNET_CHAIN_ID, "registry": "validation",
            "conditions": [
                {"condition_type": "validator_whitelist", "field": "validator_address",
                 "operator": "IN", "value": json.dumps(validators)},
                {"condition_type": "response_threshold", "field": "response", "operator": "<",
                 "value": "80"},
            ],
            "actions": [{"action_type": "telegram", "priority": 1, "config": {
                "chat_id": REGISTRATIONS_CHAT,
                "message_template": "Validation failed for agent {{agent_id}}: {{response}}/100"
                                    " from {{validator_address}} ({{tag}})"}}],
        },
        {
            "name": "EMA score drop",
            "chain_id": DEVNET_CHAIN_ID, "registry": "reputation", "is_stateful": True,
            "conditions": [on_agent, {"condition_type": "ema_threshold", "field": "score",
                                      "operator": "<", "value": "70",
                                      "config": {"window_size": 10}}],
            "actions": [{"action_type": "telegram", "priority": 1, "config": {
                "chat_id": LOW_SCORE_CHAT,
                "message_template": "Agent #{{agent_id}} average fell to {{ema_score}}"
                                    " (latest {{score}})"}}],
        },
        {
            "name": "Feedback spam",
            "chain_id": DEVNET_CHAIN_ID, "registry": "reputation", "is_stateful": True,
            "conditions": [
                on_agent,
                {"condition_type": "score_threshold", "field": "score", "operator": "<",
                 "value": "50"},
                {"condition_type": "rate_limit", "field": "feedback_count", "operator": ">",
                 "value": "10", "config": {"time_window": "1h", "reset_on_trigger": True}},
            ],
            "actions": [{"action_type": "telegram", "priority": 1, "config": {
                "chat_id": LOW_SCORE_CHAT,
                "message_template": "Agent #{{agent_id}} got {{count}} negative feedbacks"
                                    " in an hour"}}],
        },
        {
            "name": f"Feedback to agent {agent}'s MCP server",
            "chain_id": DEVNET_CHAIN_ID, "registry": "reputation",
            "conditions": [on_agent, {"condition_type": "file_uri_exists", "field": "file_uri",
                                      "operator": "IS NOT NULL", "value": ""}],
            "actions": [{"action_type": "mcp", "priority": 1, "config": {
                "tool_name": "agent.receiveFeedback", "verify_file_hash": True}}],
        },
    ]  # fmt: skip


def reputation_trigger(agent_id: int, clients: tuple[str, ...]) -> dict[str, Any]:
    """The documentation's reputation_threshold example (docs/triggers.md, "Summary
    conditions"), on the demo agent and over the scene's clients, of any tag."""
    agent = str(agent_id)
    return {
        "name": f"Agent {agent}'s reputation below {REPUTATION_FLOOR}",
        "chain_id": DEVNET_CHAIN_ID, "registry": "reputation", "is_stateful": True,
        "conditions": [
            {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
             "value": agent},
            {"condition_type": "reputation_threshold", "field": "reputation", "operator": "<",
             "value": str(REPUTATION_FLOOR), "config": {"clients": list(clients)}},
        ],
        "actions": [{"action_type": "telegram", "priority": 1, "config": {
            "chat_id": LOW_SCORE_CHAT,
            "message_template": "Agent #{{agent_id}} fell from {{reputation_before}} to"
                                " {{reputation_after}} ({{reputation_count}} feedback)"}}],
    }  # fmt: skip


@dataclass(frozen=True)
class Feedback:
    """Feedback for the demo agent, from one of SCENE_CLIENTS."""

    score: int
    client: int  # an index of SCENE_CLIENTS
    tag1: str = "starred"
    with_file: bool = False
    note: str = ""  # what it should set off, for the live view


@dataclass(frozen=True)
class NewcomerFeedback:
    """Feedback from one of SCENE_CLIENTS for the agent the scene registered last."""

    score: int
    client: int
    note: str = ""


@dataclass(frozen=True)
class Revocation:
    """The client of an earlier step's feedback takes it back."""

    step: int  # the position in SCENE of that Feedback
    note: str = ""


@dataclass(frozen=True)
class Response:
    """The demo agent's owner answers an earlier step's feedback."""

    step: int  # the position in SCENE of that Feedback
    note: str = ""


@dataclass(frozen=True)
class Registration:
    """A new agent registers."""

    note: str = "a new agent registers → Telegram"


@dataclass(frozen=True)
class Validation:
    """The demo agent asks for a validation, and the validator answers."""

    response: int
    trusted: bool  # by one of the validators the trigger trusts
    note: str = ""


SceneStep = Feedback | Registration | Validation | NewcomerFeedback | Revocation | Response

A, B, C = range(3)  # SCENE_CLIENTS by index

# Good scores seed the average; a refund request follows (the owner answers it); then scores
# below 50 pull the moving average under 70 and make more than ten low scores within the
# hour. Every low score sets off the low-score alert; feedback with a file is pushed to the
# agent's MCP server. A registration and two validations (one by a trusted validator) set off
# two more. The getSummary over the three clients falls below 60 at the 30, rises above when
# B revokes it, and falls below again at the next score: the reputation threshold fires
# twice. B and later C rate the newcomer: with feedback to two agents, the lens counts them.
SCENE: tuple[SceneStep, ...] = (
    Registration(),
    Feedback(90, A, with_file=True, note="a file → MCP push"),
    Validation(50, trusted=True, note="a trusted validator fails it → Telegram"),
    Feedback(92, B),
    Feedback(88, C),
    NewcomerFeedback(80, B, note="B has rated two agents: the lens counts B"),
    Feedback(45, A, tag1="refund", with_file=True, note="refund → Telegram + webhook + MCP"),
    Response(6, note="the owner answers the refund request"),
    Validation(30, trusted=False, note="an untrusted validator: no alert"),
    Feedback(40, B),
    Feedback(35, C),
    Feedback(42, A),
    Feedback(30, B, note=f"getSummary falls below {REPUTATION_FLOOR} → Telegram"),
    Revocation(12, note=f"B takes its 30 back: getSummary is above {REPUTATION_FLOOR} again"),
    Feedback(25, C, note=f"below {REPUTATION_FLOOR} again → Telegram"),
    NewcomerFeedback(70, C, note="C has rated two agents: the lens counts C"),
    Feedback(38, A, with_file=True, note="a low score with a file"),
    *(Feedback(score, client) for score, client in ((44, B), (20, C), (33, A), (41, B), (15, C))),
)


def feedback_file(agent_id: int, step: int, score: int) -> tuple[str, bytes]:
    """A feedback file (as a `data:` URI) and its keccak256, for `verify_file_hash`."""
    return data_uri({"agentId": agent_id, "score": score, "step": step,
                     "comment": "left by the erc8004 demo"})  # fmt: skip
