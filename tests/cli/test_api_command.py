"""`erc8004 api` as an operator runs it: a real uvicorn process on loopback, the seed's
users logging in, readiness following the migrations, SIGTERM ending it."""

from __future__ import annotations

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from erc8004_backend.cli.api import is_loopback
from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS, Settings
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
        dashboard = httpx.get(f"http://127.0.0.1:{port}/")
        assert dashboard.status_code == 200
        assert "erc8004-backend dashboard" in dashboard.text
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
    assert f"dashboard on http://127.0.0.1:{port}/" in stderr
    assert "Traceback" not in stderr


def _development_key_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a deployment that kept the default (public) token key."""
    unset = {"ERC8004_TOKEN_KEYS", "ERC8004_ALLOW_DEV_KEY", "DATABASE_URL"}
    env = {k: v for k, v in os.environ.items() if k not in unset}
    return {**env, "DATABASE_URL": database_url, **extra}


@pytest.mark.parametrize("command", ["api", "run"])
def test_the_development_key_is_refused_on_a_public_address(
    migrated_url: str, command: str
) -> None:
    args = [command, "--host", "0.0.0.0", "--port", str(free_port())]  # noqa: S104
    if command == "run":
        args += ["--chain", "devnet"]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "erc8004_backend", *args],
            cwd=ROOT, env=_development_key_env(migrated_url), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    except subprocess.TimeoutExpired as running:
        raise AssertionError(f"erc8004 {command} started: {running.stderr!r}") from None
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert (
        "refusing to listen on 0.0.0.0 with the public development key in ERC8004_TOKEN_KEYS:"
        " anyone can decrypt the MCP tokens and webhook secrets it protects. Set"
        " ERC8004_TOKEN_KEYS to a key of your own (see the README), listen on a loopback"
        " address, or set ERC8004_ALLOW_DEV_KEY=true" in message
    )


class StderrLines:
    """A process's stderr lines as they come (read by a thread)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


def api_is_healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/health").status_code == 200
    except httpx.ConnectError:
        return False


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["api", "--host", "0.0.0.0"], {"ERC8004_ALLOW_DEV_KEY": "true"}),  # noqa: S104
        (["api"], {}),
        (["worker"], {}),
    ],
)
async def test_the_development_key_is_a_warning_where_it_is_allowed(
    migrated_url: str, args: list[str], extra: dict[str, str]
) -> None:
    port = free_port()
    if args[0] == "api":
        args = [*args, "--port", str(port)]
    process = subprocess.Popen(
        [sys.executable, "-m", "erc8004_backend", *args],
        cwd=ROOT, env=_development_key_env(migrated_url, **extra), stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr = StderrLines(process)
    try:
        if args[0] == "api":
            await eventually(lambda: api_is_healthy(port), 30, what="the API serving")
        else:
            await eventually(lambda: "worker.started" in stderr.text(), 30, what="the worker")
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, stderr.text()
    warnings = [line for line in stderr.lines if "token_keys.development_key" in line]
    assert len(warnings) == 1, stderr.text()
    assert "ERC8004_TOKEN_KEYS holds the public development key" in warnings[0]


OWN_KEY_ENV = {"ERC8004_TOKEN_KEYS": "k1:" + base64.b64encode(bytes(range(32))).decode()}


def _api_args(command: str, port: int, tmp_path: Path) -> list[str]:
    """`api` or `run` on a port; `run` indexes a devnet at an address where nothing answers
    (its indexer retries in the background: the API is what these tests are about)."""
    args = [command, "--port", str(port)]
    if command == "run":
        chains = tmp_path / "chains.toml"
        chains.write_text('[chains.devnet]\nrpc_urls = ["http://127.0.0.1:9"]\n')
        args += ["--chain", "devnet", "--chains-file", str(chains)]
    return args


@pytest.mark.parametrize("command", ["api", "run"])
async def test_the_api_on_line_comes_once_the_port_is_bound(
    migrated_url: str, tmp_path: Path, command: str
) -> None:
    """`--port 0` takes any free port: the line names the port bound, and a connection made
    as soon as the line is read is accepted (the socket listens before the line is shown)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "erc8004_backend", *_api_args(command, 0, tmp_path)],
        cwd=ROOT, env=_development_key_env(migrated_url, **OWN_KEY_ENV),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr = StderrLines(process)
    try:
        line = await eventually(
            lambda: next((line for line in stderr.lines if "API on" in line), None),
            30,
            what="the API on line",
        )
        match = re.search(r"API on http://127\.0\.0\.1:(\d+)/api/v1", line)
        assert match, line
        port = int(match.group(1))
        assert port != 0
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # no retry
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=20).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0, stderr.text()


@pytest.mark.parametrize("command", ["api", "run"])
def test_a_port_in_use_is_one_clear_line_and_no_api_on_line(
    migrated_url: str, tmp_path: Path, command: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "erc8004_backend", *_api_args(command, port, tmp_path)],
            cwd=ROOT, env=_development_key_env(migrated_url, **OWN_KEY_ENV),
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another program"
        " listens there: choose another port, with --port)"
    ]
    assert result.stdout == ""


def test_which_keys_and_addresses_count() -> None:
    development = DEVELOPMENT_TOKEN_KEYS.partition(":")[2]
    own = base64.b64encode(bytes(range(32))).decode()
    for spec, uses in [
        (DEVELOPMENT_TOKEN_KEYS, True),
        (f"k1:{own},dev:{development}", True),  # still decrypts with it: still public
        (f"mine: {development}", True),
        (f"k1:{own}", False),
    ]:
        assert Settings(token_keys=spec).uses_development_key is uses, spec
    loopback = ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"]
    public = ["0.0.0.0", "::", "", "192.168.1.20", "example.com", "localhost.example.com"]  # noqa: S104
    assert [is_loopback(host) for host in loopback] == [True] * len(loopback)
    assert [is_loopback(host) for host in public] == [False] * len(public)
