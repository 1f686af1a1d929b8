"""Triggers through the real application: the examples stored exactly, invalid variants
refused with nothing written, replace / patch / enable / disable / breaker / secrets /
backtests."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from structlog.testing import capture_logs

from erc8004_backend.actions.rest import masked, open_credentials, signature
from erc8004_backend.api.app import Pool
from erc8004_backend.encryption import SecretBox
from tests.actions.test_worker import running_worker, settings_for
from tests.api.conftest import Account, ApiClient, MakeApp, api_settings
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import queue_jobs
from tests.support.pagerduty_server import EVENTS_PATH, PagerDutyServer
from tests.support.waiting import eventually
from tests.triggers.test_examples_end_to_end import example_triggers

EXAMPLES = example_triggers()
WEBHOOK: dict[str, Any] = {
    "action_type": "rest",
    "priority": 1,
    "config": {"url": "https://hooks.example.com/erc8004", "body_template": {"a": "{{agent_id}}"}},
}
CONDITION: dict[str, Any] = {
    "condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "7"
}  # fmt: skip
SIMPLE: dict[str, Any] = {
    "name": "feedback for 7", "chain_id": 84532, "registry": "reputation",
    "conditions": [CONDITION], "actions": [WEBHOOK],
}  # fmt: skip


def stored_shape(trigger: dict[str, Any]) -> dict[str, Any]:
    """A trigger as read back, without what the server adds (ids, times, state)."""
    return {
        "name": trigger["name"],
        "chain_id": trigger["chain_id"],
        "registry": trigger["registry"],
        "is_stateful": trigger["is_stateful"],
        "conditions": [{k: v for k, v in c.items() if k != "id"} for c in trigger["conditions"]],
        "actions": [{k: v for k, v in a.items() if k != "id"} for a in trigger["actions"]],
    }


def request_shape(body: dict[str, Any]) -> dict[str, Any]:
    """A request body with the defaults the server fills in, header values masked as the
    server shows them."""

    def shown(config: dict[str, Any]) -> dict[str, Any]:
        if "headers" not in config:
            return config
        return {**config, "headers": {k: masked(v) for k, v in config["headers"].items()}}

    return {
        "name": body["name"],
        "chain_id": body["chain_id"],
        "registry": body["registry"],
        "is_stateful": body.get("is_stateful", False),
        "conditions": [{"config": {}, **c} for c in body["conditions"]],
        "actions": [{**a, "config": shown(a.get("config", {}))} for a in body["actions"]],
    }


def row_counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM triggers), (SELECT count(*) FROM trigger_conditions),"
            " (SELECT count(*) FROM trigger_actions)"
        ).fetchone()
    assert row is not None
    return row


async def assert_refused_naming(
    api: ApiClient, alice: Account, url: str, body: dict[str, Any], field: str, message: str
) -> None:
    """A trigger refused with a 422 whose details name `field` with `message`, and nothing
    written."""
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    details = response.json()["error"]["details"]
    assert any(d["field"] == field and message in d["message"] for d in details), details
    assert row_counts(url) == (0, 0, 0)


@pytest.mark.parametrize("body", EXAMPLES, ids=[b["name"] for b in EXAMPLES])
async def test_each_example_is_stored_exactly_and_read_back_in_its_shape(
    api: ApiClient, alice: Account, migrated_url: str, body: dict[str, Any]
) -> None:
    created = await api.post("/triggers", json=body, headers=alice.headers)
    assert created.status_code == 201, created.text
    assert stored_shape(created.json()) == request_shape(body)
    read = await api.get(f"/triggers/{created.json()['id']}", headers=alice.headers)
    assert stored_shape(read.json()) == request_shape(body)
    with psycopg.connect(migrated_url) as conn:
        conditions = conn.execute(
            "SELECT condition_type, field, operator, value, config FROM trigger_conditions"
            " ORDER BY position"
        ).fetchall()
        actions = conn.execute(
            "SELECT action_type, priority, config, id::text FROM trigger_actions ORDER BY position"
        ).fetchall()
    assert [list(row) for row in conditions] == [
        [c["condition_type"], c["field"], c["operator"], c["value"], c.get("config", {})]
        for c in body["conditions"]
    ]
    box = SecretBox.from_spec(api_settings(migrated_url).token_keys)
    assert [
        [kind, priority, open_credentials(config, box, action_id)]
        for kind, priority, config, action_id in actions
    ] == [[a["action_type"], a["priority"], a["config"]] for a in body["actions"]]
    has_rest = any(a["action_type"] == "rest" for a in body["actions"])
    assert (created.json()["webhook_secret"] is not None) == has_rest
    assert created.json()["has_webhook_secret"] == has_rest
    assert "webhook_secret" not in read.json()


def _edit(path: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLES[2])  # refund requests: conditions, telegram and rest
    path(body)
    return body


INVALID = {
    "unknown operator": (
        _edit(lambda b: b["conditions"][0].update(operator="~=")),
        "conditions[0]",
        "unknown operator '~='",
    ),
    "bad threshold": (
        _edit(
            lambda b: b["conditions"].append(
                {
                    "condition_type": "score_threshold",
                    "field": "score",
                    "operator": "<",
                    "value": "sixty",
                }
            )
        ),
        "conditions[2]",
        "condition 3 (score_threshold)",
    ),
    "bad URL": (
        _edit(lambda b: b["actions"][1]["config"].update(url="ftp://example.com/x")),
        "actions[1].config",
        "rest action: url",
    ),
    "missing chat_id": (
        _edit(lambda b: b["actions"][0]["config"].pop("chat_id")),
        "actions[0].config",
        "telegram action: chat_id: is required",
    ),
    "unknown field": (
        _edit(lambda b: b.update(colour="blue")),
        "colour",
        "Extra inputs are not permitted",
    ),
    "unknown condition field": (
        _edit(lambda b: b["conditions"][1].update(field="tag9")),
        "conditions[1]",
        "unknown field 'tag9'",
    ),
    "unknown template field": (
        _edit(lambda b: b["actions"][0]["config"].update(message_template="{{agnet_id}}")),
        "actions[0].config.message_template",
        "telegram action: unknown template field(s) {{agnet_id}} (did you mean {{agent_id}}?)",
    ),
    "unknown filter": (
        _edit(lambda b: b["actions"][0]["config"].update(message_template="{{score|round:2}}")),
        "actions[0].config.message_template",
        "telegram action: {{score|round:2}}: unknown filter 'round' (filters: fixed, short,"
        " iso, upper, lower, default)",
    ),
    "bad filter argument": (
        _edit(
            lambda b: b["actions"][1]["config"]["body_template"].update(score="{{score|fixed:20}}")
        ),
        "actions[1].config.body_template.score",
        "rest action: {{score|fixed:20}}: filter 'fixed' takes a number of decimal places"
        " from 0 to 18, not '20'",
    ),
    "filter on a field of another kind": (
        _edit(
            lambda b: b["actions"][1]["config"]["body_template"].update(
                more=[{"when": "{{timestamp|iso}}"}, {"who": "{{client_address|iso}}"}]
            )
        ),
        "actions[1].config.body_template.more[1].who",
        "rest action: {{client_address|iso}}: filter 'iso' formats times, not addresses",
    ),
    "filter in the URL": (
        _edit(
            lambda b: b["actions"][1]["config"].update(
                url="https://api.example.com/agents/{{agent_id|short}}"
            )
        ),
        "actions[1].config.url",
        "rest action: {{agent_id|short}}: filter 'short' formats addresses, hashes and hex"
        " bytes, not numbers",
    ),
    "MarkdownV2 that Telegram would refuse": (
        _edit(
            lambda b: b["actions"][0]["config"].update(
                parse_mode="MarkdownV2", message_template="Refund asked (agent {{agent_id}})"
            )
        ),
        "actions[0].config",
        "telegram action: message_template: '(' at character 14 is reserved in MarkdownV2",
    ),
    "unreadable filters": (
        _edit(lambda b: b["actions"][0]["config"].update(message_template="{{score|fixed 2}}")),
        "actions[0].config.message_template",
        "telegram action: {{score|fixed 2}}: cannot read its filters",
    ),
    "stateful condition in a stateless trigger": (
        _edit(
            lambda b: b["conditions"].append(
                {
                    "condition_type": "ema_threshold",
                    "field": "score",
                    "operator": "<",
                    "value": "70",
                    "config": {"alpha": 0.2},
                }
            )
        ),
        "conditions[2]",
        "set is_stateful to true",
    ),
    "no actions": (_edit(lambda b: b.update(actions=[])), "actions", "at least 1"),
    "bad registry": (_edit(lambda b: b.update(registry="identities")), "registry", "identity"),
}


@pytest.mark.parametrize("case", INVALID, ids=list(INVALID))
async def test_invalid_variants_are_refused_naming_the_problem_with_nothing_written(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    body, field, message = INVALID[case]
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert any(d["field"] == field and message in d["message"] for d in error["details"]), error
    assert message in error["message"]
    assert row_counts(migrated_url) == (0, 0, 0)


async def test_replace_keeps_named_actions_and_drops_the_rest(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    body = copy.deepcopy(EXAMPLES[2])
    created = (await api.post("/triggers", json=body, headers=alice.headers)).json()
    telegram, rest = created["actions"]
    replacement = copy.deepcopy(body)
    replacement["name"] = "Refunds (webhook only)"
    replacement["actions"] = [{**body["actions"][1], "id": rest["id"], "priority": 5}]
    replacement["conditions"] = replacement["conditions"][:1]
    response = await api.put(f"/triggers/{created['id']}", json=replacement, headers=alice.headers)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Refunds (webhook only)"
    assert [(a["id"], a["priority"]) for a in updated["actions"]] == [(rest["id"], 5)]
    assert len(updated["conditions"]) == 1
    assert updated["webhook_secret"] is None  # it had one: not made again, not shown
    assert row_counts(migrated_url) == (1, 1, 1)
    assert telegram["id"] not in response.text


async def test_a_bad_replacement_changes_nothing(api: ApiClient, alice: Account) -> None:
    created = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    bad = {
        **SIMPLE,
        "name": "renamed",
        "conditions": [{**CONDITION, "operator": "<>"}],
    }
    response = await api.put(f"/triggers/{created['id']}", json=bad, headers=alice.headers)
    assert response.status_code == 422
    unknown_id = {**SIMPLE, "actions": [{**WEBHOOK, "id": "00000000-0000-4000-8000-000000000000"}]}
    response = await api.put(f"/triggers/{created['id']}", json=unknown_id, headers=alice.headers)
    assert response.status_code == 422
    assert "is not an action of this trigger" in response.json()["error"]["message"]
    after = (await api.get(f"/triggers/{created['id']}", headers=alice.headers)).json()
    assert after["name"] == "feedback for 7"
    assert after["updated_at"] == created["updated_at"]
    assert after["actions"] == created["actions"]
    assert after["conditions"] == created["conditions"]


async def test_patch_changes_only_what_it_names(api: ApiClient, alice: Account) -> None:
    created = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    response = await api.patch(
        f"/triggers/{created['id']}", json={"cooldown_seconds": 60, "description": "hi"},
        headers=alice.headers,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["cooldown_seconds"], patched["description"]) == (60, "hi")
    assert patched["actions"] == created["actions"]  # same ids: queued jobs are kept
    assert patched["conditions"][0]["value"] == "7"
    refused = await api.patch(
        f"/triggers/{created['id']}", json={"name": None}, headers=alice.headers
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == "name: may not be null"
    bad = await api.patch(
        f"/triggers/{created['id']}", json={"conditions": [{"condition_type": "x", "field": "y",
                                                             "operator": "="}]},
        headers=alice.headers,
    )  # fmt: skip
    assert bad.status_code == 422
    assert "unknown condition type" in bad.json()["error"]["message"]


async def test_list_pages_through_the_users_triggers(api: ApiClient, alice: Account) -> None:
    ids = [
        (
            await api.post("/triggers", json={**SIMPLE, "name": f"t{n}"}, headers=alice.headers)
        ).json()["id"]
        for n in range(5)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/triggers", params=params, headers=alice.headers)).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    bad = await api.get("/triggers", params={"cursor": "nonsense"}, headers=alice.headers)
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"] == "cursor"


async def test_enable_disable_and_the_circuit_breaker(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()["id"]
    disabled = await api.post(f"/triggers/{trigger}/disable", headers=alice.headers)
    assert disabled.json()["enabled"] is False
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE triggers SET consecutive_failures = 10, disabled_at = now(),"
            " disabled_reason = 'circuit breaker: 10 consecutive failed deliveries' WHERE id = %s",
            [trigger],
        )
    shown = (await api.get(f"/triggers/{trigger}", headers=alice.headers)).json()
    assert shown["disabled_reason"].startswith("circuit breaker")
    assert shown["consecutive_failures"] == 10
    reset = (
        await api.post(f"/triggers/{trigger}/circuit-breaker/reset", headers=alice.headers)
    ).json()
    assert (reset["consecutive_failures"], reset["disabled_at"], reset["enabled"]) == (
        0,
        None,
        False,
    )
    enabled = (await api.post(f"/triggers/{trigger}/enable", headers=alice.headers)).json()
    assert enabled["enabled"] is True


async def test_webhook_secret_rotation_shows_the_new_secret_once(
    api: ApiClient, alice: Account
) -> None:
    created = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    rotated = await api.post(f"/triggers/{created['id']}/webhook-secret", headers=alice.headers)
    assert rotated.status_code == 200
    secret = rotated.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    assert secret != created["webhook_secret"]
    assert signature(secret, 1, b"{}") != signature(created["webhook_secret"], 1, b"{}")


async def test_delete_then_everything_is_404(api: ApiClient, alice: Account) -> None:
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()["id"]
    assert (await api.delete(f"/triggers/{trigger}", headers=alice.headers)).status_code == 204
    for method, path in [("GET", ""), ("DELETE", ""), ("POST", "/enable"), ("POST", "/disable")]:
        response = await api.request(method, f"/triggers/{trigger}{path}", headers=alice.headers)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "trigger not found"


async def test_backtest_over_stored_events(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()["id"]
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        for block, agent in [(1, 7), (2, 8), (3, 7)]:
            conn.execute(
                "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
                " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
                " client_address, score) VALUES (84532, 'reputation', 'NewFeedback', '0xabc', %s,"
                " '0xb', %s, '0xt', 0, 0, %s, '0xc', 50)",
                [block, datetime(2026, 1, block, tzinfo=UTC), agent],
            )
    response = await api.post(f"/triggers/{trigger}/test", json={}, headers=alice.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["events_checked"] == 3
    assert [f["block_number"] for f in result["fired"]] == [1, 3]
    ranged = await api.post(
        f"/triggers/{trigger}/test", json={"from_block": 2}, headers=alice.headers
    )
    assert [f["block_number"] for f in ranged.json()["fired"]] == [3]
    backwards = await api.post(
        f"/triggers/{trigger}/test", json={"from_block": 3, "to_block": 1}, headers=alice.headers
    )
    assert backwards.status_code == 422
    assert "from_block is after to_block" in backwards.json()["error"]["message"]


async def test_backtest_shows_what_each_action_would_send(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    telegram = {
        "action_type": "telegram",
        "priority": 1,
        "config": {
            "chat_id": "1",
            "parse_mode": "MarkdownV2",
            "message_template": "Agent #{{agent_id}}: {{score|fixed:2}} from"
            " {{client_address|short}} at {{timestamp|iso}} {{transaction_url}}",
        },
    }
    webhook = {
        "action_type": "rest",
        "priority": 2,
        "config": {
            "url": "https://hooks.example.com/x",
            "body_template": {
                "score": "{{score|fixed:1}}",
                "tag": "{{tag1|upper|default:none}}",
                "client": "{{address_url}}",
                "count": 1,
            },
        },
    }
    mcp = {"action_type": "mcp", "priority": 3, "config": {}}
    body = {**SIMPLE, "actions": [mcp, webhook, telegram]}
    created = (await api.post("/triggers", json=body, headers=alice.headers)).json()
    ids = {action["action_type"]: action["id"] for action in created["actions"]}
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
            " client_address, score) VALUES (84532, 'reputation', 'NewFeedback', '0xabc', 9,"
            " '0xb', '2026-01-02 03:04:05+00', %s, 0, 0, 7, %s, 45.505)",
            ["0x" + "7e" * 32, "0x" + "c1" * 20],
        )  # fmt: skip
    response = await api.post(f"/triggers/{created['id']}/test", json={}, headers=alice.headers)
    assert response.status_code == 200, response.text
    [firing] = response.json()["fired"]
    # In delivery order; the MCP call has no template, so no preview. Links: the shipped
    # chains' explorers (84532: Base Sepolia's).
    assert firing["messages"] == [
        {"action_id": ids["telegram"], "action_type": "telegram", "priority": 1, "body": None,
         "text": r"Agent \#7: 45\.51 from 0xc1c1…c1c1 at 2026\-01\-02T03:04:05Z"
                 r" https://sepolia\.basescan\.org/tx/0x" + "7e" * 32},
        {"action_id": ids["rest"], "action_type": "rest", "priority": 2, "text": None,
         "body": {"score": "45.5", "tag": "none", "count": 1,
                  "client": "https://sepolia.basescan.org/address/0x" + "c1" * 20}},
    ]  # fmt: skip
    with psycopg.connect(migrated_url) as conn:
        assert conn.execute("SELECT count(*) FROM action_jobs").fetchone() == (0,)


async def test_templates_are_checked_when_a_trigger_is_changed(
    api: ApiClient, alice: Account
) -> None:
    created = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    template = {"a": "{{agent_id|fixed:2}}", "b": ["{{timestamp|iso}}", "{{score|short}}"]}
    bad = {"actions": [{**WEBHOOK, "config": {**WEBHOOK["config"], "body_template": template}}]}
    for method in ("PATCH", "PUT"):
        response = await api.request(method, f"/triggers/{created['id']}",
                                     json={**SIMPLE, **bad} if method == "PUT" else bad,
                                     headers=alice.headers)  # fmt: skip
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"] == [{
            "field": "actions[0].config.body_template.b[1]",
            "message": "rest action: {{score|short}}: filter 'short' formats addresses,"
                       " hashes and hex bytes, not numbers",
        }]  # fmt: skip
    after = (await api.get(f"/triggers/{created['id']}", headers=alice.headers)).json()
    assert after["actions"] == created["actions"]
    template["b"] = ["{{timestamp|iso}}", "{{score|fixed:3}}"]
    response = await api.patch(f"/triggers/{created['id']}", json=bad, headers=alice.headers)
    assert response.status_code == 200, response.text
    assert response.json()["actions"][0]["config"]["body_template"] == template


async def test_text_postgresql_cannot_store_is_refused_with_nothing_written(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    body = copy.deepcopy(EXAMPLES[2])
    body["actions"][1]["config"]["body_template"]["note"] = "nul\u0000here"
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert "cannot be stored" in response.json()["error"]["message"]
    assert row_counts(migrated_url) == (0, 0, 0)


LOOSE = {
    "chain_id true": ({**SIMPLE, "chain_id": True}, "chain_id"),
    "chain_id as text": ({**SIMPLE, "chain_id": "84532"}, "chain_id"),
    "chain_id 1.0": ({**SIMPLE, "chain_id": 84532.0}, "chain_id"),
    "enabled 0": ({**SIMPLE, "enabled": 0}, "enabled"),
    "is_stateful 'false'": ({**SIMPLE, "is_stateful": "false"}, "is_stateful"),
    "priority true": (
        {**SIMPLE, "actions": [{**WEBHOOK, "priority": True}]},
        "actions[0].priority",
    ),
    "timeout_ms as text": (
        {**SIMPLE, "actions": [{**WEBHOOK, "config": {**WEBHOOK["config"], "timeout_ms": "5000"}}]},
        "actions[0].config",
    ),
}


@pytest.mark.parametrize("case", LOOSE, ids=list(LOOSE))
async def test_booleans_and_integers_are_not_coerced(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    body, field = LOOSE[case]
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    assert row_counts(migrated_url) == (0, 0, 0)


@pytest.mark.parametrize(
    ("query", "field"),
    [({"enabled": "0"}, "enabled"), ({"enabled": "yes"}, "enabled"), ({"limit": "2.0"}, "limit"),
     ({"chain_id": "+1"}, "chain_id")],
)  # fmt: skip
async def test_trigger_list_parameters_are_strict(
    api: ApiClient, alice: Account, query: dict[str, str], field: str
) -> None:
    response = await api.get("/triggers", params=query, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [({"to_time": 0.5}, "to_time"), ({"from_time": "0.5"}, "from_time"),
     ({"from_block": True}, "from_block"), ({"limit": 10.0}, "limit"),
     ({"limit": 100_001}, "limit")],
)  # fmt: skip
async def test_backtest_bodies_are_strict(
    api: ApiClient, alice: Account, body: dict[str, Any], field: str
) -> None:
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()["id"]
    response = await api.post(f"/triggers/{trigger}/test", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field


async def test_a_backtest_compares_times_with_and_without_a_zone(
    api: ApiClient, alice: Account
) -> None:
    # A time without a zone is UTC; the other was compared with it as it came, and failed.
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()["id"]
    for body, status in [
        ({"from_time": "2026-03-02T00:00:00", "to_time": "2026-03-03T00:00:00Z"}, 200),
        ({"from_time": "2026-03-04T00:00:00", "to_time": "2026-03-03T00:00:00Z"}, 422),
    ]:
        response = await api.post(f"/triggers/{trigger}/test", json=body, headers=alice.headers)
        assert response.status_code == status, response.text
    assert "from_time is after to_time" in response.text


def nested(depth: int) -> Any:
    value: Any = "{{agent_id}}"
    for _ in range(depth):
        value = {"a": value}
    return value


def with_condition_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**SIMPLE, "conditions": [{**CONDITION, "config": config}]}


def with_webhook_config(**config: Any) -> dict[str, Any]:
    return {**SIMPLE, "actions": [{**WEBHOOK, "config": {**WEBHOOK["config"], **config}}]}


# Past pydantic's serializer (255 levels), short of the JSON parser's recursion limit.
TOO_DEEP = {
    "a condition's config": (with_condition_config({"x": nested(300)}), "conditions[0].config",
                             "x: nested more than"),
    "a body_template": (with_webhook_config(body_template=nested(300)), "actions[0].config",
                        "body_template: nested more than"),
    "a body_template deeper than stored JSON may be": (
        with_webhook_config(body_template=nested(40)), "actions[0].config",
        "body_template: nested more than"),
    "a large condition config": (with_condition_config({"x": ["x" * 1000] * 100}),
                                 "conditions[0].config", "larger than"),
}  # fmt: skip


@pytest.mark.parametrize("case", TOO_DEEP, ids=list(TOO_DEEP))
async def test_json_nested_too_deep_or_too_large_is_refused_with_nothing_written(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    body, field, message = TOO_DEEP[case]
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == field
    assert message in detail["message"]
    assert row_counts(migrated_url) == (0, 0, 0)
    assert (await api.get("/triggers", headers=alice.headers)).status_code == 200
    created = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    replaced = await api.put(f"/triggers/{created['id']}", json=body, headers=alice.headers)
    assert replaced.status_code == 422
    assert (await api.get(f"/triggers/{created['id']}", headers=alice.headers)).json() == {
        key: value for key, value in created.items() if key not in ("webhook_secret", "replay")
    }


async def test_json_too_deep_to_parse_is_refused_too(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    depth = 100_000  # past the recursion limit of the JSON parsers, client's and server's
    body = json.dumps(with_webhook_config(body_template="DEEP")).replace(
        '"DEEP"', '{"a":' * depth + '"x"' + "}" * depth
    )
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = await api.post("/triggers", content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "request body: JSON nested too deeply to be read"
    assert row_counts(migrated_url) == (0, 0, 0)


async def test_a_response_that_cannot_be_built_leaves_nothing_changed(
    migrated_url: str, pool: Pool, alice: Account, make_app: MakeApp
) -> None:
    """A row written before the API bounded nesting: a change whose response cannot be
    serialized is a 500 and is rolled back, not committed."""
    app = make_app(api_settings(migrated_url), pool)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
        body = {**SIMPLE, "enabled": False}
        trigger = (await client.post("/triggers", json=body, headers=alice.headers)).json()["id"]
        with psycopg.connect(migrated_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE trigger_conditions SET config = %s WHERE trigger_id = %s",
                [Jsonb({"x": nested(300)}), trigger],
            )
        enabled = await client.post(f"/triggers/{trigger}/enable", headers=alice.headers)
        assert enabled.status_code == 500
        with psycopg.connect(migrated_url) as conn:
            row = conn.execute("SELECT enabled FROM triggers WHERE id = %s", [trigger]).fetchone()
        assert row == (False,)


RATE_LIMIT: dict[str, Any] = {
    "condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
}  # fmt: skip
UNDELIVERABLE = {
    "a time_window of 5,000 digits": (
        {**SIMPLE, "is_stateful": True,
         "conditions": [{**RATE_LIMIT, "config": {"time_window": "9" * 5000 + "m"}}]},
        "conditions[0]", "is not a duration"),
    "a header value with a control character": (
        with_webhook_config(headers={"X-Note": "bell\x07"}), "actions[0].config",
        "the value of header 'X-Note' has a control character"),
    "a body_template past the encoder's limit": (
        with_webhook_config(body_template=nested(260)), "actions[0].config",
        "body_template: nested more than"),
}  # fmt: skip


@pytest.mark.parametrize("case", UNDELIVERABLE, ids=list(UNDELIVERABLE))
async def test_what_could_never_run_or_be_delivered_is_refused_naming_the_field(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    body, field, message = UNDELIVERABLE[case]
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text[:300]
    [detail] = response.json()["error"]["details"]
    assert (detail["field"], message in detail["message"]) == (field, True), detail
    assert row_counts(migrated_url) == (0, 0, 0)


# -- credentials in webhooks -------------------------------------------------------------

TOKEN = "Bearer sk-live-0123456789abcdef"
PASSWORD = "correct-horse-battery"


def credentials_trigger(base_url: str) -> dict[str, Any]:
    """A webhook to `base_url` with a header token and a password in its URL."""
    host = base_url.removeprefix("http://")
    config = {"url": f"http://hooks:{PASSWORD}@{host}/hook/{{{{agent_id}}}}",
              "headers": {"X-Api-Key": TOKEN, "X-Short": "tiny"},
              "body_template": {"agent": "{{agent_id}}"}}  # fmt: skip
    return {**SIMPLE, "actions": [{**WEBHOOK, "config": config}]}


def stored_actions(url: str) -> str:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT config::text FROM trigger_actions").fetchall()
    return "\n".join(row[0] for row in rows)


async def test_webhook_credentials_are_encrypted_masked_kept_and_delivered(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    with capture_logs() as logs:
        async with serve_asgi(sink := WebhookSink(secret="")) as base_url:
            host = base_url.removeprefix("http://")
            created = await api.post(
                "/triggers", json=credentials_trigger(base_url), headers=alice.headers
            )
            assert created.status_code == 201, created.text
            trigger = created.json()
            sink.secret = trigger["webhook_secret"]
            masked = {"url": f"http://hooks:********tery@{host}/hook/{{{{agent_id}}}}",
                      "headers": {"X-Api-Key": "********cdef", "X-Short": "********"},
                      "body_template": {"agent": "{{agent_id}}"}}  # fmt: skip
            assert trigger["actions"][0]["config"] == masked
            stored = stored_actions(migrated_url)
            assert TOKEN not in stored
            assert PASSWORD not in stored
            assert "tiny" not in stored
            read = (await api.get(f"/triggers/{trigger['id']}", headers=alice.headers)).json()
            assert read["actions"] == trigger["actions"]

            # The masks sent back (PUT of what GET showed, PATCH of other settings) keep
            # the stored values.
            again = {key: read[key] for key in ("name", "chain_id", "registry", "conditions")}
            again["conditions"] = [{k: v for k, v in c.items() if k != "id"}
                                   for c in again["conditions"]]  # fmt: skip
            replaced = await api.put(f"/triggers/{trigger['id']}",
                                     json={**again, "actions": read["actions"]},
                                     headers=alice.headers)  # fmt: skip
            assert replaced.status_code == 200, replaced.text
            patched = await api.patch(f"/triggers/{trigger['id']}", json={"name": "renamed"},
                                      headers=alice.headers)  # fmt: skip
            assert patched.status_code == 200, patched.text
            assert patched.json()["actions"] == trigger["actions"]
            assert TOKEN not in stored_actions(migrated_url)

            async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
                await queue_jobs(conn, trigger["id"], trigger["actions"][0]["id"], 1)
                async with running_worker(settings_for(migrated_url)):
                    await eventually(lambda: len(sink.processed) == 1)
    [request] = sink.received
    assert request.signature_ok
    assert request.path == "/hook/42"
    assert request.headers["x-api-key"] == TOKEN
    assert request.headers["x-short"] == "tiny"
    basic = base64.b64encode(f"hooks:{PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert TOKEN not in str(logs)
    assert PASSWORD not in str(logs)


async def test_a_pagerduty_routing_key_is_encrypted_masked_kept_and_delivered(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    routing_key = "R0UT1NGKEY0123456789abcdefABCDEF"
    action: dict[str, Any] = {"action_type": "pagerduty", "priority": 1,
              "config": {"routing_key": routing_key, "summary_template": "agent {{agent_id}}"}}  # fmt: skip
    async with serve_asgi(server := PagerDutyServer(routing_key)) as base_url:
        created = await api.post("/triggers", json={**SIMPLE, "actions": [action]},
                                 headers=alice.headers)  # fmt: skip
        assert created.status_code == 201, created.text
        trigger = created.json()
        assert trigger["actions"][0]["config"]["routing_key"] == "********CDEF"
        assert routing_key not in stored_actions(migrated_url)
        patched = await api.patch(f"/triggers/{trigger['id']}",
                                  json={"actions": trigger["actions"]}, headers=alice.headers)  # fmt: skip
        assert patched.status_code == 200, patched.text
        assert patched.json()["actions"] == trigger["actions"]
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            await queue_jobs(conn, trigger["id"], trigger["actions"][0]["id"], 1)
            settings = settings_for(migrated_url, pagerduty_events_url=base_url + EVENTS_PATH)
            async with running_worker(settings):
                await eventually(lambda: len(server.events) == 1)
    assert server.events[0]["payload"]["summary"] == "agent 42"
    unknown = {**action, "config": {**action["config"], "routing_key": "********CDEF"}}
    refused = await api.post("/triggers", json={**SIMPLE, "actions": [unknown]},
                             headers=alice.headers)  # fmt: skip
    assert refused.status_code == 422, refused.text
    assert "routing_key is masked" in refused.json()["error"]["message"]


MASKED_BUT_UNKNOWN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "a masked header on a new action": (
        lambda body: body["actions"][0]["config"]["headers"].update({"X-Api-Key": "********cdef"}),
        "header 'X-Api-Key'",
    ),
    "a masked URL password on a new action": (
        lambda body: body["actions"][0]["config"].update(
            url="https://hooks:********tery@hooks.example.com/", headers={}
        ),
        "url",
    ),
}


@pytest.mark.parametrize("case", MASKED_BUT_UNKNOWN, ids=list(MASKED_BUT_UNKNOWN))
async def test_a_mask_that_stands_for_no_stored_value_is_refused(
    api: ApiClient, alice: Account, migrated_url: str, case: str
) -> None:
    edit, message = MASKED_BUT_UNKNOWN[case]
    body = credentials_trigger("http://hooks.example.com")
    edit(body)
    response = await api.post("/triggers", json=body, headers=alice.headers)
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "actions[0].config"
    assert message in detail["message"]
    assert "is masked" in detail["message"]
    assert row_counts(migrated_url) == (0, 0, 0)


async def test_plain_text_credentials_of_older_rows_are_masked_then_encrypted_when_written(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    """Rows written before header values were encrypted (a migration cannot encrypt: the
    key is in the environment) keep working, are masked, and are encrypted when next
    written."""
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    legacy = credentials_trigger("http://hooks.example.com")["actions"][0]["config"]
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("UPDATE trigger_actions SET config = %s", [Jsonb(legacy)])
    assert TOKEN in stored_actions(migrated_url)
    shown = (await api.get(f"/triggers/{trigger['id']}", headers=alice.headers)).json()
    config = shown["actions"][0]["config"]
    assert config["headers"] == {"X-Api-Key": "********cdef", "X-Short": "********"}
    assert config["url"] == "http://hooks:********tery@hooks.example.com/hook/{{agent_id}}"
    patched = await api.patch(
        f"/triggers/{trigger['id']}", json={"description": "now sealed"}, headers=alice.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["actions"] == shown["actions"]
    stored = stored_actions(migrated_url)
    assert TOKEN not in stored
    assert PASSWORD not in stored


async def test_a_digest_is_refused_on_the_channels_that_cannot_send_one(
    api: ApiClient, alice: Account
) -> None:
    digest = {"window_seconds": 300, "max_items": 5}
    mcp = {"action_type": "mcp", "config": {"digest": digest}}
    refused = await api.post("/triggers", json={**SIMPLE, "actions": [mcp]},
                             headers=alice.headers)  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == [{
        "field": "actions[0].config",
        "message": "mcp action: digest: mcp actions cannot send digests (those that can:"
        " telegram, rest, slack, discord, email)",
    }]  # fmt: skip
    slack = {"action_type": "slack", "config": {"webhook_url": "https://hooks.slack.com/x",
                                                "text_template": "{{agent_id}}",
                                                "digest": digest}}  # fmt: skip
    created = await api.post("/triggers", json={**SIMPLE, "actions": [slack]},
                             headers=alice.headers)  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["actions"][0]["config"]["digest"] == digest
