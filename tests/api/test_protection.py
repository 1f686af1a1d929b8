"""Rate limits, body size, CORS and the uniform error body, through the real application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from erc8004_backend.api.app import Pool
from erc8004_backend.api.server import listen, listening_url, serve_on
from tests.api.conftest import Account, ApiClient, MakeApp, api_settings, make_account


async def test_per_user_limit_answers_429_with_retry_after(
    api: ApiClient, migrated_url: str, pool: Pool, make_app: MakeApp
) -> None:
    account = await make_account(api, "ratey")
    app = make_app(api_settings(migrated_url, rate_limit_user="5/minute"), pool)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
        statuses = [(await client.get("/me", headers=account.headers)).status_code
                    for _ in range(7)]  # fmt: skip
        assert statuses == [200] * 5 + [429] * 2
        refused = await client.get("/me", headers=account.headers)
        assert refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another user is counted on their own.
        other = await make_account(client, "other")
        assert (await client.get("/me", headers=other.headers)).status_code == 200


async def test_per_address_and_login_limits(
    migrated_url: str, pool: Pool, make_app: MakeApp
) -> None:
    app = make_app(
        api_settings(migrated_url, rate_limit_ip="4/minute", rate_limit_login="2/minute"), pool
    )

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 50000))
        return httpx.AsyncClient(transport=transport, base_url="http://t/api/v1")

    async with client("198.51.100.1") as one, client("198.51.100.2") as two:
        assert [(await one.get("/health")).status_code for _ in range(5)] == [200] * 4 + [429]
        assert (await two.get("/health")).status_code == 200
        logins = [
            (await two.post("/auth/login", json={"username": "x", "password": "y"})).status_code
            for _ in range(3)
        ]
        assert logins == [401, 401, 429]


@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8", ""])
async def test_behind_a_trusted_proxy_each_client_is_limited_on_its_own(
    migrated_url: str, pool: Pool, make_app: MakeApp, trusted: str
) -> None:
    """Served as `erc8004 api` serves (uvicorn on a socket), behind a proxy on 127.0.0.1: with
    ERC8004_TRUSTED_PROXIES naming it, the address the proxy forwards is the client's;
    without, every client is the proxy, and one client's failed logins lock out the rest."""
    app = make_app(api_settings(migrated_url, rate_limit_login="2/minute"), pool)
    stop = asyncio.Event()
    listening = listen("127.0.0.1", 0)
    serving = asyncio.create_task(serve_on(app, listening, stop, trusted_proxies=trusted))
    base = f"{listening_url('127.0.0.1', listening)}/api/v1"
    try:
        async with httpx.AsyncClient(base_url=base) as proxy:

            async def login(client: str) -> int:
                response = await proxy.post("/auth/login", json={"username": "x", "password": "y"},
                                            headers={"X-Forwarded-For": client})  # fmt: skip
                return response.status_code

            assert [await login("198.51.100.7") for _ in range(3)] == [401, 401, 429]
            assert await login("198.51.100.8") == (401 if trusted else 429)
    finally:
        stop.set()
        await asyncio.wait_for(serving, 15)


async def test_large_bodies_are_refused_with_413(
    migrated_url: str, pool: Pool, api: ApiClient, make_app: MakeApp
) -> None:
    account = await make_account(api, "bigbody")
    app = make_app(api_settings(migrated_url, api_max_body_bytes=2048), pool)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
        body = {"name": "x" * 5000, "chain_id": 1, "registry": "identity", "actions": []}
        response = await client.post("/triggers", json=body, headers=account.headers)
        assert response.status_code == 413
        assert response.json()["error"]["message"] == "request body larger than 2048 bytes"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b" " * 512  # no Content-Length: counted as it arrives

        streamed = await client.post(
            "/triggers", content=chunks(),
            headers={**account.headers, "Content-Type": "application/json"},
        )  # fmt: skip
        assert streamed.status_code == 413


async def test_cors_allows_only_the_configured_origins(
    migrated_url: str, pool: Pool, make_app: MakeApp
) -> None:
    app = make_app(api_settings(migrated_url, cors_origins="https://app.example.com"), pool)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1") as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await client.options(
            "/triggers", headers={"Origin": "https://app.example.com", **preflight}
        )
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        other = await client.get("/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


async def test_errors_share_one_shape_and_never_show_internals(
    api: ApiClient, alice: Account
) -> None:
    cases = [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/health", 405, "method_not_allowed"),
        ("GET", "/triggers/not-a-uuid", 422, "invalid_request"),
        ("POST", "/triggers", 422, "invalid_request"),  # no body
    ]
    for method, path, status, code in cases:
        response = await api.request(method, path, headers=alice.headers)
        assert response.status_code == status, (path, response.text)
        error = response.json()["error"]
        assert (error["status"], error["code"]) == (status, code)
        assert isinstance(error["message"], str)
        assert error["message"]
        assert "Traceback" not in response.text
    malformed = await api.post(
        "/triggers",
        content=b"{not json",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 422
    assert "JSON" in malformed.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/triggers", "GET, POST"),
        ("/triggers/00000000-0000-4000-8000-000000000000", "DELETE, GET, PATCH, PUT"),
        ("/health", "GET"),
    ],
)
async def test_a_method_a_path_does_not_have_is_405_with_every_method_it_has(
    api: ApiClient, alice: Account, path: str, allowed: str
) -> None:
    for method in ("OPTIONS", "TRACE"):
        response = await api.request(method, path, headers=alice.headers)
        assert response.status_code == 405, response.text
        assert response.headers["allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"
