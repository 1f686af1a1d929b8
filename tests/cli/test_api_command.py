"""`erc8004 api` as an operator runs it: a real uvicorn process on loopback, the seed's
users logging in, readiness following the migrations, SIGTERM ending it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from tests.cli.test_db_commands import erc8004
from tests.conftest import ROOT
from tests.support.waiting import eventually, free_port


async def test_the_api_serves_the_seed_users_and_reports_readiness(database_url: str) -> None:
    assert erc8004("db", "migrate", "run", database_url=database_url).returncode == 0
    assert erc8004("db", "seed", database_url=database_url).returncode == 0
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url,
           "ERC8004_JWT_SECRET": "cli-test-secret-cli-test-secret-0123"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "erc8004_backend", "api", "--port", str(port)],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"

    def healthy() -> bool:
        assert server.poll() is None, server.communicate()
        try:
            return httpx.get(f"{base}/health").status_code == 200
        except httpx.ConnectError:
            return False

    try:
        await eventually(healthy, 20, what="the API serving")
        assert httpx.get(f"{base}/ready").json()["status"] == "ready"
        login = httpx.post(f"{base}/auth/login",
                           json={"username": "alice", "password": "password123"})  # fmt: skip
        assert login.status_code == 200, login.text
        me = httpx.get(
            f"{base}/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
        assert me.json()["username"] == "alice"
        docs = httpx.get(f"{base}/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "erc8004-backend"
        # One migration reverted: the API says it is not ready, and why.
        assert erc8004("db", "migrate", "revert", database_url=database_url).returncode == 0
        not_ready = httpx.get(f"{base}/ready")
        assert not_ready.status_code == 503
        assert "pending" in not_ready.json()["error"]["message"]
    finally:
        server.send_signal(signal.SIGTERM)
        _, stderr = server.communicate(timeout=20)
    assert server.returncode == 0, stderr
    assert f"API on http://127.0.0.1:{port}/api/v1" in stderr
    assert "Traceback" not in stderr
