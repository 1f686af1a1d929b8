"""Action delivery: deliveries per second from one worker process to a local stand-in of each
HTTP channel, and event-to-delivery latency through the whole engine at a steady event rate.

    .venv/bin/python -m bench.delivery --jobs 20000 --channel-jobs 5000 --rate 500 --seconds 20

1. Throughput: `--jobs` queued webhook jobs, one `erc8004 worker` process, a sink process;
   deliveries/s is the jobs over the time between the first and the last recorded attempt.
   Then `--channel-jobs` each for Telegram (its rate limits off: they would make it one a
   second per chat), Slack, Discord, PagerDuty and email, each answered by the same sink
   process as the service would (bench/sink.py; email by its SMTP server, plain, the worker
   opening up to ERC8004_SMTP_MAX_CONNECTIONS at once, a message each).
2. Latency: events committed at `--rate` per second (each insert with its confirmation, as
   the indexer commits them; no chain involved), one `erc8004 processor`, one worker; the
   sink notes each arrival. Latency = arrival - the event's commit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from bench.common import child, report, throwaway_database
from erc8004_backend.actions.rest import rotate_webhook_secret
from erc8004_backend.config import Settings
from erc8004_backend.encryption import SecretBox

LATENCY_CHAIN = 84532
USER = "a11ce000-0000-4000-8000-000000000001"
ENV = {**os.environ, "ERC8004_ALLOW_PRIVATE_URLS": "true"}


async def sink_ports(sink: asyncio.subprocess.Process) -> tuple[int, int]:
    """The sink's HTTP and SMTP ports, as it prints them when it is ready."""
    assert sink.stdout is not None
    line = (await asyncio.wait_for(sink.stdout.readline(), 30)).decode()
    words = line.split()
    if len(words) != 4 or words[0] != "port" or words[2] != "smtp":
        raise RuntimeError(f"the sink did not start: {line!r}")
    return int(words[1]), int(words[3])


def channel_configs(sink: str) -> dict[str, dict[str, Any]]:
    """An action's config per channel, each to the sink's stand-in of its service."""
    return {
        "telegram": {"chat_id": "1", "message_template": "Agent {{agent_id}}: {{score}}"},
        "slack": {"webhook_url": f"{sink}/slack/T0/B0/x",
                  "text_template": "*Agent {{agent_id}}* scored {{score}}"},
        "discord": {"webhook_url": f"{sink}/discord/1/x",
                    "content_template": "Agent {{agent_id}} scored {{score}}"},
        "pagerduty": {"routing_key": "R" * 32, "summary_template": "Agent {{agent_id}}"},
        "email": {"to": ["ops@example.com"], "subject_template": "Agent {{agent_id}}",
                  "text_template": "Agent {{agent_id}} scored {{score}}"},
    }  # fmt: skip


def channel_env(sink: str, smtp_port: int | None = None) -> dict[str, str]:
    env = {**ENV, "ERC8004_TELEGRAM_API_URL": sink, "ERC8004_TELEGRAM_BOT_TOKEN": "1:bench",
           "ERC8004_TELEGRAM_RATE_LIMITS": "false",
           "ERC8004_PAGERDUTY_EVENTS_URL": f"{sink}/pagerduty"}  # fmt: skip
    if smtp_port is not None:
        env |= {"ERC8004_SMTP_HOST": "127.0.0.1", "ERC8004_SMTP_PORT": str(smtp_port),
                "ERC8004_SMTP_SECURITY": "none", "ERC8004_SMTP_FROM": "bench@example.com"}  # fmt: skip
    return env


