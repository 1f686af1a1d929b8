"""Two users: every route that takes the id of something a user owns is tried by the other
user with the owner's id. None reveals or changes it: 404, as for an id that does not exist.

The routes come from the OpenAPI schema, so a new route with an id is checked here or the
test fails until it is listed.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql

from tests.api.conftest import Account, ApiClient
from tests.api.test_triggers import SIMPLE

# Path parameters naming something owned by one user.
OWNED = {"trigger_id", "key_id", "result_id", "lens_name", "replay_id", "job_id", "action_id"}
# Routes with ids of things that belong to nobody in particular, and why.
NOT_OWNED = {
    "/api/v1/events/{event_id}": "events are public chain data, visible to every user",
    **{
        f"/api/v1/agents/{{chain_id}}/{{agent_id}}{part}": "agents are public chain data"
        for part in ("", "/feedback", "/reputation", "/validations", "/history")
    },
    "/api/v1/agents/{chain_id}/{agent_id}/mcp-token": "an agent's token is guarded by its"
    " owner's signature (tests/api/test_tokens.py), not by the account that set it",
    "/api/v1/agents/{chain_id}/{agent_id}/mcp-token/challenge": "any user may ask for a"
    " challenge; it is bound to that user (tests/api/test_tokens.py)",
}
BODIES: dict[str, Any] = {
    "PUT /api/v1/triggers/{trigger_id}": SIMPLE,
    "PATCH /api/v1/triggers/{trigger_id}": {"name": "stolen"},
    "POST /api/v1/triggers/{trigger_id}/test": {},
    "POST /api/v1/triggers/{trigger_id}/replays": {"from_block": 1},
    "PUT /api/v1/me/lenses/{lens_name}": {"lens": {"vote": "latest"}},
}


async def alices_things(api: ApiClient, alice: Account, url: str) -> dict[str, str]:
    trigger = (await api.post("/triggers", json={**SIMPLE, "replay_from": {"from_block": 1}},
                              headers=alice.headers)).json()  # fmt: skip
    key = (await api.post("/me/api-keys", json={"name": "k"}, headers=alice.headers)).json()
    lens = {"name": "alices-lens", "lens": {"min_feedback": 3}}
    assert (await api.post("/me/lenses", json=lens, headers=alice.headers)).status_code == 201
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO action_results (user_id, trigger_id, action_id, action_type, status,"
            " error_message) VALUES (%s, %s, %s, 'rest', 'failed', 'alice only') RETURNING id",
            [alice.id, trigger["id"], trigger["actions"][0]["id"]],
        ).fetchone()
        job = conn.execute(
            "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id,"
            " idempotency_key, payload, status) VALUES (%s, %s, 1, 84532, 'alices-key', '{}',"
            " 'dead') RETURNING id", [trigger["id"], trigger["actions"][0]["id"]],
        ).fetchone()  # fmt: skip
    assert row is not None
    assert job is not None
    return {"trigger_id": trigger["id"], "key_id": key["id"], "result_id": str(row[0]),
            "lens_name": "alices-lens", "replay_id": str(trigger["replay"]["id"]),
            "job_id": str(job[0]), "action_id": trigger["actions"][0]["id"]}  # fmt: skip


async def snapshot(url: str) -> list[Any]:
    tables = ("triggers", "trigger_conditions", "trigger_actions", "api_keys", "action_results",
              "reputation_lenses", "trigger_replays", "action_jobs",
              "account_alert_actions")  # fmt: skip
    with psycopg.connect(url) as conn:
        return [
            conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table))
            ).fetchall()
            for table in tables
        ]


async def test_no_route_reveals_or_changes_another_users_things(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    ids = await alices_things(api, alice, migrated_url)
    before = await snapshot(migrated_url)
    schema = (await api.get("/openapi.json")).json()
    tried = []
    for path, operations in schema["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", path))
        if not names:
            continue
        if path in NOT_OWNED:
            continue
        assert names <= OWNED, f"{path}: say in this test who owns {names - OWNED}"
        for method in operations:
            concrete = path.removeprefix("/api/v1")
            for name in names:
                concrete = concrete.replace("{" + name + "}", ids[name])
            body = BODIES.get(f"{method.upper()} {path}")
            response = await api.request(method.upper(), concrete, json=body, headers=bob.headers)
            assert response.status_code == 404, (method, path, response.text)
            assert "alice only" not in response.text
            # The owner still reaches it (so the 404 above was about the user, not the id).
            if method == "get":
                own = await api.get(concrete, headers=alice.headers)
                assert own.status_code == 200, (path, own.text)
            tried.append(f"{method.upper()} {path}")
    assert await snapshot(migrated_url) == before
    assert {"GET /api/v1/triggers/{trigger_id}", "DELETE /api/v1/me/api-keys/{key_id}",
            "GET /api/v1/action-results/{result_id}", "PUT /api/v1/me/lenses/{lens_name}",
            "DELETE /api/v1/me/lenses/{lens_name}"} <= set(tried)  # fmt: skip
    # The delivery operations: what they would queue, send or replay is alice's.
    assert set(DELIVERY_OPERATIONS) <= set(tried), set(DELIVERY_OPERATIONS) - set(tried)
    assert len(tried) >= 14, tried
    # Lists show bob none of alice's things, nor filtered by her ids.
    for listing, params in [("/triggers", {}), ("/me/api-keys", {}), ("/action-results", {}),
                            ("/me/lenses", {}), ("/jobs", {}),
                            ("/jobs", {"trigger_id": ids["trigger_id"]}),
                            ("/jobs", {"action_id": ids["action_id"], "state": "dead"})]:  # fmt: skip
        page = (await api.get(listing, params=params, headers=bob.headers)).json()
        items = page["items"] if isinstance(page, dict) else page
        assert items == [], (listing, params)
    assert [job["id"] for job in (await api.get("/jobs", headers=alice.headers)).json()["items"]
            ] == [int(ids["job_id"])]  # fmt: skip


# Each of these reached with alice's ids by bob is a 404 that queues, sends and records
# nothing (the test above): redelivery of a job or of a trigger's dead jobs, a replay, a
# test delivery.
DELIVERY_OPERATIONS = (
    "POST /api/v1/jobs/{job_id}/redeliver",
    "POST /api/v1/triggers/{trigger_id}/jobs/redeliver",
    "POST /api/v1/triggers/{trigger_id}/replays",
    "POST /api/v1/triggers/{trigger_id}/actions/{action_id}/test",
)


async def test_a_test_delivery_of_anothers_action_through_ones_own_trigger_is_a_404(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    """Mixed ids: bob's own trigger with alice's action, and alice's trigger with bob's."""
    ids = await alices_things(api, alice, migrated_url)
    bobs = (await api.post("/triggers", json=SIMPLE, headers=bob.headers)).json()
    before = await snapshot(migrated_url)
    for trigger, action, who in [(bobs["id"], ids["action_id"], bob),
                                 (ids["trigger_id"], bobs["actions"][0]["id"], bob),
                                 (bobs["id"], ids["action_id"], alice)]:  # fmt: skip
        response = await api.post(f"/triggers/{trigger}/actions/{action}/test",
                                  headers=who.headers)  # fmt: skip
        assert response.status_code == 404, response.text
        assert response.json()["error"]["message"] == "action not found"
    assert await snapshot(migrated_url) == before


async def test_an_alert_action_is_its_users_alone(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    """/me/alert-action names no id: each user reaches their own only. Bob's reads and
    deletes find none of alice's; his own alert action leaves hers as it was."""
    alert = {
        "action_type": "rest",
        "config": {"url": "https://alice.example/alert", "headers": {"X-Key": "alice only secret"}},
    }
    assert (await api.put("/me/alert-action", json=alert, headers=alice.headers)).status_code == 200
    before = await snapshot(migrated_url)
    for method in ("GET", "DELETE"):
        response = await api.request(method, "/me/alert-action", headers=bob.headers)
        assert response.status_code == 404, (method, response.text)
        assert "alice" not in response.text
    assert await snapshot(migrated_url) == before
    bobs = {"action_type": "email", "config": {"to": ["bob@example.com"]}}
    assert (await api.put("/me/alert-action", json=bobs, headers=bob.headers)).status_code == 200
    alices = (await api.get("/me/alert-action", headers=alice.headers)).json()
    assert alices["config"]["url"] == "https://alice.example/alert"
    assert (await api.get("/me/alert-action", headers=bob.headers)).json()["action_type"] == "email"
