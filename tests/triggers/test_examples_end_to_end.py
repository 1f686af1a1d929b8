"""The seven triggers of trigger-examples.md, from event rows to action jobs through the
processor, each with events that should and should not fire it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, LiteralString

import psycopg
import pytest

from erc8004_backend.api.triggers import GROUP_EXAMPLES, TEMPLATE_EXAMPLES, TRIGGER_EXAMPLES
from erc8004_backend.triggers.processor import Processor, load_trigger_index, process_batch
from tests.conftest import ROOT

EXAMPLES_DOCUMENT = ROOT / "docs" / "triggers.md"
USER = "a11ce000-0000-4000-8000-000000000001"
V1 = "0x1111111111111111111111111111111111111111"


def example_triggers() -> list[dict[str, Any]]:
    """The request bodies of the examples, as the API's schema shows them; docs/triggers.md
    must show exactly these in its Examples section. A copy: callers adapt them."""
    bodies = [copy.deepcopy(example["value"]) for example in TRIGGER_EXAMPLES.values()]
    text = EXAMPLES_DOCUMENT.read_text(encoding="utf-8").split("\n## Examples\n", 1)[1]
    blocks = [block.split("```", 1)[0] for block in text.split("```json")[1:]]
    assert [json.loads(block) for block in blocks] == bodies, "docs/triggers.md differs"
    return bodies


def template_example() -> dict[str, Any]:
    """The body of docs/triggers.md's template example (filters, explorer links), as the
    API's schema shows it beside the seven."""
    body: dict[str, Any] = copy.deepcopy(TEMPLATE_EXAMPLES["formatted-messages"]["value"])
    text = EXAMPLES_DOCUMENT.read_text(encoding="utf-8")
    section = text.split("\n## Templates\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(block) == body, "docs/triggers.md's template example differs"
    return body


def group_example() -> dict[str, Any]:
    """The body of docs/triggers.md's example of groups (all / any / not), as the API's
    schema shows it beside the seven."""
    body: dict[str, Any] = copy.deepcopy(GROUP_EXAMPLES["grouped-conditions"]["value"])
    text = EXAMPLES_DOCUMENT.read_text(encoding="utf-8")
    section = text.split("\n### Groups\n", 1)[1].split("\n### ", 1)[0]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    assert json.loads(block) == body, "docs/triggers.md's example of groups differs"
    return body


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        await connection.execute("INSERT INTO users (id, username, email, password_hash)"
                                 " VALUES (%s, 'alice', 'a@example.com', 'x')", [USER])  # fmt: skip
        yield connection


async def create(conn: psycopg.AsyncConnection, body: dict[str, Any]) -> str:
    # One transaction, as the API writes a trigger: the processor never sees half of one.
    async with conn.transaction():
        cursor = await conn.execute(
            "INSERT INTO triggers (user_id, name, chain_id, registry, is_stateful)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id::text",
            [
                USER,
                body["name"],
                body["chain_id"],
                body["registry"],
                body.get("is_stateful", False),
            ],
        )
        row = await cursor.fetchone()
        assert row is not None
        for position, c in enumerate(body["conditions"]):
            await conn.execute(
                "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field, operator,"
                " value, config, group_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [row[0], position, c["condition_type"], c["field"], c["operator"], c["value"],
                 json.dumps(c.get("config", {})), c.get("group_path", "")],
            )  # fmt: skip
        for position, a in enumerate(body["actions"]):
            await conn.execute(
                "INSERT INTO trigger_actions (trigger_id, position, action_type, priority, config)"
                " VALUES (%s, %s, %s, %s, %s)",
                [row[0], position, a["action_type"], a["priority"], json.dumps(a["config"])],
            )
        return str(row[0])


class Chain:
    """Event rows for one chain, numbered as a chain numbers them. Block `n` is `n` minutes
    (or the `minutes` given) after the chain was made: its events are new to the triggers
    made before them (a trigger fires only for events from its creation on)."""

    def __init__(self, conn: psycopg.AsyncConnection, chain_id: int) -> None:
        self.conn, self.chain_id, self.block = conn, chain_id, 0
        self.started = datetime.now(UTC).replace(microsecond=0)

    async def emit(
        self, registry: str, event_type: str, *, minutes: float = 0, **fields: Any
    ) -> int:
        self.block += 1
        columns = ["chain_id", "registry", "event_type", "contract_address", "block_number",
                   "block_hash", "block_time", "transaction_hash", "transaction_index", "log_index",
                   *fields]  # fmt: skip
        block_hash = f"0x{self.chain_id:08x}{self.block:056x}"
        values = [self.chain_id, registry, event_type, "0x" + "aa" * 20, self.block, block_hash,
                  self.started + timedelta(minutes=minutes or self.block), block_hash, 0, 0, *fields.values()]  # fmt: skip
        await self.conn.execute(
            f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(values))})",
            values,
        )
        await self.conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, %s, %s) ON CONFLICT (chain_id) DO UPDATE SET"
            " block_number = EXCLUDED.block_number, confirmed_block_number = EXCLUDED.block_number",
            [self.chain_id, self.block, self.block],
        )
        return self.block