async def create_trigger(
    conn: psycopg.AsyncConnection,
    chain_id: int,
    url: str,
    conditions: list[dict[str, str]],
    *,
    action_type: str = "rest",
    config: dict[str, Any] | None = None,
) -> tuple[str, str]:
    cursor = await conn.execute(
        "INSERT INTO triggers (user_id, name, chain_id, registry) VALUES (%s, %s, %s,"
        " 'reputation') RETURNING id::text",
        [USER, f"bench {chain_id}", chain_id],
    )
    trigger_id = (await cursor.fetchone() or [""])[0]
    for position, condition in enumerate(conditions):
        await conn.execute(
            "INSERT INTO trigger_conditions (trigger_id, position, condition_type, field,"
            " operator, value) VALUES (%s, %s, %s, %s, %s, %s)",
            [trigger_id, position, condition["condition_type"], condition["field"],
             condition["operator"], condition["value"]],
        )  # fmt: skip
    config = config or {"method": "POST", "url": url, "timeout_ms": 10_000}
    cursor = await conn.execute(
        "INSERT INTO trigger_actions (trigger_id, action_type, config)"
        " VALUES (%s, %s, %s) RETURNING id::text",
        [trigger_id, action_type, orjson.dumps(config).decode()],
    )
    action_id = (await cursor.fetchone() or [""])[0]
    await rotate_webhook_secret(conn, trigger_id, SecretBox.from_spec(Settings().token_keys))
    return trigger_id, action_id


async def wait_for_succeeded(
    conn: psycopg.AsyncConnection, trigger_id: str, count: int, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        cursor = await conn.execute(
            "SELECT count(*) FROM action_jobs WHERE trigger_id = %s AND status = 'succeeded'",
            [trigger_id],
        )
        done = (await cursor.fetchone() or [0])[0]
        if done >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {count} jobs delivered in {timeout:g} s")
        await asyncio.sleep(0.2)


async def throughput(
    url: str, port: int, jobs: int, concurrency: int, action_type: str = "rest",
    smtp_port: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    sink = f"http://127.0.0.1:{port}"
    config = channel_configs(sink).get(action_type)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DELETE FROM action_results")  # each channel's run counts alone
        trigger, action = await create_trigger(conn, 1, f"{sink}/t", [],
                                               action_type=action_type, config=config)  # fmt: skip
        event = {"chain_id": 1, "registry": "reputation", "event_type": "NewFeedback",
                 "agent_id": "42", "client_address": "0x" + "cc" * 20, "score": "45",
                 "value": "45", "value_decimals": 0, "tag1": "refund", "tag2": "",
                 "block_hash": "0x" + "ab" * 32, "transaction_hash": "0x" + "cd" * 32}  # fmt: skip
        payload = orjson.dumps({"event": event, "computed": {"trigger_name": "bench"}}).decode()
        await conn.execute(
            "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, idempotency_key,"
            " payload) SELECT %s, %s, n, 1, md5(n::text), %s FROM generate_series(1, %s) AS n",
            [trigger, action, payload, jobs],
        )
        async with child("-m", "erc8004_backend", "worker", "--database-url", url,
                         "--concurrency", str(concurrency),
                         env=channel_env(sink, smtp_port)):  # fmt: skip
            await wait_for_succeeded(conn, trigger, jobs, timeout=max(60.0, jobs / 200))
        cursor = await conn.execute(
            "SELECT min(executed_at), max(executed_at), count(*) FROM action_results"
            " WHERE status = 'success'"
        )
        first, last, delivered = await cursor.fetchone() or (None, None, 0)
        await conn.execute("UPDATE triggers SET enabled = false WHERE id = %s", [trigger])
    seconds = max((last - first).total_seconds(), 1e-3)
    return {"channel": action_type, "jobs": jobs, "delivered": delivered,
            "seconds": round(seconds, 3),
            "deliveries_per_second": round(delivered / seconds, 1)}  # fmt: skip


async def latency(url: str, port: int, rate: float, seconds: float) -> dict[str, Any]:
    events = max(1, round(rate * seconds))
    sink = f"http://127.0.0.1:{port}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        trigger, _ = await create_trigger(conn, LATENCY_CHAIN, sink + "/e/{{block_number}}", [
            {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
             "value": "42"}])  # fmt: skip
        await conn.execute(
            "INSERT INTO checkpoints (chain_id, block_number, confirmed_block_number)"
            " VALUES (%s, 0, 0)",
            [LATENCY_CHAIN],
        )
        # As the indexer's session does: without it each event waits for a disk flush and
        # the rate falls short of the target on a small machine.
        await conn.execute("SET synchronous_commit = off")
        committed: dict[int, float] = {}
        async with (
            child("-m", "erc8004_backend", "processor", "--database-url", url, env=ENV),
            child("-m", "erc8004_backend", "worker", "--database-url", url, env=ENV),
        ):
            await asyncio.sleep(3)  # both started and listening
            started = time.monotonic()
            for number in range(1, events + 1):
                delay = started + (number - 1) / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await insert_confirmed_event(conn, number)
                committed[number] = time.time()
            sent_for = time.monotonic() - started
            await wait_for_succeeded(conn, trigger, events, timeout=60)
        async with httpx.AsyncClient() as client:
            receipts = (await client.get(sink + "/receipts")).json()
    latencies = sorted(
        (arrived - committed[int(path.rsplit("/", 1)[1])]) * 1000
        for path, arrived in receipts
        if path.startswith("/e/")
    )
    return {"events": events, "rate": rate, "achieved_rate": round(events / sent_for, 1),
            "delivered": len(latencies), "p50_ms": round(_quantile(latencies, 0.50), 2),
            "p99_ms": round(_quantile(latencies, 0.99), 2),
            "max_ms": round(latencies[-1], 2)}  # fmt: skip


