"""`erc8004 run` as a subprocess on an empty database, indexing a devnet, with a signed-in
API client: the harness of the whole-system tests (end to end, faults, load)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from erc8004_backend.chain.config import render_chain_table
from erc8004_backend.devnet import Devnet
from tests.cli.test_api_command import free_port
from tests.conftest import ROOT
from tests.support.delivery_targets import WebhookSink

Feedback = tuple[str, str, str, str]  # transaction, log index, agent, score


@dataclass
class System:
    client: httpx.AsyncClient
    headers: dict[str, str]

    async def every_feedback_to(self, url: str, **config: Any) -> str:
        """A trigger sending each NewFeedback to `url`; returns its webhook secret."""
        trigger = await self.client.post("/triggers", headers=self.headers, json={
            "name": "every feedback", "chain_id": 31337, "registry": "reputation",
            "conditions": [{"condition_type": "event_type_equals", "field": "event_type",
                            "operator": "=", "value": "NewFeedback"}],
            "actions": [{"action_type": "rest", "config": {
                "url": f"{url}/hook", "body_template": {
                    "agent": "{{agent_id}}", "score": "{{score}}", "tx": "{{transaction_hash}}",
                    "log": "{{log_index}}"}, **config}}],
        })  # fmt: skip
        assert trigger.status_code == 201, trigger.text
        secret: str = trigger.json()["webhook_secret"]
        return secret

    async def recorded(self, count: int, status: str | None = None) -> list[dict[str, Any]]:
        """The action results once `count` of them (with `status`) are recorded, or after
        10 s: a worker writes the attempts of its deliveries in batches, just after them."""
        results = await self.results()
        for _ in range(200):
            if sum(status is None or r["status"] == status for r in results) >= count:
                break
            await asyncio.sleep(0.05)
            results = await self.results()
        return results

    async def results(self) -> list[dict[str, Any]]:
        page = await self.client.get("/action-results", headers=self.headers,
                                     params={"limit": 500})  # fmt: skip
        items: list[dict[str, Any]] = page.json()["items"]
        return items


@contextlib.asynccontextmanager
async def running_system(
    devnet: Devnet, database_url: str, tmp_path: Path, *, confirmations: int = 0, **env: str
) -> AsyncIterator[System]:
    """`erc8004 run` on an empty database, indexing the devnet (events go to triggers
    `confirmations` blocks behind the head), with a signed-in user."""
    chains = tmp_path / "chains.toml"
    chains.write_text(render_chain_table(devnet.chain_config(confirmations=confirmations)))
    port = free_port()
    environment = {**os.environ, "DATABASE_URL": database_url,
                   "ERC8004_ALLOW_PRIVATE_URLS": "true",
                   "ERC8004_JWT_SECRET": "run-test-secret-run-test-secret-0123",
                   "ERC8004_CHAINS_FILE": str(tmp_path / "none.toml"), **env}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "run", "--chain", "devnet",
        "--chains-file", str(chains), "--port", str(port), cwd=ROOT, env=environment,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10
        ) as client:
            await wait_until_up(client, process)
            account = {"username": "runner", "email": "r@example.com", "password": "run-run-run"}
            assert (await client.post("/auth/register", json=account)).status_code == 201
            login = await client.post("/auth/login", json={"username": "runner",
                                                           "password": "run-run-run"})  # fmt: skip
            token = login.json()["access_token"]
            yield System(client, {"Authorization": f"Bearer {token}"})
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert "Traceback" not in stderr.decode()


def delivered(sink: WebhookSink) -> set[Feedback]:
    bodies = (json.loads(request.body) for request in sink.processed.values())
    return {(b["tx"], b["log"], b["agent"], b["score"]) for b in bodies}


async def wait_for(condition: Any, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


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


async def feedbacks_indexed(url: str, head: int) -> set[Feedback]:
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
            "SELECT transaction_hash, log_index::text, agent_id::text, trim_scale(score)::text FROM events"
            " WHERE event_type = 'NewFeedback'"
        ).fetchall()
    return {(row[0], row[1], row[2], row[3]) for row in rows}
