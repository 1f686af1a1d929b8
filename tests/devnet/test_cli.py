"""`erc8004 devnet` in a subprocess, without a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from erc8004_backend.chain.config import DEVNET, load_chains
from tests.support.devnet import require_anvil
from tests.support.waiting import eventually, free_port

pytestmark = [pytest.mark.devnet, pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[2]


def devnet_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "erc8004_backend", "devnet", *args]


def test_devnet_emits_events_writes_its_config_and_exits(tmp_path: Path) -> None:
    require_anvil()
    port = free_port()
    config = tmp_path / "conf" / "devnet.toml"
    result = subprocess.run(
        devnet_command(
            "--port", str(port), "--events", "20", "--rate", "0", "--config-out", str(config)
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "ERC8004_DATA_DIR": str(tmp_path / "data")},
    )
    assert result.returncode == 0, result.stderr
    assert f"http://127.0.0.1:{port}" in result.stdout
    assert DEVNET["identity"].lower() in result.stdout
    assert str(config) in result.stdout
    assert "emitted 20 events" in result.stdout
    chain = load_chains([config])["devnet"]
    assert chain.enabled
    assert chain.rpc_urls == [f"http://127.0.0.1:{port}"]
    assert chain.identity == DEVNET["identity"].lower()
    assert chain.start_block == 1
    # Without a terminal, logs are JSON lines.
    events = [json.loads(line)["event"] for line in result.stderr.splitlines() if line]
    assert "devnet.deployed" in events
    assert "anvil.stopped" in events


async def test_devnet_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    require_anvil()
    port = free_port()
    process = subprocess.Popen(
        devnet_command(
            "--port", str(port), "--rate", "5", "--config-out", str(tmp_path / "devnet.toml")
        ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        await eventually((tmp_path / "devnet.toml").exists, 30, what="the devnet's config")
        await asyncio.sleep(0.5)  # its activity runs a moment
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "devnet stopped" in stdout
    assert '"anvil.stopped"' in stderr