async def fired_blocks(
    conn: psycopg.AsyncConnection, trigger_id: str
) -> list[tuple[int, str, int]]:
    """(block, action type, priority) of each job of the trigger."""
    cursor = await conn.execute(
        "SELECT e.block_number, a.action_type, j.priority FROM action_jobs j"
        " JOIN events e ON e.id = j.event_id JOIN trigger_actions a ON a.id = j.action_id"
        " WHERE j.trigger_id = %s ORDER BY e.block_number, j.priority", [trigger_id],
    )  # fmt: skip
    return list(await cursor.fetchall())


async def process(conn: psycopg.AsyncConnection, *chains: int) -> None:
    index = await load_trigger_index(conn)
    for chain_id in chains:
        while (await process_batch(conn, chain_id, index)).events:
            pass


async def test_the_seven_examples_fire_for_exactly_their_events(
    conn: psycopg.AsyncConnection,
) -> None:
    examples = example_triggers()
    assert len(examples) == 7
    # The stateful ones (5, 6) are created after the first events are processed: they then
    # see only their own sequences, as the examples describe them.
    ids = {i: await create(conn, body) for i, body in enumerate(examples) if i not in (4, 5)}
    base, amoy = Chain(conn, 84532), Chain(conn, 80002)
    expected: dict[int, list[tuple[int, str, int]]] = {i: [] for i in range(7)}

    # 1. Low score for agent 42 (3 and 7 also see these as agent-42 feedback).
    hit = await base.emit("reputation", "NewFeedback", agent_id=42, score=45, value=45,
                          value_decimals=0, tag1="quality", file_uri=None)  # fmt: skip
    expected[0].append((hit, "telegram", 1))
    await base.emit("reputation", "NewFeedback", agent_id=43, score=45, value=45, value_decimals=0)
    await base.emit("reputation", "NewFeedback", agent_id=42, score=60, value=60,
                    value_decimals=0, tag1="quality")  # fmt: skip
    # 2. Registrations, not MetadataSet or Transfer.
    hit = await base.emit("identity", "Registered", agent_id=0, owner=V1, token_uri="ipfs://a")
    expected[1].append((hit, "telegram", 1))
    await base.emit("identity", "MetadataSet", agent_id=0, metadata_key="agentWallet")
    await base.emit(
        "identity", "Transfer", agent_id=0, from_address="0x" + "00" * 20, to_address=V1
    )
    # 3. Refund-tagged feedback for 42: both actions, telegram first. (It also has a file: 7.)
    hit = await base.emit("reputation", "NewFeedback", agent_id=42, score=80, value=80,
                          value_decimals=0, tag1="refund", file_uri="ipfs://f")  # fmt: skip
    expected[2] += [(hit, "telegram", 1), (hit, "rest", 2)]
    expected[6].append((hit, "mcp", 1))
    # 4. Trusted validators failing an agent on Polygon Amoy; case of the address ignored.
    hit = await amoy.emit("validation", "ValidationResponse", agent_id=5, response=50,
                          validator_address=V1.upper().replace("0X", "0x"))  # fmt: skip
    expected[3].append((hit, "telegram", 1))
    await amoy.emit("validation", "ValidationResponse", agent_id=5, response=50,
                    validator_address="0x" + "33" * 20)  # fmt: skip
    await amoy.emit("validation", "ValidationRequest", agent_id=5, validator_address=V1)
    # 7. Feedback with a file for 42 (already one above), not without one.
    hit = await base.emit("reputation", "NewFeedback", agent_id=42, score=95, value=95,
                          value_decimals=0, tag1="x", file_uri="https://files/f.json")  # fmt: skip
    expected[6].append((hit, "mcp", 1))
    await process(conn, 84532, 80002)

    # 5. EMA drop: 90, 90, 90 then 40s; fires once the average is below 70.
    # 6. Spam: 11 negative feedbacks within 50 minutes fire once.
    # Both watch agent 42 (1 and 3 see these too); count what the examples say about them.
    ema_trigger = ids[4] = await create(conn, examples[4])
    spam_trigger = ids[5] = await create(conn, examples[5])
    average: float | None = None
    start = base.block
    for i, score in enumerate([90, 90, 90] + [40] * 10):
        block = await base.emit("reputation", "NewFeedback", minutes=1000 + i, agent_id=42,
                                score=score, value=score, value_decimals=0, tag1="q")  # fmt: skip
        average = score if average is None else 2 / 11 * score + 9 / 11 * average
        if average < 70:
            expected[4].append((block, "telegram", 1))
    await process(conn, 84532)
    for i in range(11):
        await base.emit("reputation", "NewFeedback", minutes=2000 + 5 * i, agent_id=42, score=10,
                        value=10, value_decimals=0, tag1="q")  # fmt: skip
    await process(conn, 84532)
    spam = await fired_blocks(conn, spam_trigger)
    assert len(spam) == 1
    assert spam[0][0] == base.block  # the eleventh within the hour

    for position in (0, 1, 2, 3, 6):  # before the EMA and spam sequences, which 1 also sees
        jobs = [job for job in await fired_blocks(conn, ids[position]) if job[0] <= start]
        assert jobs == expected[position], examples[position]["name"]
    ema_jobs = [job for job in await fired_blocks(conn, ema_trigger) if job[0] <= start + 13]
    assert ema_jobs  # it fired, and exactly where the average first went and stayed below 70
    assert ema_jobs == expected[4]


