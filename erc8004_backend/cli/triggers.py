"""`erc8004 processor` and `erc8004 triggers ...`: the trigger engine from the command line."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import Annotated, Any

import orjson
import psycopg
import typer
from rich.console import Console
from rich.table import Table

from erc8004_backend.actions.rest import rotate_webhook_secret
from erc8004_backend.chain.config import explorer_urls
from erc8004_backend.cli.database_url import DatabaseUrl, database
from erc8004_backend.cli.indexer import ChainsFiles, known_chains
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.config import get_settings
from erc8004_backend.encryption import SecretBox
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.backtest import BacktestResult, backtest
from erc8004_backend.triggers.fields import format_value
from erc8004_backend.triggers.plan import HEAD_LOG_INDEX
from erc8004_backend.triggers.processor import BATCH_SIZE, run_processor
from erc8004_backend.triggers.replay import QUERIES as REPLAY_QUERIES

triggers_app = typer.Typer(help="Inspect and test triggers.", no_args_is_help=True)
# Tables stay readable when the output goes to a file or a pipe (rich assumes 80 columns).
console = Console(width=None if sys.stdout.isatty() else 160)
TriggerId = Annotated[str, typer.Argument(metavar="TRIGGER_ID", help="The trigger's id (a UUID).")]


def processor(
    database_url: DatabaseUrl = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            metavar="SECONDS", help="Seconds between checks when no notification arrives.", min=0.05
        ),
    ] = 1.0,
    batch_size: Annotated[
        int, typer.Option(metavar="EVENTS", help="Events per transaction.", min=1, max=100_000)
    ] = BATCH_SIZE,
) -> None:
    """Evaluate triggers over confirmed events and queue their actions."""
    configure_logging()
    with database(database_url) as url:
        asyncio.run(_run_processor(url, poll_interval, batch_size))


async def _run_processor(url: str, poll_interval: float, batch_size: int) -> None:
    async def process(stop: asyncio.Event) -> None:
        await run_processor(url, stop, poll_interval=poll_interval, batch_size=batch_size)

    await run_until_signalled(process, "processor")


@triggers_app.command("test")
def backtest_trigger(
    trigger_id: TriggerId,
    from_block: Annotated[
        int | None, typer.Option(metavar="BLOCK", help="First block of the events.", min=0)
    ] = None,
    to_block: Annotated[
        int | None, typer.Option(metavar="BLOCK", help="Last block of the events.", min=0)
    ] = None,
    from_time: Annotated[
        datetime | None,
        typer.Option(metavar="TIME", help="Earliest block time of the events (ISO 8601)."),
    ] = None,
    to_time: Annotated[
        datetime | None,
        typer.Option(metavar="TIME", help="Latest block time of the events (ISO 8601)."),
    ] = None,
    limit: Annotated[
        int,
        typer.Option(
            metavar="N", help="Firings (and states) shown, the first ones; 0: all.", min=0
        ),
    ] = 20,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="What a replay from --from-block or --from-time (to --to-block or --to-time,"
            " if given) requested now would cover: the events up to the processor's cursor at"
            " most, and the jobs each firing would queue (its actions without a job for the"
            " event yet).",
        ),
    ] = False,
    chains_file: ChainsFiles = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Show what a trigger would have fired for stored events, and what its Telegram and
    webhook actions would have sent (a backtest; writes and sends nothing).

    The chains files give the block explorers that messages link to."""
    explorers = explorer_urls(known_chains(chains_file).values())
    with database(database_url) as url:
        result = asyncio.run(
            _backtest(url, trigger_id, from_block, to_block, from_time, to_time, explorers,
                      replay)
        )  # fmt: skip
    fired, checked = len(result.fired), _count(result.events_checked, "event")
    table = Table(
        title=f"{result.trigger_name}: {_count(fired, 'firing')} in {checked}"
        f" ({result.matched:,} matched)"
    )
    columns = ["block", "log", "time", "event", "agent", "score", "computed"]
    for column in columns + (["new jobs"] if replay else []):
        table.add_column(column)
    shown = result.fired[:limit] if limit else result.fired
    for firing in shown:
        computed = ", ".join(f"{k}={format_value(v)}" for k, v in firing.computed.items())
        # A silence the confirmed head's time fired comes after the block's events.
        log = "head" if firing.log_index == HEAD_LOG_INDEX else str(firing.log_index)
        cells = [str(firing.block_number), log, firing.block_time.isoformat(),
                 firing.event_type, format_value(firing.agent_id), format_value(firing.score),
                 computed]  # fmt: skip
        if replay:
            cells.append(str(firing.new_jobs))
        table.add_row(*cells)
    console.print(table)
    if result.replay_end is not None:
        new_jobs = sum(firing.new_jobs or 0 for firing in result.fired)
        end_block, end_log = result.replay_end
        console.print(f"a replay would cover up to block {end_block} log {end_log} and queue"
                      f" {_count(new_jobs, 'job')}", highlight=False, soft_wrap=True)  # fmt: skip
    for firing in shown:  # what each firing's actions would have sent
        for message in firing.messages:
            sent = orjson.dumps(message.body).decode() if message.text is None else message.text
            where = f"block {firing.block_number} log {firing.log_index}"
            console.print(f"{where}, {message.action_type} (priority {message.priority}): "
                          + sent.replace("\n", "\n    "),
                          markup=False, highlight=False, soft_wrap=True)  # fmt: skip
    if len(shown) < fired:
        blocks = f" in blocks {result.blocks[0]}-{result.blocks[1]}" if result.blocks else ""
        console.print(f"… {fired - len(shown):,} more (--limit 0 shows all); "
                      f"{_count(fired, 'firing')} over {checked}{blocks}",
                      highlight=False, soft_wrap=True)  # fmt: skip
    states = sorted(result.states.items())
    for scope, state in states[:limit] if limit else states:
        console.print(f"state {scope}: {state}", highlight=False, soft_wrap=True)
    if limit and len(states) > limit:
        console.print(f"… {len(states) - limit:,} more states (--limit 0 shows all)",
                      highlight=False, soft_wrap=True)  # fmt: skip


