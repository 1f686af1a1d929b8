"""Template filters and explorer links end to end: docs/triggers.md's template example, from
stored events through the processor and the real worker to a server speaking Telegram's Bot
API and a signature-checking webhook sink, both on loopback; its backtest previews the same."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from erc8004_backend.actions.rest import rotate_webhook_secret
from erc8004_backend.api.triggers import shipped_explorers
from erc8004_backend.encryption import SecretBox
from erc8004_backend.triggers.backtest import backtest
from tests.actions.test_worker import BOT_TOKEN, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import TelegramServer, WebhookSink, unescape_markdown_v2
from tests.support.jobs import create_user
from tests.support.waiting import eventually
from tests.triggers.test_examples_end_to_end import (
    EXAMPLES_DOCUMENT,
    create,
    process,
    template_example,
)

BASE_SEPOLIA = 84532  # a shipped chain: its explorer is https://sepolia.basescan.org
CLIENT = "0x5b38da6a701c568545dcfcb03fcb875f56beddc4"
OTHER_CLIENT = "0xab8483f64d9c6d1ecf9b849ae677dd3315835cb2"
TRANSACTION = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"
BLOCK = 38211405
BLOCK_TIME = datetime(2026, 3, 2, 14, 5, 9, tzinfo=UTC)
# A MarkdownV2 message too: the stand-in refuses any reserved character left unescaped.
MARKDOWN_V2 = {
    "action_type": "telegram",
    "priority": 3,
    "config": {
        "chat_id": "42",
        "parse_mode": "MarkdownV2",
        "message_template": "Agent #{{agent_id}}: {{score|fixed:2}} from"
        " {{client_address|short}} at {{timestamp|iso}}, tag {{tag1|default:none}},"
        " {{address_url}}",
    },
}


def documented_outcome() -> tuple[str, dict[str, Any]]:
    """The message and the webhook body docs/triggers.md says the example sends."""
    text = EXAMPLES_DOCUMENT.read_text(encoding="utf-8")
    section = text.split("\n## Templates\n", 1)[1].split("\n## ", 1)[0]
    message = section.split("```text\n", 1)[1].split("```", 1)[0].rstrip("\n")
    body = json.loads(section.split("```json")[2].split("```", 1)[0])
    return message, body


async def feedback(
    conn: psycopg.AsyncConnection, block: int, when: datetime, **fields: Any
) -> None:
    """A NewFeedback for agent 42 on Base Sepolia, confirmed."""
    columns = {"chain_id": BASE_SEPOLIA, "registry": "reputation", "event_type": "NewFeedback",
               "contract_address": "0x8004b663056a597dffe9eccc1965a193b7388713",
               "block_number": block, "block_hash": f"0x{block:064x}", "block_time": when,
               "transaction_hash": f"0x{block:064x}", "transaction_index": 0, "log_index": 0,
               "agent_id": 42, "feedback_index": 1, "tag2": "", **fields}  # fmt: skip
    await conn.execute(
        f"INSERT INTO events ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
        list(columns.values()),
    )
    await conn.execute(
        "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
        " VALUES (%s, %s, %s) ON CONFLICT (chain_id) DO UPDATE SET"
        " block_number = EXCLUDED.block_number, confirmed_block_number = EXCLUDED.block_number",
        [BASE_SEPOLIA, block, block],
    )


async def store_template_example(
    conn: psycopg.AsyncConnection, webhook_url: str, *extra_actions: dict[str, Any]
) -> str:
    """docs/triggers.md's template example (its webhook to `webhook_url`, with more actions
    if given), its documented feedback and another, processed: their jobs are queued. The
    trigger's id."""
    await create_user(conn)
    body = template_example()
    rest = body["actions"][1]["config"]
    rest["url"] = rest["url"].replace("https://api.example.com", webhook_url)
    body["actions"] += [copy.deepcopy(action) for action in extra_actions]
    trigger_id = await create(conn, body)
    # Its events are older than the trigger: ask for them (see docs/triggers.md).
    await conn.execute(
        "UPDATE triggers SET fires_from = %s WHERE id = %s", [BLOCK_TIME, trigger_id]
    )
    await feedback(conn, BLOCK, BLOCK_TIME, client_address=CLIENT, value=45505,
                   value_decimals=3, score="45.505", tag1="quality",
                   transaction_hash=TRANSACTION)  # fmt: skip
    # Awkward for MarkdownV2 and JSON alike; no tag2, a negative score.
    await feedback(conn, BLOCK + 1, BLOCK_TIME + timedelta(seconds=2),
                   client_address=OTHER_CLIENT, value=-1, value_decimals=0, score="-1",
                   tag1='re_fund*[x](y)! "now"')  # fmt: skip
    await process(conn, BASE_SEPOLIA)
    return trigger_id


