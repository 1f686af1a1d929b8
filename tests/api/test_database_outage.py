"""The API when its database connections die (PostgreSQL restarted) or the database cannot
be reached: pooled connections that died are replaced, not handed to requests, and while
the database is away requests get a 503 that says so, not a 500 with a traceback."""

from __future__ import annotations

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from erc8004_backend.api.app import Pool
from tests.api.conftest import Account, ApiClient, MakeApp, api_settings
from tests.support.waiting import free_port


async def test_connections_cut_by_the_server_are_replaced_before_use(
    api: ApiClient, alice: Account, migrated_url: str, pool: Pool
) -> None:
    await pool.resize(min_size=4, max_size=10)
    await pool.wait()
    assert (await api.get("/triggers", headers=alice.headers)).status_code == 200
    with psycopg.connect(migrated_url, autocommit=True) as admin:
        cut = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert cut is not None
    assert cut[0] >= 4  # every pooled connection is dead now
    for _ in range(12):
        response = await api.get("/triggers", headers=alice.headers)
        assert response.status_code == 200, response.text


async def test_an_unreachable_database_gets_a_503_not_a_500(make_app: MakeApp) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    pool: Pool = AsyncConnectionPool(
        url, min_size=1, open=False, timeout=0.5, kwargs={"row_factory": dict_row}
    )
    await pool.open(wait=False)
    try:
        app = make_app(api_settings(url), pool)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test/api/v1") as api:
            response = await api.post("/auth/login", json={"username": "u", "password": "p"})
    finally:
        await pool.close(timeout=0)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert "database" in error["message"]
    assert response.headers["retry-after"]
