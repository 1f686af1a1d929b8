"""Saved reputation lenses through the real application: a user's named lens definitions,
checked by the Lens model, seen and changed by their owner only."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.api.conftest import Account, ApiClient

AUDITOR = "0x" + "Ab" * 20
TRUSTED = {"min_feedback": 3, "min_agents": 2, "vote": "latest", "half_life": " 30 d "}
# TRUSTED as stored and served: normalized, every field present.
TRUSTED_SAVED = {
    "allowlist": None, "min_feedback": 3, "min_agents": 2, "vote": "latest",
    "half_life": "30d", "tag1": None, "tag2": None, "include_revoked": False, "explain_top": 5,
}  # fmt: skip


async def save(api: ApiClient, account: Account, name: str, lens: dict[str, Any]) -> Any:
    response = await api.post("/me/lenses", json={"name": name, "lens": lens},
                              headers=account.headers)  # fmt: skip
    assert response.status_code == 201, response.text
    return response.json()


def stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT user_id::text, name, definition, created_at, updated_at"
            " FROM reputation_lenses ORDER BY user_id, name"
        ).fetchall()


async def test_a_saved_lens_is_stored_checked_and_normalized(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    saved = await save(api, alice, "trusted-recent", TRUSTED)
    assert saved["name"] == "trusted-recent"
    assert saved["lens"] == TRUSTED_SAVED
    assert saved["created_at"] == saved["updated_at"]
    ((user_id, name, definition, created_at, _),) = stored(migrated_url)
    assert (user_id, name, definition) == (alice.id, "trusted-recent", TRUSTED_SAVED)
    assert created_at.isoformat().replace("+00:00", "Z")[:19] == saved["created_at"][:19]

    fetched = await api.get("/me/lenses/trusted-recent", headers=alice.headers)
    assert fetched.status_code == 200
    assert fetched.json() == saved

    auditors = await save(api, alice, "Auditors.v2", {"allowlist": [AUDITOR, AUDITOR.lower()]})
    assert auditors["lens"]["allowlist"] == [AUDITOR.lower()]
    listed = await api.get("/me/lenses", headers=alice.headers)
    assert listed.status_code == 200
    assert [lens["name"] for lens in listed.json()] == ["Auditors.v2", "trusted-recent"]


async def test_a_lens_it_cannot_run_is_refused_naming_the_field_and_nothing_is_written(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    cases = {
        "lens.half_life": {"name": "x", "lens": {"half_life": "1 week"}},
        "lens.allowlist[1]": {"name": "x", "lens": {"allowlist": [AUDITOR, "0xnope"]}},
        "lens.vote": {"name": "x", "lens": {"vote": "median"}},
        "lens.min_feedback": {"name": "x", "lens": {"min_feedback": "3"}},
        "lens.clients": {"name": "x", "lens": {"clients": [AUDITOR]}},
        "lens": {"name": "x"},
        "name": {"name": "../etc", "lens": {}},
        "owner": {"name": "x", "lens": {}, "owner": "bob"},
    }
    for field, body in cases.items():
        response = await api.post("/me/lenses", json=body, headers=alice.headers)
        assert response.status_code == 422, (field, response.text)
        error = response.json()["error"]
        assert [detail["field"] for detail in error["details"]] == [field], error
        assert error["message"].startswith(f"{field}: ")
    for name in ("-leading-dash", ".hidden", "a b", "x" * 65):
        response = await api.post("/me/lenses", json={"name": name, "lens": {}},
                                  headers=alice.headers)  # fmt: skip
        assert response.status_code == 422, name
        assert response.json()["error"]["details"][0]["field"] == "name"
    assert stored(migrated_url) == []


async def test_a_name_is_taken_once_per_user(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    await save(api, alice, "mine", {"vote": "average"})
    again = await api.post("/me/lenses", json={"name": "mine", "lens": {}}, headers=alice.headers)
    assert again.status_code == 409
    error = again.json()["error"]
    assert error["message"] == "name: you already have a lens named 'mine'"
    assert error["details"] == [
        {"field": "name", "message": "you already have a lens named 'mine'"}
    ]
    await save(api, bob, "mine", {"vote": "each"})  # another user's names are their own
    names = [(user_id, name) for user_id, name, *_ in stored(migrated_url)]
    assert sorted(names) == sorted([(alice.id, "mine"), (bob.id, "mine")])
    # Names are case-sensitive, as in the URL.
    await save(api, alice, "Mine", {})


async def test_an_account_keeps_at_most_a_hundred_lenses(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    with psycopg.connect(migrated_url) as conn:
        conn.execute(
            "INSERT INTO reputation_lenses (user_id, name, definition)"
            " SELECT %s, 'lens-' || n, %s FROM generate_series(1, 99) AS n",
            [alice.id, Jsonb({})],
        )
    await save(api, alice, "the-hundredth", {})
    response = await api.post("/me/lenses", json={"name": "one-more", "lens": {}},
                              headers=alice.headers)  # fmt: skip
    assert response.status_code == 409
    assert "100 saved lenses" in response.json()["error"]["message"]
    assert len(stored(migrated_url)) == 100
    deleted = await api.delete("/me/lenses/lens-1", headers=alice.headers)
    assert deleted.status_code == 204
    await save(api, alice, "one-more", {})


async def test_replacing_a_lens_writes_the_whole_definition(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    saved = await save(api, alice, "trusted", TRUSTED)
    response = await api.put("/me/lenses/trusted", json={"lens": {"tag1": "quality"}},
                             headers=alice.headers)  # fmt: skip
    assert response.status_code == 200, response.text
    replaced = response.json()
    # Fields left out are back to their defaults: a replacement, not a patch.
    assert replaced["lens"] == {**TRUSTED_SAVED, "min_feedback": 0, "min_agents": 0,
                                "vote": "each", "half_life": None, "tag1": "quality"}  # fmt: skip
    assert replaced["created_at"] == saved["created_at"]
    assert replaced["updated_at"] > saved["updated_at"]
    ((_, _, definition, created_at, updated_at),) = stored(migrated_url)
    assert definition == replaced["lens"]
    assert updated_at > created_at

    refused = await api.put("/me/lenses/trusted", json={"lens": {"explain_top": 1000}},
                            headers=alice.headers)  # fmt: skip
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "lens.explain_top"
    missing = await api.put("/me/lenses/nope", json={"lens": {}}, headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "lens 'nope' not found"
    assert [name for _, name, *_ in stored(migrated_url)] == ["trusted"]  # nothing created


async def test_deleting_a_lens(api: ApiClient, alice: Account) -> None:
    await save(api, alice, "short-lived", {})
    assert (await api.delete("/me/lenses/short-lived", headers=alice.headers)).status_code == 204
    assert (await api.get("/me/lenses/short-lived", headers=alice.headers)).status_code == 404
    again = await api.delete("/me/lenses/short-lived", headers=alice.headers)
    assert again.status_code == 404
    assert (await api.get("/me/lenses", headers=alice.headers)).json() == []


async def test_a_name_in_the_path_that_no_lens_can_have_is_refused(
    api: ApiClient, alice: Account
) -> None:
    for path in ("/me/lenses/-x", "/me/lenses/a%20b", "/me/lenses/" + "x" * 65):
        for method in ("GET", "DELETE"):
            response = await api.request(method, path, headers=alice.headers)
            assert response.status_code == 422, (method, path)
            assert response.json()["error"]["details"][0]["field"] == "lens_name"


async def test_a_user_sees_and_changes_only_their_own_lenses(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    await save(api, alice, "alices", TRUSTED)
    before = stored(migrated_url)
    assert (await api.get("/me/lenses", headers=bob.headers)).json() == []
    for method, body in (("GET", None), ("PUT", {"lens": {}}), ("DELETE", None)):
        response = await api.request(method, "/me/lenses/alices", json=body, headers=bob.headers)
        assert response.status_code == 404, (method, response.text)
    assert stored(migrated_url) == before
    without = await api.get("/me/lenses/alices")
    assert without.status_code == 401


async def test_deleting_the_account_deletes_its_lenses(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    await save(api, alice, "alices", {})
    await save(api, bob, "bobs", {})
    response = await api.request("DELETE", "/me", json={"password": "alice_t-password"},
                                 headers=alice.headers)  # fmt: skip
    assert response.status_code == 204
    assert [(user_id, name) for user_id, name, *_ in stored(migrated_url)] == [(bob.id, "bobs")]
