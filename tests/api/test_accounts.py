"""Accounts through the real application: registration, login, /me, API keys."""

from __future__ import annotations

import psycopg

from tests.api.conftest import Account, ApiClient, make_account


async def test_register_login_and_me(api: ApiClient, migrated_url: str) -> None:
    account = await make_account(api, "carol")
    me = await api.get("/me", headers=account.headers)
    assert me.status_code == 200
    body = me.json()
    assert (body["id"], body["username"], body["email"], body["role"]) == (
        account.id, "carol", "carol@example.com", "user",
    )  # fmt: skip
    assert body["last_login_at"] is not None
    assert "password" not in me.text
    assert "hash" not in me.text
    with psycopg.connect(migrated_url) as conn:
        row = conn.execute("SELECT password_hash FROM users WHERE id = %s", [account.id]).fetchone()
    assert row is not None
    assert row[0].startswith("$2b$04$")


async def test_a_taken_username_or_email_is_a_conflict(api: ApiClient, alice: Account) -> None:
    for username, email in [("ALICE_T", "new@example.com"), ("newname", "Alice_T@example.com")]:
        response = await api.post(
            "/auth/register",
            json={"username": username, "email": email, "password": "long-enough"},
        )
        assert response.status_code == 409
        assert response.json()["error"]["message"] == "that username or email is already registered"


async def test_bad_registrations_name_the_field(api: ApiClient) -> None:
    cases = {
        "username": {"username": "a b", "email": "x@example.com", "password": "long-enough"},
        "email": {"username": "valid", "email": "no-at-sign", "password": "long-enough"},
        "password": {"username": "valid", "email": "x@example.com", "password": "short"},
        "extra": {"username": "valid", "email": "x@example.com", "password": "long-enough",
                  "role": "operator"},
    }  # fmt: skip
    for field, body in cases.items():
        response = await api.post("/auth/register", json=body)
        assert response.status_code == 422, field
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert error["details"][0]["field"] == (field if field != "extra" else "role")


async def test_wrong_passwords_and_unknown_users_look_the_same(
    api: ApiClient, alice: Account
) -> None:
    wrong = await api.post("/auth/login", json={"username": "alice_t", "password": "nope-nope"})
    unknown = await api.post("/auth/login", json={"username": "nobody", "password": "nope-nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()


async def test_login_by_email_in_any_case(api: ApiClient, alice: Account) -> None:
    response = await api.post(
        "/auth/login", json={"username": "ALICE_T@example.com", "password": "alice_t-password"}
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


async def test_inactive_users_are_refused(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET is_active = false WHERE id = %s", [alice.id])
    login = await api.post(
        "/auth/login", json={"username": "alice_t", "password": "alice_t-password"}
    )
    assert login.status_code == 403
    me = await api.get("/me", headers=alice.headers)  # an earlier token stops working too
    assert me.status_code == 403
    assert me.json()["error"]["message"] == "this account is deactivated"


async def test_missing_forged_and_expired_tokens(api: ApiClient, alice: Account) -> None:
    from datetime import UTC, datetime, timedelta

    from erc8004_backend.api.auth import issue_access_token
    from tests.api.conftest import JWT_SECRET

    expired = issue_access_token(
        alice.id, JWT_SECRET, timedelta(minutes=1), now=datetime.now(UTC) - timedelta(hours=1)
    ).token
    forged = issue_access_token(alice.id, "another-secret-another-secret-0000", timedelta(hours=1))
    cases = {
        None: "sign in",
        "garbage": "the access token is not valid",
        forged.token: "the access token is not valid",
        expired: "the access token has expired; log in again",
    }
    for token, message in cases.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await api.get("/me", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["message"].startswith(message)
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_api_keys_are_shown_once_work_and_can_be_revoked(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    created = await api.post("/me/api-keys", json={"name": "cron"}, headers=alice.headers)
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("ek_")
    assert created.json()["prefix"] == key[:10]
    with_key = {"Authorization": f"Bearer {key}"}
    assert (await api.get("/me", headers=with_key)).json()["id"] == alice.id
    listed = await api.get("/me/api-keys", headers=alice.headers)
    assert [k["name"] for k in listed.json()] == ["cron"]
    assert key not in listed.text
    with psycopg.connect(migrated_url) as conn:
        stored = conn.execute("SELECT key_hash, last_used_at FROM api_keys").fetchone()
    assert stored is not None
    assert key.encode() not in bytes(stored[0])
    assert stored[1] is not None
    revoked = await api.delete(f"/me/api-keys/{created.json()['id']}", headers=alice.headers)
    assert revoked.status_code == 204
    refused = await api.get("/me", headers=with_key)
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]


async def test_one_users_api_key_is_not_anothers(
    api: ApiClient, alice: Account, bob: Account
) -> None:
    created = await api.post("/me/api-keys", json={"name": "mine"}, headers=alice.headers)
    key_id = created.json()["id"]
    assert (await api.delete(f"/me/api-keys/{key_id}", headers=bob.headers)).status_code == 404
    assert (await api.get("/me/api-keys", headers=bob.headers)).json() == []
    still = await api.get("/me", headers={"Authorization": f"Bearer {created.json()['key']}"})
    assert still.status_code == 200


async def test_passwords_beyond_bcrypts_72_bytes_are_refused(api: ApiClient) -> None:
    body = {"username": "longpw", "email": "l@example.com", "password": "é" * 40}  # 80 bytes
    response = await api.post("/auth/register", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["message"] == "password: must be at most 72 bytes in UTF-8"
