"""`erc8004 webhook-sink` in a subprocess: it prints each webhook with its signature verdict
and body, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from erc8004_backend.actions.rest import signature
from tests.conftest import ROOT
from tests.support.waiting import eventually, free_port


def sink_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "erc8004_backend", "webhook-sink", *args]


def listening(port: int, process: subprocess.Popen[str]) -> bool:
    assert process.poll() is None, process.communicate()
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


async def test_the_sink_prints_each_webhook_with_its_verdict(tmp_path: Path) -> None:
    port = free_port()
    out = (tmp_path / "out").open("w+")
    process = subprocess.Popen(
        sink_command("--port", str(port), "--secret", "whsec_s"), cwd=ROOT, text=True,
        stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "60"},  # long lines are not wrapped anyway
    )  # fmt: skip
    try:
        await eventually(lambda: listening(port, process), 30, what="the sink listening")
        body = json.dumps({"text": "Agent 0 got 30 from " + "0x" + "b0b".rjust(40, "0")}).encode()
        now = int(time.time())
        headers = {"Idempotency-Key": "key-1", "X-ERC8004-Timestamp": str(now),
                   "X-ERC8004-Signature": signature("whsec_s", now, body)}  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        answer = httpx.post(f"{url}/hooks/a", content=body, headers=headers)
        assert (answer.status_code, answer.json()) == (200, {"ok": True})
        httpx.post(f"{url}/hooks/a", content=body, headers=headers)  # a repeat
        httpx.post(f"{url}/other?x=1", content=b"not json",
                   headers={**headers, "Idempotency-Key": "2", "X-ERC8004-Replay": "true"})  # fmt: skip
        await eventually(lambda: "not json" in (tmp_path / "out").read_text(),
                         what="the third webhook printed")  # fmt: skip
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out.seek(0)
    printed = out.read()
    assert process.returncode == 0, stderr
    assert (
        f"webhook sink on http://127.0.0.1:{port}/ (any path); checking signatures with 1 secret"
        in stderr
    )
    assert "webhook sink stopped (3 webhooks received)" in stderr
    lines = printed.splitlines()
    assert lines[0].endswith("  POST /hooks/a  signature valid  Idempotency-Key key-1"), printed
    assert json.loads("\n".join(lines[1:4])) == json.loads(body)  # pretty, one key per line
    assert lines[4].endswith("Idempotency-Key key-1  (a repeat: this key came before)")
    assert (
        "  POST /other?x=1  signature INVALID: the signature matches none of the secrets"
        in lines[8]
    )
    assert lines[8].endswith("Idempotency-Key 2  (a replay: history asked for)")
    assert lines[9] == "not json"


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            sink_command("--port", str(port)), cwd=ROOT, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port" in result.stderr
