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
from tests.conftest import ROOT
from tests.support.delivery_targets import WebhookSink
from tests.support.waiting import eventually, free_port

Feedback = tuple[str, str, str, str]  # transaction, log index, agent, score


@dataclass
class System:
    client: httpx.AsyncClient
    headers: dict[str, str]
    log: list[str]  # erc8004 run's log lines so far

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The log entries (JSON: stderr is no terminal) of `event` so far."""
        entries = (json.loads(line) for line in self.log if line.startswith("{"))
        return [entry for entry in entries if entry.get("event") == event]

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
        """The action results once `count` of them (with `status`) are recorded: a worker
        writes the attempts of its deliveries in batches, just after them."""

        async def enough() -> list[dict[str, Any]] | None:
            results = await self.results()
            matching = sum(status is None or r["status"] == status for r in results)
            return results if matching >= count else None

        return await eventually(enough, what=f"{count} action results ({status or 'any'})")

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
                   "ERC8004_JWT_SECRET": "run-test-secret-run-test-secret-0123", **env}  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "run", "--chain", "devnet",
        "--chains-file", str(chains), "--port", str(port), cwd=ROOT, env=environment,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    log: list[str] = []
    # Read as it comes, so that tests can wait for a log entry (and a full pipe never
    # blocks the process).
    reading = asyncio.create_task(_read_lines(process, log))
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}/api/v1", timeout=10
        ) as client:
            await eventually(lambda: serving(client, process), 20, what="erc8004 run serving")
            account = {"username": "runner", "email": "r@example.com", "password": "run-run-run"}
            assert (await client.post("/auth/register", json=account)).status_code == 201
            login = await client.post("/auth/login", json={"username": "runner",
                                                           "password": "run-run-run"})  # fmt: skip
            token = login.json()["access_token"]
            try:
                yield System(client, {"Authorization": f"Bearer {token}"}, log)
            except BaseException:
                # The test failed: what `erc8004 run` said, for pytest's captured output.
                print("\n".join(["-- erc8004 run's last log lines --", *log[-200:]]))
                raise
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(process.wait(), reading), 30)
    stderr = "\n".join(log)
    assert process.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr


async def _read_lines(process: asyncio.subprocess.Process, lines: list[str]) -> None:
    # In chunks, not readline(): a line with a long traceback may exceed the stream's limit.
    assert process.stderr is not None
    pending = b""
    while chunk := await process.stderr.read(1 << 16):
        *complete, pending = (pending + chunk).split(b"\n")
        lines.extend(line.decode(errors="replace") for line in complete)
    if pending:
        lines.append(pending.decode(errors="replace"))


def delivered(sink: WebhookSink) -> set[Feedback]:
    bodies = (json.loads(request.body) for request in sink.processed.values())
    return {(b["tx"], b["log"], b["agent"], b["score"]) for b in bodies}


async def serving(client: httpx.AsyncClient, process: asyncio.subprocess.Process) -> bool:
    if process.returncode is not None:
        raise AssertionError("erc8004 run stopped before it served")
    try:
        return (await client.get("/ready")).status_code == 200
    except httpx.TransportError:
        return False


CHECKPOINT = {
    False: "SELECT block_number FROM checkpoints",
    True: "SELECT confirmed_block_number FROM checkpoints",
}


async def checkpoint_reaches(
    conn: psycopg.AsyncConnection, head: int, *, confirmed: bool, timeout: float = 20
) -> None:
    """Waits until the (one) chain's indexed, or confirmed, block is at least `head`."""

    async def reached() -> bool:
        cursor = await conn.execute(CHECKPOINT[confirmed])
        row = await cursor.fetchone()
        return bool(row and row[0] is not None and row[0] >= head)

    what = "confirming" if confirmed else "reaching"
    await eventually(reached, timeout, what=f"the indexer {what} block {head}")


async def feedbacks_indexed(url: str, head: int) -> set[Feedback]:
    """Every NewFeedback the chain emitted, once the indexer has confirmed the head."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await checkpoint_reaches(conn, head, confirmed=True)
        cursor = await conn.execute(
            "SELECT transaction_hash, log_index::text, agent_id::text, trim_scale(score)::text FROM events"
            " WHERE event_type = 'NewFeedback'"
        )
        rows = await cursor.fetchall()
    return {(row[0], row[1], row[2], row[3]) for row in rows}
