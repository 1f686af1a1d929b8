"""The real application on a throwaway migrated database, called in-process through httpx.
Each test gets the application's state afresh (see app_on); its routes are built once.

async def test_something(api: ApiClient, alice: Account) -> None:
    response = await api.get("/me", headers=alice.headers)
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from erc8004_backend.api.app import AppShape, Pool, attach_state, build_app, open_pool
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


# Applications built so far, by shape, that no test is using: building one (FastAPI makes
# every route's models) costs a few tenths of a second of CPU, attaching fresh state to one
# almost nothing.
_idle_apps: defaultdict[AppShape, list[FastAPI]] = defaultdict(list)


@contextlib.contextmanager
def app_on(settings: Settings, pool: Pool) -> Iterator[FastAPI]:
    """The application for `settings` on `pool`, with state of its own: new rate limits and
    metrics, as a new application has. Its routes and middleware are reused."""
    shape = AppShape.of(settings)
    app = _idle_apps[shape].pop() if _idle_apps[shape] else build_app(shape)
    attach_state(app, settings, pool)
    try:
        yield app
    finally:
        del app.state.api, app.state.metrics  # nothing of this test's reaches the next one
        _idle_apps[shape].append(app)


MakeApp = Callable[[Settings, Pool], FastAPI]


@pytest.fixture
def make_app() -> Iterator[MakeApp]:
    """make_app(settings, pool): what create_app(settings, pool=pool) makes, from app_on, for
    the rest of the test."""
    with contextlib.ExitStack() as apps:
        yield lambda settings, pool: apps.enter_context(app_on(settings, pool))


@contextlib.asynccontextmanager
async def api_client(
    url: str, pool: Pool | None = None, **overrides: object
) -> AsyncIterator[ApiClient]:
    """A client of the application on `url` (with its own pool unless given one), the
    settings changed by `overrides`."""
    async with contextlib.AsyncExitStack() as stack:
        if pool is None:
            pool = await stack.enter_async_context(open_pool(url))
        app = stack.enter_context(app_on(api_settings(url, **overrides), pool))
        yield await stack.enter_async_context(client_of(app))


def client_of(app: FastAPI) -> ApiClient:
    """A client calling `app` in-process."""
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test/api/v1")


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
