"""The real application on a throwaway migrated database, called in-process through httpx.

async def test_something(api: ApiClient, alice: Account) -> None:
    response = await api.get("/me", headers=alice.headers)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from erc8004_backend.api.app import Pool, create_app, open_pool
from erc8004_backend.config import Settings

ApiClient = httpx.AsyncClient
JWT_SECRET = "test-secret-test-secret-test-secret-0123"


@dataclass(frozen=True)
class Account:
    id: str
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def api_settings(url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": url,
        "jwt_secret": JWT_SECRET,
        "bcrypt_rounds": 4,  # the cheapest cost: tests make many accounts
        "rate_limit_user": "100000/minute",
        "rate_limit_ip": "100000/minute",
        "rate_limit_login": "100000/minute",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def pool(migrated_url: str) -> AsyncIterator[Pool]:
    the_pool = open_pool(migrated_url, min_size=1, max_size=10)
    await the_pool.open()
    yield the_pool
    await the_pool.close()


@contextlib.asynccontextmanager
async def api_client(
    url: str, pool: Pool | None = None, **overrides: object
) -> AsyncIterator[ApiClient]:
    """A client of the application on `url` (with its own pool unless given one), the
    settings changed by `overrides`."""
    app = create_app(api_settings(url, **overrides), pool=pool)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://api.test/api/v1") as client,
    ):
        yield client


@pytest.fixture
async def api(migrated_url: str, pool: Pool) -> AsyncIterator[ApiClient]:
    async with api_client(migrated_url, pool) as client:
        yield client


async def make_account(api: ApiClient, username: str) -> Account:
    password = f"{username}-password"
    response = await api.post(
        "/auth/register",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    assert response.status_code == 201, response.text
    login = await api.post("/auth/login", json={"username": username, "password": password})
    assert login.status_code == 200, login.text
    return Account(response.json()["id"], username, login.json()["access_token"])


@pytest.fixture
async def alice(api: ApiClient) -> Account:
    return await make_account(api, "alice_t")


@pytest.fixture
async def bob(api: ApiClient) -> Account:
    return await make_account(api, "bob_t")
