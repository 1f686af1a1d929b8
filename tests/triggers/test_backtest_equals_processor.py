"""The backtest shows what the processor does: for random triggers (field, stateful and
summary conditions, flat or in trees of all / any / not groups, cooldowns, starts within the
history) over random reputation histories
in PostgreSQL, processed in batches of random sizes with the read model ahead of it (batch
by batch, or planned ahead on a second connection as Processor.run does), the processor
queues one job per action of exactly the firings the backtest lists, and leaves the state the
backtest reaches."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from erc8004_backend.triggers.backtest import backtest
from erc8004_backend.triggers.fields import format_value
from erc8004_backend.triggers.processor import (
    ChainMemory,
    load_trigger_index,
    process_batch,
    process_chain,
)
from tests.support.agent_events import ChainEvents
from tests.triggers.random_triggers import (
    T0,
    HistoryEvent,
    TriggerSpec,
    histories,
    trigger_specs,
)

USER = "a11ce000-0000-4000-8000-000000000001"
# A chain of its own for each example: the examples share one database, and the processor
# and the index keep each chain apart.
CHAINS = itertools.count(900_001)
STATEFUL = {"ema_threshold", "rate_limit"}


async def add_trigger(conn: psycopg.AsyncConnection, chain_id: int, spec: TriggerSpec) -> str:
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry, is_stateful, cooldown_seconds,"
        " fires_from) VALUES (%s, 'random', %s, 'reputation', true, %s, %s) RETURNING id::text",
        [USER, chain_id, spec.cooldown_seconds, spec.fires_from],
    )
    (trigger_id,) = await cursor.fetchone() or ("",)
    for position, row in enumerate(spec.conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
            " operator, value, config, group_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [trigger_id, position, row["condition_type"], row["field"], row["operator"],
             row["value"], json.dumps(row["config"]), row.get("group_path", "")],
        )  # fmt: skip
    for position in range(spec.actions):
        await conn.execute(
            "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
            " VALUES (%s, %s, 'rest', %s, '{}')",
            [trigger_id, position, position + 1],
        )
    return str(trigger_id)


def shown(computed: dict[str, Any]) -> dict[str, Any]:
    """Computed values as a job's payload carries them (numbers as their exact text)."""
    return {k: format_value(v) if isinstance(v, Decimal) else v for k, v in computed.items()}


async def check(
    url: str,
    specs: list[TriggerSpec],
    history: list[HistoryEvent],
    sizes: list[int],
    ahead: bool,
) -> None:
    chain_id = next(CHAINS)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO users (id, username, email, password_hash)"
            " VALUES (%s, 'alice', 'a@example.com', 'x') ON CONFLICT DO NOTHING",
            [USER],
        )
        ids = [await add_trigger(conn, chain_id, spec) for spec in specs]
        chain = ChainEvents(conn, chain_id, start=T0)
        for event in history:
            await chain.event(event.event_type, same_block=event.same_block, **event.columns)
        await chain.rebuild()  # the model of the whole history, ahead of the processor
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, %s, %s)",
            [chain_id, chain.block, chain.block],
        )
        index = await load_trigger_index(conn)
        if ahead:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as reader:
                done = await process_chain(conn, reader, chain_id, index, ChainMemory(),
                                           limit=sizes[0])  # fmt: skip
            assert done.events == len(history)
        for size in itertools.cycle(sizes):
            if not (await process_batch(conn, chain_id, index, limit=size)).events:
                break

        for trigger_id, spec in zip(ids, specs, strict=True):
            truth = await backtest(conn, trigger_id)
            cursor = await conn.execute(
                "SELECT e.block_number, e.log_index, j.payload -> 'computed', e.block_time"
                " FROM action_jobs j JOIN events e ON e.id = j.event_id"
                " WHERE j.trigger_id = %s ORDER BY e.block_number, e.log_index, j.priority",
                [trigger_id],
            )
            jobs = await cursor.fetchall()
            # What the examples covered (pytest --hypothesis-show-statistics).
            kinds = {row["condition_type"] for row in spec.conditions}
            hypothesis_event(f"fired: {bool(jobs)}")
            hypothesis_event(
                f"a summary condition fired: {bool(jobs) and 'reputation_threshold' in kinds}"
            )
            hypothesis_event(f"a stateful condition fired: {bool(jobs) and bool(kinds & STATEFUL)}")
            grouped = any(row.get("group_path") for row in spec.conditions)
            hypothesis_event(f"a trigger with groups fired: {bool(jobs) and grouped}")
            per_event = Counter((block, log_index) for block, log_index, *_ in jobs)
            assert set(per_event.values()) <= {spec.actions}, "one job per action, never two"
            queued = [(block, log_index, {k: v for k, v in computed.items()
                                          if k not in ("trigger_name", "trigger_id")})
                      for block, log_index, computed, _ in jobs[:: spec.actions]]  # fmt: skip
            expected = [(f.block_number, f.log_index, shown(f.computed)) for f in truth.fired
                        if f.block_time >= spec.fires_from]  # fmt: skip
            if spec.fires_from_minute is None or not spec.cooldown_seconds:
                # The backtest ignores the start; the processor keeps what follows it.
                assert queued == expected
            else:
                # A firing in history starts no cooldown, while the backtest's does: the two
                # part after the start. The processor's still keep the start and the cooldown.
                times = [time for *_, time in jobs[:: spec.actions]]
                assert all(time >= spec.fires_from for time in times)
                gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
                assert all(gap >= spec.cooldown_seconds for gap in gaps)
            cursor = await conn.execute(
                "SELECT scope, state FROM trigger_state WHERE trigger_id = %s", [trigger_id]
            )
            assert dict(await cursor.fetchall()) == truth.states
            if spec.fires_from_minute is None:
                cursor = await conn.execute(
                    "SELECT last_fired_at FROM triggers WHERE id = %s", [trigger_id]
                )
                last = truth.fired[-1].block_time if truth.fired else None
                assert await cursor.fetchone() == (last,)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(trigger_specs(summaries=True, groups=True), min_size=1, max_size=4),
    histories(min_size=10, max_size=40),
    st.lists(st.integers(1, 12), min_size=1, max_size=5),
    st.booleans(),
)
def test_the_processor_queues_what_the_backtest_shows(
    migrated_url: str,
    specs: list[TriggerSpec],
    history: list[HistoryEvent],
    sizes: list[int],
    ahead: bool,
) -> None:
    asyncio.run(check(migrated_url, specs, history, sizes, ahead))
