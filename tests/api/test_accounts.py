"""Accounts through the real application: registration, login, /me, API keys."""

from __future__ import annotations

import psycopg

from erc8004_backend.api.auth import hash_password
from erc8004_backend.database.connection import connect
from erc8004_backend.database.migrations import Migrator, load_source
from tests.api.conftest import Account, ApiClient, api_client, make_account
from tests.api.test_triggers import SIMPLE
from tests.conftest import MIGRATIONS

ACCOUNT_KEYS_MIGRATION = 20250123000016


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

    changed_at = datetime.now(UTC)  # not alice's: these are refused before it matters
    expired = issue_access_token(
        alice.id, JWT_SECRET, timedelta(minutes=1), password_changed_at=changed_at,
        now=changed_at - timedelta(hours=1),
    ).token  # fmt: skip
    forged = issue_access_token(
        alice.id, "another-secret-another-secret-0000", timedelta(hours=1),
        password_changed_at=changed_at,
    )  # fmt: skip
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


async def test_a_password_needs_eight_characters_other_than_spaces(api: ApiClient) -> None:
    for password in [" " * 8, " " * 40, "abc    d", "\t\u3000abcdefg "]:
        body = {"username": "spacey", "email": "s@example.com", "password": password}
        response = await api.post("/auth/register", json=body)
        assert response.status_code == 422, repr(password)
        assert response.json()["error"]["message"] == (
            "password: must have at least 8 characters other than spaces"
        )
    body = {"username": "spacey", "email": "s@example.com", "password": " a b c d e f g h "}
    assert (await api.post("/auth/register", json=body)).status_code == 201


