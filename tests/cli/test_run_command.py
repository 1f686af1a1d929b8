"""`erc8004 run`: the whole system in one process, from an empty database to a signed
webhook for every feedback the devnet emitted, with the webhook target up or down for a
while; then a clean stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from erc8004_backend.devnet import Devnet
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.system import delivered, feedbacks_indexed, running_system
from tests.support.waiting import eventually, free_port


async def test_run_delivers_a_webhook_for_every_feedback_on_the_devnet(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    async with (
        running_system(devnet, database_url, tmp_path) as system,
        serve_asgi(sink := WebhookSink(secret="")) as sink_url,
    ):
        sink.secret = await system.every_feedback_to(sink_url)
        await devnet.activity.run(events=60)
        expected = await feedbacks_indexed(database_url, await devnet.rpc.block_number())
        assert expected, "the activity made no feedback"
        await eventually(lambda: len(sink.processed) >= len(expected), 20)
        assert delivered(sink) == expected
        assert not sink.repeats
        assert all(r.signature_ok for r in sink.received)
        results = await system.recorded(len(expected))  # attempts are written in batches
        assert len(results) == len(expected)
        assert {r["status"] for r in results} == {"success"}


async def test_a_webhook_target_that_is_down_for_a_while_gets_everything_once(
    devnet: Devnet, database_url: str, tmp_path: Path
) -> None:
    """The target refuses connections while the chain emits feedback, then comes back on
    the same port: every delivery arrives once, after retries that are each recorded."""
    sink_port = free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    async with running_system(devnet, database_url, tmp_path, ERC8004_RETRY_INITIAL_SECONDS="0.2",
                              ERC8004_RETRY_MAX_SECONDS="1") as system:  # fmt: skip
        secret = await system.every_feedback_to(sink_url, max_attempts=25)
        await devnet.activity.run(events=60)
        expected = await feedbacks_indexed(database_url, await devnet.rpc.block_number())
        assert expected, "the activity made no feedback"

        async def each_refused() -> list[dict[str, Any]] | None:
            """The results once every delivery has been tried (and refused) at least once."""
            results = await system.results()
            return results if len({r["event_id"] for r in results}) >= len(expected) else None

        refused = await eventually(each_refused, 20, what="every delivery tried")
        assert {r["status"] for r in refused} == {"retrying"}
        assert all("connect" in r["error_message"].lower() for r in refused), refused[0]
        async with serve_asgi(sink := WebhookSink(secret=secret), port=sink_port):
            await eventually(lambda: len(sink.processed) >= len(expected), 30)
            assert delivered(sink) == expected
            assert not sink.repeats
        results = await system.recorded(len(expected), status="success")
        assert sum(r["status"] == "success" for r in results) == len(expected)
        assert "failed" not in {r["status"] for r in results}  # nothing dead-lettered
