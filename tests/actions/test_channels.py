"""The channel seam: one list of channels that the worker, the API and the previews read. A
channel written here, in one class and its registration, is delivered by the unchanged
worker; an action type no channel has is dead-lettered, naming the known ones."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import aiohttp
import orjson
import psycopg
import pytest
from pydantic import Field

from erc8004_backend.actions import channels
from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview
from erc8004_backend.actions.channels import CHANNELS, parse_action_config
from erc8004_backend.actions.configs import ActionConfigError, ChannelConfig, validate_config
from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.preview import ActionPreviews
from erc8004_backend.api.triggers import ActionIn
from tests.actions.test_worker import results, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import create_trigger, queue_jobs
from tests.support.waiting import eventually


def test_each_channel_is_listed_under_its_own_type_with_templates_its_config_has() -> None:
    assert list(CHANNELS) == ["telegram", "rest", "mcp", "slack", "discord", "email", "pagerduty"]
    for action_type, spec in CHANNELS.items():
        assert spec.action_type == action_type
        assert set(spec.template_keys) <= set(spec.config_model.model_fields)
    with pytest.raises(ActionConfigError, match=r"unknown action type 'pager' \(known: telegram"):
        parse_action_config("pager", {})


def test_the_api_takes_the_listed_types_only() -> None:
    schema = ActionIn.model_json_schema()["properties"]["action_type"]
    assert schema["enum"] == list(CHANNELS)


class EchoConfig(ChannelConfig):
    url: Annotated[str, Field(min_length=1)]
    text_template: str = "{{agent_id}}"


class EchoChannel:
    """A channel as a new one is written: its config, its delivery, its preview."""

    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.session = dependencies.session  # the guarded one, as for any user's URL

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = validate_config(EchoConfig, "echo", job.config)
        text = config.text_template.replace("{{agent_id}}", str(job.values.get("agent_id")))
        try:
            async with self.session.post(config.url, data=orjson.dumps({"echo": text}),
                                         headers={"Idempotency-Key": job.idempotency_key}) as reply:  # fmt: skip
                status = reply.status
        except aiohttp.ClientError as error:
            raise DeliveryFailed(f"cannot reach the echo: {error}", retryable=True) from None
        return {"status": status}


ECHO = ChannelSpec("echo", EchoConfig, EchoChannel, template_keys=("text_template",),
                   preview=lambda config, values: Preview(text=str(values.get("agent_id"))))  # fmt: skip


@pytest.fixture
def echo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Its registration: the one line a new channel adds to actions/channels.py.
    monkeypatch.setitem(channels.CHANNELS, "echo", ECHO)


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        yield connection


@pytest.mark.usefixtures("echo_registered")
async def test_a_new_channel_is_delivered_and_previewed_by_the_unchanged_worker(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_asgi(sink := WebhookSink(secret="")) as url:
        trigger, action, _ = await create_trigger(conn, "echo", {"url": url})
        await queue_jobs(conn, trigger, action, 2)
        async with running_worker(settings_for(migrated_url)):
            await eventually(lambda: len(sink.received) == 2, what="two echoes")
    assert [r.json() for r in sink.received] == [{"echo": "42"}, {"echo": "42"}]
    assert [r["status"] for r in await results(conn)] == ["success", "success"]
    previews = ActionPreviews([{"id": action, "action_type": "echo", "priority": 1,
                                "config": {"url": url}}])  # fmt: skip
    [shown] = previews.render({"event": {"agent_id": "7"}, "computed": {}}, None)
    assert (shown.action_type, shown.text) == ("echo", "7")


async def test_an_action_type_without_a_channel_is_dead_naming_the_known_ones(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    # Written around the API: the database checks only the type's shape.
    trigger, action, _ = await create_trigger(conn, "pager", {"to": "ops"})
    await queue_jobs(conn, trigger, action, 1)
    async with running_worker(settings_for(migrated_url)):
        await eventually(lambda: results(conn), what="a result")
    [row] = await results(conn)
    assert row["status"] == "failed"
    assert (
        row["error_message"]
        == "unknown action type 'pager' (known: telegram, rest, mcp, slack, discord, email,"
        " pagerduty)"
    )
    cursor = await conn.execute("SELECT status FROM action_jobs")
    assert await cursor.fetchall() == [("dead",)]