def fullwidth(text: str) -> str:
    """`text` in the fullwidth forms of its ASCII characters (U+FF01 to U+FF5E)."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


async def test_look_alike_usernames_and_emails_are_the_same_account(
    api: ApiClient, alice: Account
) -> None:
    # Fullwidth letters (NFKC) and other cases (case folding) name the same account.
    for username, email in [
        ("\uff41lice_t", "new1@example.com"),
        ("ALICE_T", "new2@example.com"),
        ("fresh1", "\uff41lice_t@example.com"),
        ("fresh2", fullwidth("ALICE_T@EXAMPLE.COM")),
    ]:
        response = await api.post(
            "/auth/register",
            json={"username": username, "email": email, "password": "long-enough"},
        )
        assert response.status_code == 409, (username, email, response.text)
    for login in ["\uff41lice_t", fullwidth("ALICE_T"), fullwidth("a") + "lice_t@example.com"]:
        response = await api.post(
            "/auth/login", json={"username": login, "password": "alice_t-password"}
        )
        assert response.status_code == 200, (login, response.text)
    # A new account's look-alike name is stored in its plain form.
    registered = await api.post(
        "/auth/register",
        json={
            "username": fullwidth("dana"),
            "email": fullwidth("D") + "ana@example.com",
            "password": "long-enough",
        },
    )
    assert registered.status_code == 201, registered.text
    assert (registered.json()["username"], registered.json()["email"]) == (
        "dana", "Dana@example.com",
    )  # fmt: skip


async def _a_trigger_a_key_and_a_result(api: ApiClient, account: Account, url: str) -> str:
    """What an account owns: a trigger with a queued job, an API key and a delivery result.
    Returns the key."""
    trigger = (await api.post("/triggers", json=SIMPLE, headers=account.headers)).json()
    key = (await api.post("/me/api-keys", json={"name": "k"}, headers=account.headers)).json()
    action_id = trigger["actions"][0]["id"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id,"
            " idempotency_key, payload) VALUES (%s, %s, 1, 84532, %s, '{}')",
            [trigger["id"], action_id, f"job-of-{account.username}"],
        )
        conn.execute(
            "INSERT INTO action_results (user_id, trigger_id, action_id, action_type, status)"
            " VALUES (%s, %s, %s, 'rest', 'failed')",
            [account.id, trigger["id"], action_id],
        )
    return str(key["key"])


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


async def test_changing_the_password_revokes_earlier_tokens_and_api_keys(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    key = await _a_trigger_a_key_and_a_result(api, alice, migrated_url)
    # A second session, signed in before the change, ends with it too.
    other_session = await api.post(
        "/auth/login", json={"username": "alice_t", "password": "alice_t-password"}
    )
    wrong = await api.post("/me/password", headers=alice.headers,
                           json={"old_password": "not-it-at-all", "new_password": "a new one!"})  # fmt: skip
    weak = await api.post("/me/password", headers=alice.headers,
                          json={"old_password": "alice_t-password", "new_password": " " * 9})  # fmt: skip
    assert wrong.status_code == 403
    assert wrong.json()["error"]["message"] == "old_password: wrong password"
    assert weak.status_code == 422
    assert weak.json()["error"]["details"][0]["field"] == "new_password"
    assert (await api.get("/me", headers=alice.headers)).status_code == 200

    changed = await api.post("/me/password", headers=alice.headers,
                             json={"old_password": "alice_t-password", "new_password": "a new one!"})  # fmt: skip

    assert changed.status_code == 200, changed.text
    assert changed.json()["api_keys_revoked"] == 1
    for credential in [alice.token, other_session.json()["access_token"], key]:
        refused = await api.get("/me", headers=_bearer(credential))
        assert refused.status_code == 401, credential
    refused = await api.get("/me", headers=alice.headers)
    assert refused.json()["error"]["message"] == (
        "the access token was issued before the password changed; log in again"
    )
    fresh = changed.json()["access_token"]
    assert (await api.get("/me", headers=_bearer(fresh))).json()["id"] == alice.id
    old_login = await api.post(
        "/auth/login", json={"username": "alice_t", "password": "alice_t-password"}
    )
    new_login = await api.post(
        "/auth/login", json={"username": "alice_t", "password": "a new one!"}
    )
    assert (old_login.status_code, new_login.status_code) == (401, 200)
    new_token = new_login.json()["access_token"]
    assert (await api.get("/me", headers=_bearer(new_token))).status_code == 200


async def test_changing_the_password_may_keep_the_api_keys(
    api: ApiClient, alice: Account, migrated_url: str
) -> None:
    key = await _a_trigger_a_key_and_a_result(api, alice, migrated_url)

    changed = await api.post("/me/password", headers=_bearer(key),
                             json={"old_password": "alice_t-password",
                                   "new_password": "a new one!", "keep_api_keys": True})  # fmt: skip

    assert changed.status_code == 200, changed.text
    assert changed.json()["api_keys_revoked"] == 0
    assert (await api.get("/me", headers=_bearer(key))).status_code == 200
    assert (await api.get("/me", headers=alice.headers)).status_code == 401


async def test_deleting_the_account_removes_everything_it_owns(
    api: ApiClient, alice: Account, bob: Account, migrated_url: str
) -> None:
    key = await _a_trigger_a_key_and_a_result(api, alice, migrated_url)
    await _a_trigger_a_key_and_a_result(api, bob, migrated_url)

    wrong = await api.request("DELETE", "/me", headers=alice.headers,
                              json={"password": "not-it-at-all"})  # fmt: skip
    missing = await api.request("DELETE", "/me", headers=alice.headers)
    assert wrong.status_code == 403
    assert wrong.json()["error"]["message"] == "password: wrong password"
    assert missing.status_code == 422

    deleted = await api.request("DELETE", "/me", headers=alice.headers,
                                json={"password": "alice_t-password"})  # fmt: skip

    assert deleted.status_code == 204, deleted.text
    with psycopg.connect(migrated_url) as conn:
        left = conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM triggers),"
            " (SELECT count(*) FROM trigger_actions), (SELECT count(*) FROM action_jobs),"
            " (SELECT count(*) FROM api_keys), (SELECT count(*) FROM action_results),"
            " (SELECT count(*) FROM action_results WHERE user_id = %(bob)s),"
            " (SELECT count(*) FROM triggers WHERE user_id = %(bob)s)",
            {"bob": bob.id},
        ).fetchone()
    assert left == (1, 1, 1, 1, 1, 1, 1, 1)  # bob's things only
    for credential in [alice.token, key]:
        assert (await api.get("/me", headers=_bearer(credential))).status_code == 401
    login = await api.post(
        "/auth/login", json={"username": "alice_t", "password": "alice_t-password"}
    )
    assert login.status_code == 401
    again = await make_account(api, "alice_t")  # the name is free again
    assert again.id != alice.id


async def test_the_migration_keeps_accounts_whose_emails_now_collide(
    database_url: str,
) -> None:
    """Accounts made before emails were normalized may collide once they are: the oldest keeps
    the email, the others keep their accounts and sign in with their usernames."""
    password_hash = hash_password("long-enough", rounds=4)
    with connect(database_url) as conn:
        migrator = Migrator(conn, load_source(MIGRATIONS))
        migrator.run(target_version=ACCOUNT_KEYS_MIGRATION - 1)
        for username, email, created_at in [
            ("first", "dana@example.com", "2025-01-01"),
            ("second", "\uff44ana@example.com", "2025-02-01"),  # a fullwidth d
            ("third", "\uff24\uff21\uff2e\uff21@example.com", "2025-03-01"),  # fullwidth DANA
            ("other", "eve@example.com", "2025-01-01"),
        ]:
            conn.execute(
                "INSERT INTO users (username, email, password_hash, created_at)"
                " VALUES (%s, %s, %s, %s)",
                [username, email, password_hash, created_at],
            )

        migrator.run()

        rows = conn.execute(
            "SELECT username, email_shadowed FROM users ORDER BY created_at, username"
        ).fetchall()
    assert rows == [("first", False), ("other", False), ("second", True), ("third", True)]
    async with api_client(database_url) as api:
        logins = {
            login: await api.post(
                "/auth/login", json={"username": login, "password": "long-enough"}
            )
            for login in ["dana@example.com", "\uff44ana@example.com", "second", "third"]
        }
        taken = await api.post("/auth/register", json={
            "username": "fourth", "email": "DANA@example.com", "password": "long-enough"})  # fmt: skip
        assert {login: r.status_code for login, r in logins.items()} == dict.fromkeys(logins, 200)
        assert taken.status_code == 409
        for login in ["dana@example.com", "\uff44ana@example.com"]:  # the oldest account's
            me = await api.get("/me", headers=_bearer(logins[login].json()["access_token"]))
            assert me.json()["username"] == "first"
