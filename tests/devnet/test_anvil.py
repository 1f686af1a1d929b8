"""Starting and stopping anvil."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from erc8004_backend.chain.config import DEVNET_CHAIN_ID
from erc8004_backend.devnet import AnvilNode, AnvilNotFoundError, AnvilStartError, start_anvil
from erc8004_backend.devnet.anvil import ANVIL_ENV, find_anvil
from erc8004_backend.errors import Erc8004Error
from tests.conftest import ROOT
from tests.support.devnet import require_anvil


async def test_node_answers_on_loopback_with_the_devnet_chain_id(anvil_node: AnvilNode) -> None:
    assert anvil_node.url == f"http://127.0.0.1:{anvil_node.port}"
    assert anvil_node.port > 0
    async with anvil_node.rpc() as rpc:
        assert await rpc.chain_id() == DEVNET_CHAIN_ID
        accounts = await rpc.call("eth_accounts")
    assert len(accounts) == 10
    assert anvil_node.running


@pytest.mark.devnet
async def test_process_is_gone_after_the_block() -> None:
    require_anvil()
    async with start_anvil(chain_id=4242, block_time=0.2) as node:
        url, process = node.url, node.process
        async with node.rpc() as rpc:
            assert await rpc.chain_id() == 4242
            first = await rpc.block_number()
    assert process.returncode is not None
    assert first >= 0
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})


# A process that starts anvil, says its pid, then waits to be killed.
STARTS_ANVIL = """
import asyncio
from erc8004_backend.devnet import start_anvil

async def main():
    async with start_anvil() as node:
        print("anvil pid", node.pid, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.devnet
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG)")
async def test_anvil_ends_with_a_process_killed_without_warning() -> None:
    """SIGKILL gives start_anvil no chance to stop it: anvil, in a session of its own,
    still ends with the process that started it."""
    require_anvil()
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STARTS_ANVIL, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert parent.stdout is not None
    line = b""
    while not line.startswith(b"anvil pid"):  # (its log lines come first)
        line = await asyncio.wait_for(parent.stdout.readline(), 30)
        assert line, "the process ended before it started anvil"
    anvil_pid = int(line.split()[-1])
    try:
        assert _alive(anvil_pid)
        parent.kill()
        await parent.wait()
        deadline = time.monotonic() + 10
        while _alive(anvil_pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not _alive(anvil_pid)
    finally:
        if _alive(anvil_pid):  # the test failed: leave no anvil behind
            os.kill(anvil_pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.devnet
async def test_a_port_in_use_is_a_clear_error() -> None:
    require_anvil()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AnvilStartError, match="exited"):
            async with start_anvil(port):
                pass


def test_missing_binary_says_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ANVIL_ENV, str(tmp_path / "no-anvil"))
    with pytest.raises(AnvilNotFoundError, match=ANVIL_ENV):
        find_anvil()
    monkeypatch.delenv(ANVIL_ENV)
    monkeypatch.setattr("erc8004_backend.devnet.anvil.PROJECT_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(AnvilNotFoundError, match="npm install"):
        find_anvil()
    assert issubclass(AnvilNotFoundError, Erc8004Error)


def test_env_var_names_the_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "anvil"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ANVIL_ENV, str(fake))
    assert find_anvil() == fake


def test_binary_found_in_node_modules_is_the_native_one() -> None:
    require_anvil()
    if os.environ.get(ANVIL_ENV):
        pytest.skip(f"{ANVIL_ENV} is set")
    found = find_anvil()
    assert found.name == "anvil"
    assert ".bin" not in found.parts  # not the Node.js wrapper
