"""`erc8004 run`: the whole system in one process, from an empty database to a signed
webhook for every feedback the devnet emitted, then a clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import psycopg

from erc8004_backend.chain.config import render_chain_table
from erc8004_backend.devnet import Devnet
from tests.cli.test_api_command import free_port
from tests.conftest import ROOT
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink


async def test_run_delivers_a_webhook_for_every_feedback_on_the_devnet(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    chains = tmp_path / "chains.toml"
    chains.write_text(render_chain_table(devnet.chain_config(confirmations=0)))
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "ERC8004_ALLOW_PRIVATE_URLS": "true",
           "ERC8004_JWT_SECRET": "run-test-secret-run-test-secret-0123",
           "ERC8004_CHAINS_FILE": str(tmp_path / "none.toml")}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "run", "--chain", "devnet",
        "--chains-file", str(chains), "--port", str(port), cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with (
            serve_asgi(sink := WebhookSink(secret="")) as sink_url,
            httpx.AsyncClient(base_url=api, timeout=10) as client,
        ):
            await wait_until_up(client, process)
            account = {"username": "runner", "email": "r@example.com", "password": "run-run-run"}
            assert (await client.post("/auth/register", json=account)).status_code == 201
            login = await client.post("/auth/login", json={"username": "runner",
                                                           "password": "run-run-run"})  # fmt: skip
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            trigger = await client.post("/triggers", headers=headers, json={
                "name": "every feedback", "chain_id": 31337, "registry": "reputation",
                "conditions": [{"condition_type": "event_type_equals", "field": "event_type",
                                "operator": "=", "value": "NewFeedback"}],
                "actions": [{"action_type": "rest", "config": {
                    "url": f"{sink_url}/hook", "body_template": {
                        "agent": "{{agent_id}}", "score": "{{score}}", "tx": "{{transaction_hash}}",
                        "log": "{{log_index}}"}}}],
            })  # fmt: skip
            assert trigger.status_code == 201, trigger.text
            sink.secret = trigger.json()["webhook_secret"]

            await devnet.activity.run(events=60)
            expected = await feedbacks_indexed(database_url, await devnet.rpc.block_number())
            assert expected, "the activity made no feedback"
            for _ in range(400):
                if len(sink.processed) >= len(expected):
                    break
                await asyncio.sleep(0.05)
            delivered = {(b["tx"], b["log"], b["agent"], b["score"]) for b in
                         (json.loads(r.body) for r in sink.processed.values())}  # fmt: skip
            assert delivered == expected
            assert not sink.repeats
            assert all(r.signature_ok for r in sink.received)
            results = (await client.get("/action-results", headers=headers,
                                        params={"limit": 500})).json()["items"]  # fmt: skip
            assert len(results) == len(expected)
            assert {r["status"] for r in results} == {"success"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "Traceback" not in stderr.decode()


async def wait_until_up(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> None:
    for _ in range(400):
        if process.returncode is not None:
            raise AssertionError("erc8004 run stopped before it served")
        try:
            if (await client.get("/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("erc8004 run did not become ready")


async def feedbacks_indexed(url: str, head: int) -> set[tuple[str, str, str, str]]:
    """Every NewFeedback the chain emitted, once the indexer has confirmed the head."""
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(400):
            row = conn.execute("SELECT confirmed_block_number FROM checkpoints").fetchone()
            if row and row[0] is not None and row[0] >= head:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the indexer did not reach block {head}")
        rows = conn.execute(
            "SELECT transaction_hash, log_index::text, agent_id::text, score::text FROM events"
            " WHERE event_type = 'NewFeedback'"
        ).fetchall()
    return {(row[0], row[1], row[2], row[3]) for row in rows}
