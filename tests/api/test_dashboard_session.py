"""The dashboard's HTTP side: its page and files with their security headers, and the
session cookie: set by POST /auth/session, HttpOnly and SameSite=Lax (Secure over HTTPS),
accepted in place of an Authorization header, and for a state-changing request only with the
CSRF header that matches it."""

from __future__ import annotations

import httpx

from erc8004_backend.actions.channels import CHANNELS
from erc8004_backend.api.app import Pool
from erc8004_backend.api.auth import csrf_token
from tests.api.conftest import JWT_SECRET, Account, ApiClient, api_client, make_account

SESSION = "/auth/session"


def page_client(api: ApiClient, base_url: str = "http://api.test") -> httpx.AsyncClient:
    """A client of the same application at its root (the dashboard's own paths)."""
    transport = api._transport
    return httpx.AsyncClient(transport=transport, base_url=base_url)


async def sign_in(api: ApiClient, account: Account) -> httpx.Response:
    response = await api.post(
        SESSION, json={"username": account.username, "password": f"{account.username}-password"}
    )
    assert response.status_code == 200, response.text
    return response


async def test_the_page_and_its_files_carry_the_security_headers(api: ApiClient) -> None:
    async with page_client(api) as client:
        page = await client.get("/")
        script = await client.get("/dashboard/app.js")
        chart = await client.get("/dashboard/vendor/chart.umd.min.js")
        missing = await client.get("/dashboard/nothing.js")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="dashboard/app.js">' in page.text
    # No inline script or style anywhere in the page: the policy would refuse them.
    assert "<script>" not in page.text
    assert "style=" not in page.text
    assert "<style" not in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "style-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == policy
    assert chart.status_code == 200
    assert b"Chart" in chart.content
    assert missing.status_code == 404


async def test_a_session_sets_an_httponly_cookie_and_a_csrf_token(
    api: ApiClient, alice: Account
) -> None:
    response = await sign_in(api, alice)
    assert response.json()["username"] == alice.username
    cookies = response.headers.get_list("set-cookie")
    session = next(cookie for cookie in cookies if cookie.startswith("erc8004_session="))
    csrf = next(cookie for cookie in cookies if cookie.startswith("erc8004_csrf="))
    assert "HttpOnly" in session
    assert "SameSite=lax" in session
    assert "Path=/" in session
    assert "Secure" not in session  # plain HTTP here
    assert "HttpOnly" not in csrf
    assert "SameSite=lax" in csrf
    token = api.cookies["erc8004_session"]
    assert api.cookies["erc8004_csrf"] == csrf_token(token, JWT_SECRET)


async def test_the_cookie_is_secure_over_https(migrated_url: str, pool: Pool) -> None:
    async with api_client(migrated_url, pool) as api:
        account = await make_account(api, "carol_t")
        api.base_url = httpx.URL("https://api.test/api/v1")
        response = await sign_in(api, account)
        api.base_url = httpx.URL("http://api.test/api/v1")
        # Behind a proxy that terminates TLS: the proxy says how the browser came.
        proxied = await api.post(
            SESSION,
            json={"username": account.username, "password": f"{account.username}-password"},
            headers={"X-Forwarded-Proto": "https"},
        )
    for answer in (response, proxied):
        cookies = answer.headers.get_list("set-cookie")
        assert all("Secure" in cookie for cookie in cookies), cookies


