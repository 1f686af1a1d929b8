"""SIGKILL the processor at random points of thousands of events: after a restart, every
(event, trigger, action) that should have a job has exactly one, and stateful triggers end in
the state an uninterrupted run reaches (computed here by the read-only backtest). The
triggers include a group (any) holding a stateful condition and a change condition (whose
old values are read per batch), and a silence."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections import Counter
from typing import Any

import psycopg
import pytest

from erc8004_backend.triggers.backtest import backtest
from tests.conftest import ROOT
from tests.triggers.test_examples_end_to_end import Chain, create

pytestmark = [pytest.mark.timeout(240), pytest.mark.subprocess]

KILLS = 10
EVENTS = 3_000
USER = "a11ce000-0000-4000-8000-000000000001"
TRIGGERS: list[dict[str, Any]] = [
    {"name": "low score", "conditions": [
        {"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "30"}]},
    {"name": "ema", "conditions": [
        {"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "45",
         "config": {"window_size": 5}}]},
    {"name": "spam", "conditions": [
        {"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "20"},
        {"condition_type": "rate_limit", "field": "feedback_count", "operator": ">=", "value": "3",
         "config": {"time_window": "15m", "reset_on_trigger": True}}]},
    # A group: a very low score, or a burst (the window counts every feedback it sees).
    {"name": "low or burst", "conditions": [
        {"group_path": "any[0]", "condition_type": "score_threshold", "field": "score",
         "operator": "<", "value": "10"},
        {"group_path": "any[1]", "condition_type": "rate_limit", "field": "feedback_count",
         "operator": ">=", "value": "4", "config": {"time_window": "20m", "reset_on_trigger": True}}]},
    # A change condition: its old value read from the stored events in each batch.
    {"name": "uri changed", "registry": "identity", "conditions": [
        {"condition_type": "uri_changed", "field": "agent_uri", "operator": "!=", "value": ""}]},
    # A silence: an agent without feedback for 10 minutes (its job names the feedback that
    # started the silent period).
    {"name": "silent agent", "is_stateful": True, "conditions": [
        {"condition_type": "silence", "field": "silence", "operator": ">=", "value": "10m"}]},
]  # fmt: skip
URIS = ("ipfs://QmOne", "ipfs://QmTwo", "https://agent.example/card.json")


async def start_processor(url: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "erc8004_backend", "processor", "--batch-size", "40",
        "--poll-interval", "0.1", "--database-url", url, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


async def processed_to(conn: psycopg.AsyncConnection) -> int:
    cursor = await conn.execute("SELECT coalesce(max(block_number), 0) FROM processing_cursors")
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def test_sigkill_at_random_points_loses_and_duplicates_no_job(migrated_url: str) -> None:
    rng = random.Random(42)
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO users (id, username, email, password_hash)"
                           " VALUES (%s, 'alice', 'a@example.com', 'x')", [USER])  # fmt: skip
        ids = []
        for body in TRIGGERS:
            ids.append(await create(conn, {"registry": "reputation", **body, "chain_id": 84532,
                "actions": [{"action_type": "rest", "priority": 1, "config": {}},
                            {"action_type": "telegram", "priority": 2, "config": {}}]}))  # fmt: skip
        chain = Chain(conn, 84532)
        async with conn.transaction():
            for agent in range(5):
                await chain.emit("identity", "Registered", minutes=0.1 * (agent + 1),
                                 agent_id=agent, token_uri=URIS[0])  # fmt: skip
            for i in range(EVENTS):
                if i % 10 == 9:  # now and then an agent's URI is set, to a new one or not
                    await chain.emit("identity", "URIUpdated", minutes=i * 2,
                                     agent_id=rng.randrange(5), token_uri=rng.choice(URIS))  # fmt: skip
                    continue
                score = rng.randrange(101)
                await chain.emit("reputation", "NewFeedback", minutes=i * 2, agent_id=rng.randrange(5),
                                 score=score, value=score, value_decimals=0)  # fmt: skip

        kills = 0
        while kills < KILLS:
            before = await processed_to(conn)
            target = before + rng.randint(10, 150)
            process = await start_processor(migrated_url)
            while await processed_to(conn) < target and process.returncode is None:
                await asyncio.sleep(0.003)
            await asyncio.sleep(rng.uniform(0, 0.01))  # the processor does ~10k events/s
            process.send_signal(signal.SIGKILL)
            await process.wait()
            kills += 1
        last_block = chain.block
        assert await processed_to(conn) < last_block, "the kills should land during the work"

        final = await start_processor(migrated_url)
        while await processed_to(conn) < last_block:
            await asyncio.sleep(0.02)
        final.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(final.wait(), 10) == 0

        for trigger_id in ids:
            truth = await backtest(conn, trigger_id)
            assert truth.fired, "every trigger fires in this history"
            cursor = await conn.execute(
                "SELECT event_id FROM action_jobs WHERE trigger_id = %s", [trigger_id]
            )
            jobs = Counter(event_id for (event_id,) in await cursor.fetchall())
            assert set(jobs.values()) <= {2}, "one job per action, never two"
            assert sorted(jobs) == sorted(f.event_id or 0 for f in truth.fired)
            cursor = await conn.execute(
                "SELECT scope, state FROM trigger_state WHERE trigger_id = %s", [trigger_id]
            )
            assert dict(await cursor.fetchall()) == truth.states