async def test_the_template_example_is_delivered_as_documented(migrated_url: str) -> None:
    box = SecretBox.from_spec(settings_for(migrated_url).token_keys)
    async with (
        await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as conn,
        serve_asgi(telegram := TelegramServer(token=BOT_TOKEN)) as telegram_url,
        serve_asgi(sink := WebhookSink(secret="")) as sink_url,
    ):
        # The block time is read in another zone than UTC: `iso` gives UTC whatever it is.
        await conn.execute("SET TIME ZONE 'Asia/Kolkata'")
        trigger_id = await store_template_example(conn, sink_url, MARKDOWN_V2)
        secret = await rotate_webhook_secret(conn, trigger_id, box)
        assert secret is not None
        sink.secret = secret
        preview = await backtest(conn, trigger_id, explorers=shipped_explorers())

        # No explorers given: the worker knows the shipped chains'.
        async with running_worker(settings_for(migrated_url, telegram_api_url=telegram_url)):
            await eventually(lambda: len(telegram.messages) == 4 and len(sink.processed) == 2)

    message, webhook_body = documented_outcome()
    plain = [m["text"] for m in telegram.messages if "parse_mode" not in m]
    assert sorted(plain) == sorted([
        message,
        f"Agent #42 scored -1.00 from 0xab84…5cb2 at 2026-03-02T14:05:11Z"
        f' (tag: re_fund*[x](y)! "now")\nTransaction: https://sepolia.basescan.org/tx/0x{BLOCK + 1:064x}'
        f"\nClient: https://sepolia.basescan.org/address/{OTHER_CLIENT}",
    ])  # fmt: skip
    markdown = [m["text"] for m in telegram.messages if m.get("parse_mode") == "MarkdownV2"]
    assert sorted(unescape_markdown_v2(text) for text in markdown) == sorted([
        "Agent #42: 45.51 from 0x5b38…ddc4 at 2026-03-02T14:05:09Z, tag quality,"
        f" https://sepolia.basescan.org/address/{CLIENT}",
        "Agent #42: -1.00 from 0xab84…5cb2 at 2026-03-02T14:05:11Z,"
        f' tag re_fund*[x](y)! "now", https://sepolia.basescan.org/address/{OTHER_CLIENT}',
    ])  # fmt: skip
    # The backtest's previews are what was delivered.
    delivered_texts = sorted(m["text"] for m in telegram.messages)
    previewed = [m for firing in preview.fired for m in firing.messages]
    assert sorted(m.text for m in previewed if m.text is not None) == delivered_texts
    assert sorted((m.body for m in previewed if m.body is not None), key=str) == sorted(
        (r.json() for r in sink.received), key=str
    )
    received = sorted((r for r in sink.received), key=lambda r: r.json()["score"], reverse=True)
    assert all(request.signature_ok for request in received)
    assert [request.path for request in received] == ["/agents/42/feedback"] * 2
    assert received[0].json() == webhook_body
    assert received[1].json() == {
        "score": "-1.00",
        "client": OTHER_CLIENT,
        "client_short": "0xab84…5cb2",
        "at": "2026-03-02T14:05:11Z",
        "tag": 'RE_FUND*[X](Y)! "NOW"',
        "transaction": f"https://sepolia.basescan.org/tx/0x{BLOCK + 1:064x}",
        "block": f"https://sepolia.basescan.org/block/{BLOCK + 1}",
        "client_page": f"https://sepolia.basescan.org/address/{OTHER_CLIENT}",
    }
