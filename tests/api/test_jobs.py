"""Delivery operations through the API: jobs by state in keyset pages, a job with its
attempts, and redelivery of one job or of a trigger's dead jobs, with fresh attempts and the
same idempotency key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from erc8004_backend.api.app import Pool
from tests.actions.test_worker import running_worker, settings_for
from tests.api.conftest import Account, ApiClient, api_client, make_account
from tests.api.test_triggers import SIMPLE
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import queue_jobs
from tests.support.waiting import eventually


async def jobs_in_every_state(api: ApiClient, alice: Account, url: str) -> tuple[str, list[int]]:
    """A trigger of alice's with six jobs: queued, retrying, running, delivered, dead, and
    cancelled, in that order of ids."""
    trigger = (await api.post("/triggers", json=SIMPLE, headers=alice.headers)).json()
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        ids = await queue_jobs(conn, trigger["id"], trigger["actions"][0]["id"], 6)
        states = [("queued", 0), ("queued", 2), ("running", 1), ("succeeded", 1), ("dead", 8),
                  ("cancelled", 0)]  # fmt: skip
        for job_id, (status, attempts) in zip(ids, states, strict=True):
            await conn.execute("UPDATE action_jobs SET status = %s, attempts = %s WHERE id = %s",
                               [status, attempts, job_id])  # fmt: skip
        await conn.execute(
            "INSERT INTO action_results (job_id, user_id, trigger_id, action_id, action_type,"
            " status, retry_count, error_message) VALUES (%s, %s, %s, %s, 'rest', 'failed', 7,"
            " 'HTTP 400')", [ids[4], alice.id, trigger["id"], trigger["actions"][0]["id"]],
        )  # fmt: skip
    return trigger["id"], ids


async def test_jobs_are_listed_by_state_in_pages(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    _, ids = await jobs_in_every_state(api, alice, migrated_url)
    states = {}
    for state in ("queued", "retrying", "running", "delivered", "dead", "cancelled"):
        page = (await api.get("/jobs", params={"state": state}, headers=alice.headers)).json()
        states[state] = [job["id"] for job in page["items"]]
    assert states == {"queued": [ids[0]], "retrying": [ids[1]], "running": [ids[2]],
                      "delivered": [ids[3]], "dead": [ids[4]], "cancelled": [ids[5]]}  # fmt: skip
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/jobs", params=params, headers=alice.headers)).json()
        seen += [job["id"] for job in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert seen == sorted(ids, reverse=True)
    bad = await api.get("/jobs", params={"state": "lost"}, headers=alice.headers)
    assert bad.status_code == 422


async def test_a_job_shows_its_attempts_and_a_dead_one_is_redelivered_with_its_key(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    _, ids = await jobs_in_every_state(api, alice, migrated_url)
    dead = (await api.get(f"/jobs/{ids[4]}", headers=alice.headers)).json()
    assert dead["state"] == "dead"
    assert [a["error_message"] for a in dead["attempts_made"]] == ["HTTP 400"]
    assert dead["payload"]["event"]["agent_id"] == "42"
    again = await api.post(f"/jobs/{ids[4]}/redeliver", headers=alice.headers)
    assert again.status_code == 200, again.text
    assert again.json() == {"jobs": [ids[4]]}
    queued = (await api.get(f"/jobs/{ids[4]}", headers=alice.headers)).json()
    assert (queued["state"], queued["attempts"]) == ("queued", 0)
    assert queued["idempotency_key"] == dead["idempotency_key"]
    for unfinished in (ids[0], ids[2], ids[5]):  # queued, running, cancelled
        refused = await api.post(f"/jobs/{unfinished}/redeliver", headers=alice.headers)
        assert refused.status_code == 409, refused.text
    missing = await api.post("/jobs/999999/redeliver", headers=alice.headers)
    assert missing.status_code == 404


async def test_a_triggers_dead_jobs_of_a_time_range_are_redelivered(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    trigger, ids = await jobs_in_every_state(api, alice, migrated_url)
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    none = await api.post(f"/triggers/{trigger}/jobs/redeliver", json={"from_time": later},
                          headers=alice.headers)  # fmt: skip
    assert none.json() == {"jobs": []}
    every = await api.post(f"/triggers/{trigger}/jobs/redeliver", headers=alice.headers)
    assert every.json() == {"jobs": [ids[4]]}  # the dead one only
    backwards = await api.post(f"/triggers/{trigger}/jobs/redeliver", headers=alice.headers,
                               json={"from_time": later, "to_time": "2020-01-01T00:00:00Z"})  # fmt: skip
    assert backwards.status_code == 422


async def test_a_test_delivery_reaches_the_target_now_and_is_recorded(
    migrated_url: str, pool: Pool
) -> None:
    async with (
        serve_asgi(sink := WebhookSink(secret="")) as url,
        api_client(migrated_url, pool, allow_private_urls=True) as api,
    ):
        alice = await make_account(api, "alice_t")
        body = {**SIMPLE, "actions": [{"action_type": "rest", "priority": 1,
                                       "config": {"url": url}}]}  # fmt: skip
        created = (await api.post("/triggers", json=body, headers=alice.headers)).json()
        sink.secret = created["webhook_secret"]
        action = created["actions"][0]["id"]
        answer = await api.post(f"/triggers/{created['id']}/actions/{action}/test",
                                headers=alice.headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
        outcome = answer.json()
        assert (outcome["status"], outcome["error"]) == ("success", None)
        [received] = sink.received
        assert received.signature_ok
        assert received.json()["test"] is True
        assert received.json()["event"]["tag1"] == "test"
        recorded = await api.get(f"/action-results/{outcome['result_id']}",
                                 headers=alice.headers)  # fmt: skip
        assert recorded.json()["response_data"]["test"] is True
        # A target that refuses: the outcome says so, as a job's attempt would.
        sink.fail_next(1, 400)
        refused = (await api.post(f"/triggers/{created['id']}/actions/{action}/test",
                                  headers=alice.headers)).json()  # fmt: skip
        assert refused["status"] == "failed"
        assert refused["error"] == f"{url} answered HTTP 400"
        assert refused["retryable"] is False


async def test_a_test_delivery_keeps_the_address_guard(api: ApiClient, alice: Account) -> None:
    body = {**SIMPLE, "actions": [{"action_type": "rest", "priority": 1,
                                   "config": {"url": "http://127.0.0.1:9/hook"}}]}  # fmt: skip
    created = (await api.post("/triggers", json=body, headers=alice.headers)).json()
    action = created["actions"][0]["id"]
    outcome = (await api.post(f"/triggers/{created['id']}/actions/{action}/test",
                              headers=alice.headers)).json()  # fmt: skip
    assert outcome["status"] == "failed"
    assert outcome["error"].startswith(
        "refused to send to http://127.0.0.1:9: 127.0.0.1 is a loopback address"
    )


async def test_digested_firings_name_their_digest_which_is_redelivered_whole(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        action = {"action_type": "rest",
                  "config": {"url": url, "digest": {"window_seconds": 60}}}  # fmt: skip
        created = await api.post("/triggers", json={**SIMPLE, "actions": [action]},
                                 headers=alice.headers)  # fmt: skip
        trigger = created.json()
        sink.secret = trigger["webhook_secret"]
        async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
            firings = await queue_jobs(conn, trigger["id"], trigger["actions"][0]["id"], 2)
            await conn.execute("UPDATE action_jobs SET created_at = now() - interval '1 hour'")
            async with running_worker(settings_for(migrated_url)):
                await eventually(lambda: sink.processed, timeout=20, what="the digest")
                page = (await api.get("/jobs", params={"state": "digested"},
                                      headers=alice.headers)).json()  # fmt: skip
                assert sorted(job["id"] for job in page["items"]) == firings
                (digest_id,) = {job["digest_job_id"] for job in page["items"]}
                refused = await api.post(f"/jobs/{firings[0]}/redeliver", headers=alice.headers)
                assert refused.status_code == 409
                assert refused.json()["error"]["message"] == (
                    f"job {firings[0]} is digested: only delivered and dead jobs are"
                    f" redelivered (it went in digest job {digest_id}: redeliver that)"
                )
                again = await api.post(f"/jobs/{digest_id}/redeliver", headers=alice.headers)
                assert again.json() == {"jobs": [digest_id]}
                await eventually(lambda: len(sink.received) == 2, timeout=20, what="again")
    first, second = sink.received
    assert first.key == second.key
    assert first.json() == second.json()  # the same firings, as frozen
    assert [item["event_id"] for item in first.json()["items"]] == [1, 2]