async def test_one_ema_trigger_over_all_agents_keeps_an_average_per_agent(
    conn: psycopg.AsyncConnection,
) -> None:
    trigger = await create(conn, {
        "name": "EMA, every agent", "chain_id": 84532, "registry": "reputation",
        "conditions": [{"condition_type": "ema_threshold", "field": "score", "operator": "<",
                        "value": "50", "config": {"alpha": 0.5}}],
        "actions": [{"action_type": "rest", "priority": 1, "config": {}}],
    })  # fmt: skip
    chain = Chain(conn, 84532)
    for agent, score in [(1, 100), (2, 0), (1, 100), (2, 0), (1, 0)]:
        await chain.emit("reputation", "NewFeedback", agent_id=agent, score=score, value=score,
                         value_decimals=0)  # fmt: skip
    await process(conn, 84532)
    cursor = await conn.execute(
        "SELECT scope, state->'1'->>'ema' FROM trigger_state ORDER BY scope"
    )
    assert [(scope, float(ema)) for scope, ema in await cursor.fetchall()] == [
        ("agent:1", 50.0),
        ("agent:2", 0.0),
    ]
    # Agent 2's average is below 50 from its first score; agent 1's never is.
    assert [b[0] for b in await fired_blocks(conn, trigger)] == [2, 4]


async def test_trigger_changes_take_effect_without_a_restart(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    body = {"name": "any feedback for 7", "chain_id": 84532, "registry": "reputation",
            "conditions": [{"condition_type": "agent_id_equals", "field": "agent_id",
                            "operator": "=", "value": "7"}],
            "actions": [{"action_type": "rest", "priority": 1, "config": {}}]}  # fmt: skip
    chain = Chain(conn, 84532)
    stop = asyncio.Event()
    processor = Processor(migrated_url, poll_interval=0.2)
    task = asyncio.create_task(processor.run(stop))

    async def feedback_and_wait() -> int:
        block = await chain.emit("reputation", "NewFeedback", agent_id=7, score=1, value=1,
                                 value_decimals=0)  # fmt: skip
        for _ in range(200):
            cursor = await conn.execute("SELECT block_number FROM processing_cursors")
            row = await cursor.fetchone()
            if row and row[0] >= block:
                return block
            await asyncio.sleep(0.025)
        raise AssertionError("the processor did not reach the new event")

    def watched_agent() -> Decimal | None:
        """The agent the processor's copy of the trigger watches (None: it has no copy)."""
        compiled = processor.index.triggers.get(trigger)
        return compiled.conditions.fields[0].value if compiled else None

    async def taken_in(expected: Decimal | None) -> None:
        """Until the processor's triggers show the change: a change applies to the events
        processed after its notification arrives, not to those racing it."""
        for _ in range(400):
            if watched_agent() == expected:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"the processor did not take in the change (still {watched_agent()})")

    async def change(expected: Decimal | None, *statements: LiteralString) -> None:
        for statement in statements:
            await conn.execute(statement, [trigger])
        await taken_in(expected)

    try:
        await feedback_and_wait()  # no trigger yet
        trigger = await create(conn, body)
        await taken_in(Decimal(7))
        created = await feedback_and_wait()
        await change(Decimal(8), "UPDATE trigger_conditions SET value = '8' WHERE trigger_id = %s")
        await feedback_and_wait()  # changed: no longer about agent 7
        await change(
            None,
            "UPDATE trigger_conditions SET value = '7' WHERE trigger_id = %s",
            "UPDATE triggers SET enabled = false WHERE id = %s",
        )
        await feedback_and_wait()  # disabled
        await change(Decimal(7), "UPDATE triggers SET enabled = true WHERE id = %s")
        enabled = await feedback_and_wait()
        await change(None, "DELETE FROM triggers WHERE id = %s")
        await feedback_and_wait()  # deleted
        cursor = await conn.execute(
            "SELECT e.block_number FROM action_jobs j JOIN events e ON e.id = j.event_id ORDER BY 1"
        )
        assert [row[0] for row in await cursor.fetchall()] == []  # deleted with its trigger
        assert processor.totals.jobs == 2
        assert processor.totals.fired == 2
        assert (created, enabled) == (2, 5)
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