@triggers_app.command("replay")
def replay_trigger(
    trigger_id: TriggerId,
    from_block: Annotated[
        int | None, typer.Option(metavar="BLOCK", help="First block of the history.", min=0)
    ] = None,
    from_time: Annotated[
        datetime | None,
        typer.Option(metavar="TIME", help="Earliest block time of the history (ISO 8601)."),
    ] = None,
    to_block: Annotated[
        int | None, typer.Option(metavar="BLOCK", help="Last block of the history.", min=0)
    ] = None,
    to_time: Annotated[
        datetime | None,
        typer.Option(metavar="TIME", help="Latest block time of the history (ISO 8601)."),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Ask for a trigger's history on purpose: the processor queues its jobs, marked replay,
    for the stored events from --from-block or --from-time (exactly one) up to where it is
    when it takes the replay up, or to --to-block or --to-time (at most one) if before; an
    event that has its job already gets none. `triggers test --replay` shows what it would
    cover."""
    if (from_block is None) == (from_time is None):
        raise Erc8004Error("give exactly one of --from-block and --from-time")
    if to_block is not None and to_time is not None:
        raise Erc8004Error("give at most one of --to-block and --to-time")
    if from_block is not None and to_block is not None and from_block > to_block:
        raise Erc8004Error(f"--from-block {from_block} is after --to-block {to_block}")
    if from_time is not None and to_time is not None and from_time > to_time:
        raise Erc8004Error(f"--from-time {from_time} is after --to-time {to_time}")
    bounds = {"from_block": from_block, "from_time": from_time, "to_block": to_block,
              "to_time": to_time}  # fmt: skip
    with database(database_url) as url:
        replay_id = asyncio.run(_request_replay(url, trigger_id, bounds))
    console.print(f"replay {replay_id} requested; the processor takes it up", highlight=False)


async def _request_replay(url: str, trigger_id: str, bounds: dict[str, Any]) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        try:
            cursor = await conn.execute(
                REPLAY_QUERIES["request_replay"], {"trigger_id": trigger_id, **bounds}
            )
        except psycopg.errors.InvalidTextRepresentation:
            raise Erc8004Error(f"{trigger_id!r} is not a trigger id (a UUID)") from None
        row = await cursor.fetchone()
    if row is None:
        raise Erc8004Error(f"no trigger {trigger_id}")
    return int(row[0])


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


@triggers_app.command("webhook-secret")
def webhook_secret(
    trigger_id: TriggerId,
    database_url: DatabaseUrl = None,
) -> None:
    """Give a trigger a new webhook secret and print it (once: it is stored encrypted)."""
    with database(database_url) as url:
        secret = asyncio.run(_rotate_secret(url, trigger_id))
    if secret is None:
        raise Erc8004Error(f"no trigger {trigger_id}")
    console.print(secret, highlight=False)


async def _rotate_secret(url: str, trigger_id: str) -> str | None:
    box = SecretBox.from_spec(get_settings().token_keys)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        try:
            return await rotate_webhook_secret(conn, trigger_id, box)
        except psycopg.errors.InvalidTextRepresentation:
            raise Erc8004Error(f"{trigger_id!r} is not a trigger id (a UUID)") from None


async def _backtest(
    url: str,
    trigger_id: str,
    from_block: int | None,
    to_block: int | None,
    from_time: datetime | None,
    to_time: datetime | None,
    explorers: dict[int, str],
    replay: bool = False,
) -> BacktestResult:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await backtest(conn, trigger_id, from_block=from_block, to_block=to_block,
                              from_time=from_time, to_time=to_time,
                              explorers=explorers, replay=replay)  # fmt: skip