async def test_the_cookie_signs_in_reads_and_with_the_csrf_header_writes(
    api: ApiClient, alice: Account
) -> None:
    await sign_in(api, alice)
    me = await api.get("/me")
    assert me.status_code == 200
    assert me.json()["username"] == alice.username

    refused = await api.post("/me/api-keys", json={"name": "from a forged form"})
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["error"]["message"]
    wrong = await api.post("/me/api-keys", json={"name": "k"}, headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    made = await api.post(
        "/me/api-keys", json={"name": "k"}, headers={"X-CSRF-Token": api.cookies["erc8004_csrf"]}
    )
    assert made.status_code == 201, made.text
    # A request with an Authorization header is signed in by it, cookie or not: no CSRF.
    with_header = await api.post("/me/api-keys", json={"name": "k2"}, headers=alice.headers)
    assert with_header.status_code == 201


async def test_signing_out_removes_the_cookies(api: ApiClient, alice: Account) -> None:
    await sign_in(api, alice)
    out = await api.delete(SESSION)
    assert out.status_code == 204
    assert "erc8004_session" not in api.cookies
    assert (await api.get("/me")).status_code == 401


async def test_a_session_takes_a_new_token_after_a_password_change(
    api: ApiClient, alice: Account
) -> None:
    await sign_in(api, alice)
    changed = await api.post(
        "/me/password",
        json={"old_password": "alice_t-password", "new_password": "another long one"},
        headers={"X-CSRF-Token": api.cookies["erc8004_csrf"]},
    )
    assert changed.status_code == 200, changed.text
    assert (await api.get("/me")).status_code == 401  # the old session's token is void
    new_token = changed.json()["access_token"]
    adopted = await api.put(SESSION, headers={"Authorization": f"Bearer {new_token}"})
    assert adopted.status_code == 200, adopted.text
    assert (await api.get("/me")).status_code == 200
    # An API key is no session: not adopted, and not taken from the cookie.
    key = await api.post("/me/api-keys", json={"name": "k"},
                         headers={"Authorization": f"Bearer {new_token}"})  # fmt: skip
    refused = await api.put(SESSION, headers={"Authorization": f"Bearer {key.json()['key']}"})
    assert refused.status_code == 401
    api.cookies.set("erc8004_session", key.json()["key"])
    assert (await api.get("/me")).status_code == 401


async def test_delivery_counts_per_trigger(api: ApiClient, alice: Account, bob: Account) -> None:
    assert (await api.get("/jobs/counts", headers=alice.headers)).json()["triggers"] == []
    trigger = await api.post("/triggers", headers=alice.headers, json={
        "name": "t", "chain_id": 31337, "registry": "reputation",
        "actions": [{"action_type": "rest", "config": {"url": "http://127.0.0.1:9/hook"}}]})  # fmt: skip
    assert trigger.status_code == 201, trigger.text
    trigger_id, action_id = trigger.json()["id"], trigger.json()["actions"][0]["id"]
    for _ in range(2):  # refused: a private address
        test = await api.post(f"/triggers/{trigger_id}/actions/{action_id}/test",
                              headers=alice.headers)  # fmt: skip
        assert test.json()["status"] == "failed", test.text
    counts = await api.get("/jobs/counts", headers=alice.headers)
    assert counts.status_code == 200, counts.text
    assert counts.json()["triggers"] == [{"trigger_id": trigger_id, "succeeded": 0, "failed": 2}]
    assert (await api.get("/jobs/counts", headers=bob.headers)).json()["triggers"] == []
    later = await api.get("/jobs/counts", params={"since": "2999-01-01T00:00:00Z"},
                          headers=alice.headers)  # fmt: skip
    assert later.json()["triggers"] == []
    bad = await api.get("/jobs/counts", params={"since": "yesterday"}, headers=alice.headers)
    assert bad.status_code == 422


async def test_channels_list_each_action_type_with_its_config_schema(
    api: ApiClient, alice: Account
) -> None:
    response = await api.get("/channels", headers=alice.headers)
    assert response.status_code == 200, response.text
    channels = {channel["action_type"]: channel for channel in response.json()}
    assert list(channels) == list(CHANNELS)
    telegram = channels["telegram"]
    assert set(telegram["config_schema"]["required"]) == {"chat_id", "message_template"}
    assert telegram["template_keys"] == ["message_template"]
    assert "max_attempts" in channels["rest"]["config_schema"]["properties"]
    assert (await api.get("/channels")).status_code == 401