async def insert_confirmed_event(conn: psycopg.AsyncConnection, number: int) -> None:
    """One event and its confirmation in one transaction, as the indexer commits a block."""
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
            " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
            " client_address, value, value_decimals, score, tag1) VALUES (%s, 'reputation',"
            " 'NewFeedback', %s, %s, %s, %s, %s, 0, 0, 42, %s, 45, 0, 45, 'refund')",
            [LATENCY_CHAIN, "0x" + "aa" * 20, number, f"0x{number:064x}", datetime.now(UTC),
             f"0x{number + 1:064x}", "0x" + "cc" * 20],
        )  # fmt: skip
        await conn.execute(
            "UPDATE checkpoints SET block_number = %s, confirmed_block_number = %s"
            " WHERE chain_id = %s",
            [number, number, LATENCY_CHAIN],
        )


def _quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with throwaway_database() as url:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO users (id, username, email, password_hash)"
                " VALUES (%s, 'bench', 'bench@example.com', 'x')",
                [USER],
            )
        async with child("-m", "bench.sink", read=True, env=ENV) as sink:
            port, smtp_port = await sink_ports(sink)
            result = {
                "throughput": await throughput(url, port, args.jobs, args.concurrency),
                "channels": {
                    channel: await throughput(
                        url, port, args.channel_jobs, args.concurrency, channel, smtp_port
                    )
                    for channel in channel_configs("")
                },
                "latency": await latency(url, port, args.rate, args.seconds),
            }
            return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--channel-jobs", type=int, default=5_000,
                        help="jobs per channel besides webhooks")  # fmt: skip
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="of events at that rate")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    speed, delay = result["throughput"], result["latency"]
    rows = [
        ("jobs delivered", f"{speed['delivered']:,}"),
        ("deliveries/s (one worker)", f"{speed['deliveries_per_second']:,.0f}"),
        *(
            (
                f"  {channel} deliveries/s",
                f"{run['deliveries_per_second']:,.0f} ({run['delivered']:,} jobs)",
            )
            for channel, run in result["channels"].items()
        ),
        ("events at", f"{delay['achieved_rate']:,.0f}/s ({delay['events']:,} events)"),
        ("event -> delivery p50", f"{delay['p50_ms']:.1f} ms"),
        ("event -> delivery p99", f"{delay['p99_ms']:.1f} ms"),
        ("event -> delivery max", f"{delay['max_ms']:.1f} ms"),
    ]
    report("delivery", rows, result, args.json)


if __name__ == "__main__":
    main()
