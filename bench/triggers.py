"""Trigger evaluation throughput: 1,000 triggers over 100,000 events, in memory and through the
processor against PostgreSQL.

    .venv/bin/python -m bench.triggers --triggers 1000 --events 100000

The triggers mix the examples' shapes (per-agent score thresholds, tag filters, event-type
filters, EMA and rate limits) over 500 agents; the index narrows each event to its candidates.
The processor runs twice, each time from a fresh database: with the triggers older than the
events (most events fire one: the live case), and with the triggers made after them (every
event is history to them: their state moves, nothing fires; a first backfill's case). It
runs as Processor.run does: two connections (a batch planned on one while the other writes
the previous one), commits not waiting for the disk.
Clock: time.perf_counter around Processor.run_once, in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bench.common import report, throwaway_database
from erc8004_backend.triggers.conditions import parse_conditions
from erc8004_backend.triggers.index import CompiledTrigger, TriggerAction, TriggerIndex
from erc8004_backend.triggers.plan import Clock, batch_needs, plan_batch
from erc8004_backend.triggers.processor import ASYNC_COMMIT, Processor

CHAIN = 84532
AGENTS = 500
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def trigger_rows(count: int, rng: random.Random) -> list[list[dict[str, Any]]]:
    shapes: list[list[dict[str, Any]]] = []
    for i in range(count):
        agent = str(rng.randrange(AGENTS))
        kind = i % 5
        rows: list[dict[str, Any]]
        base = [
            {
                "condition_type": "agent_id_equals",
                "field": "agent_id",
                "operator": "=",
                "value": agent,
            }
        ]
        if kind == 0:
            rows = [
                *base,
                {
                    "condition_type": "score_threshold",
                    "field": "score",
                    "operator": "<",
                    "value": "60",
                },
            ]
        elif kind == 1:
            rows = [
                *base,
                {
                    "condition_type": "tag_equals",
                    "field": "tag1",
                    "operator": "=",
                    "value": "refund",
                },
            ]
        elif kind == 2:
            rows = [
                *base,
                {
                    "condition_type": "ema_threshold",
                    "field": "score",
                    "operator": "<",
                    "value": "70",
                    "config": {"window_size": 10},
                },
            ]
        elif kind == 3:
            rows = [
                *base,
                {
                    "condition_type": "score_threshold",
                    "field": "score",
                    "operator": "<",
                    "value": "50",
                },
                {
                    "condition_type": "rate_limit",
                    "field": "feedback_count",
                    "operator": ">",
                    "value": "10",
                    "config": {"time_window": "1h", "reset_on_trigger": True},
                },
            ]
        else:
            rows = [
                *base,
                {
                    "condition_type": "event_type_equals",
                    "field": "event_type",
                    "operator": "=",
                    "value": "FeedbackRevoked",
                },
            ]
        shapes.append(rows)
    return shapes  # fmt: skip


def events(count: int, rng: random.Random) -> list[dict[str, Any]]:
    """Rows of `events` as the processor reads them (the columns the triggers read)."""
    return [
        {"id": i + 1, "chain_id": CHAIN, "registry": "reputation",
         "event_type": "NewFeedback" if rng.random() < 0.9 else "FeedbackRevoked",
         "agent_id": Decimal(rng.randrange(AGENTS)), "score": Decimal(rng.randrange(101)),
         "tag1": rng.choice(["refund", "quality", ""]), "block_number": i // 10 + 1,
         "log_index": i % 10, "block_time": T0 + timedelta(seconds=i)}
        for i in range(count)
    ]  # fmt: skip


def evaluate_in_memory(
    shapes: list[list[dict[str, Any]]], stream: list[dict[str, Any]]
) -> dict[str, float]:
    """The processor's own evaluation (plan_batch) over the whole stream at once, from empty
    state: what the processor loop costs without PostgreSQL."""
    index = TriggerIndex(
        CompiledTrigger(str(i), f"t{i}", CHAIN, "reputation", parse_conditions(rows),
                        (TriggerAction(str(uuid.uuid4()), "rest", 1),))
        for i, rows in enumerate(shapes)
    )  # fmt: skip
    checks = sum(len(candidates) for _, candidates in batch_needs(stream, index).candidates)
    started = time.perf_counter()
    plan = plan_batch(stream, index, {}, Clock())
    elapsed = time.perf_counter() - started
    return {"checks": checks, "fired": len(plan.firings), "seconds": elapsed,
            "events_per_second": len(stream) / elapsed,
            "naive_checks_per_second": len(stream) * len(shapes) / elapsed}  # fmt: skip


async def processor_loop(
    url: str, shapes: list[list[dict[str, Any]]], stream: list[dict[str, Any]], *, history: bool
) -> dict[str, float]:
    """The processor over the stream; with `history`, the triggers fire only from after its
    last event (their fires_from), so every event is history to them."""
    fires_from = stream[-1]["block_time"] + timedelta(seconds=1) if history else T0
    # The processor's connection as Processor.run opens it (commits not waiting for the disk).
    async with await psycopg.AsyncConnection.connect(
        url, autocommit=True, options=ASYNC_COMMIT
    ) as conn:
        await conn.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES"
            " ('a11ce000-0000-4000-8000-000000000001', 'bench', 'b@example.com', 'x')"
        )
        for i, rows in enumerate(shapes):
            cursor = await conn.execute(
                "INSERT INTO triggers (user_id, name, chain_id, registry, fires_from) VALUES"
                " ('a11ce000-0000-4000-8000-000000000001', %s, %s, 'reputation', %s) RETURNING id",
                [f"t{i}", CHAIN, fires_from],
            )
            row = await cursor.fetchone()
            assert row is not None
            for position, condition in enumerate(rows):
                await conn.execute(
                    "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
                    " operator, value, config) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    [
                        row[0],
                        position,
                        condition["condition_type"],
                        condition["field"],
                        condition["operator"],
                        condition["value"],
                        json.dumps(condition.get("config", {})),
                    ],
                )
            await conn.execute(
                "INSERT INTO trigger_actions (trigger_id, action_type, config)"
                " VALUES (%s, 'rest', '{}')",
                [row[0]],
            )
        async with conn.cursor().copy(
            "COPY events (chain_id, registry, event_type, contract_address, block_number, block_hash,"
            " block_time, transaction_hash, transaction_index, log_index, agent_id, score, tag1)"
            " FROM STDIN"
        ) as copy:
            for e in stream:
                block_hash = f"0x{e['block_number']:064x}"
                await copy.write_row(
                    (
                        CHAIN,
                        "reputation",
                        e["event_type"],
                        "0x" + "aa" * 20,
                        e["block_number"],
                        block_hash,
                        e["block_time"],
                        block_hash,
                        0,
                        e["log_index"],
                        e["agent_id"],
                        e["score"],
                        e["tag1"],
                    )
                )
        last = stream[-1]["block_number"]
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, %s, %s)",
            [CHAIN, last, last],
        )
        processor = Processor(url)
        # As Processor.run: a second connection reads and plans each batch while the first
        # writes the previous one.
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as reader:
            started = time.perf_counter()
            processed = await processor.run_once(conn, reader)
            elapsed = time.perf_counter() - started
        cursor = await conn.execute("SELECT count(*) FROM action_jobs")
        jobs = (await cursor.fetchone() or (0,))[0]
    return {"events": processed, "jobs": jobs, "seconds": elapsed,
            "events_per_second": processed / elapsed}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.triggers", description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--json", type=Path, default=None, help="where to write the result")
    args = parser.parse_args(argv)
    rng = random.Random(8004)
    shapes, stream = trigger_rows(args.triggers, rng), events(args.events, rng)
    memory = evaluate_in_memory(shapes, stream)
    with throwaway_database() as url:
        loop = asyncio.run(processor_loop(url, shapes, stream, history=False))
    with throwaway_database() as url:
        history = asyncio.run(processor_loop(url, shapes, stream, history=True))
    fired = loop["jobs"] / max(loop["events"], 1)
    report("triggers", [
        ("triggers x events", f"{args.triggers:,} x {args.events:,}"),
        ("candidate checks (index)", f"{memory['checks']:,}"),
        ("in memory (plan_batch)", f"{memory['events_per_second']:,.0f} events/s"),
        ("  as event x trigger checks", f"{memory['naive_checks_per_second']:,.0f}/s"),
        ("processor, live", f"{loop['events_per_second']:,.0f} events/s "
                            f"({loop['jobs']:,} jobs: {fired:.0%} of the events fire)"),
        ("processor, history", f"{history['events_per_second']:,.0f} events/s "
                               f"({history['jobs']:,} jobs)"),
        ("clock", "time.perf_counter around Processor.run_once, in-process"),
    ], {"triggers": args.triggers, "events": args.events, "in_memory": memory,
        "processor": loop, "processor_history": history}, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
