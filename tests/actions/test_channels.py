"""The channel seam: one list of channels that the worker, the API and the previews read. A
channel written here, in one class and its registration, is delivered by the unchanged
worker; an action type no channel has is dead-lettered, naming the known ones."""

from __future__ import annotations

from typing import Annotated, Any

import aiohttp
import orjson
import psycopg
import pytest
from pydantic import Field

from erc8004_backend.actions import channels, discord, email, pagerduty, rest, slack, telegram
from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview
from erc8004_backend.actions.channels import CHANNELS, parse_action_config
from erc8004_backend.actions.configs import ActionConfigError, ChannelConfig, validate_config
from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.preview import ActionPreviews
from erc8004_backend.api.triggers import ActionIn
from tests.actions.test_worker import results, running_worker, settings_for
from tests.support.asgi import serve_asgi
from tests.support.delivery_targets import WebhookSink
from tests.support.jobs import create_trigger, feedback_event, queue_jobs
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


REPLAY_CONFIGS: dict[str, dict[str, Any]] = {
    "telegram": {"chat_id": "1", "message_template": "agent {{agent_id}}",
                 "parse_mode": "MarkdownV2"},
    "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/x",
              "text_template": "agent {{agent_id}}",
              "blocks_template": [{"type": "section",
                                   "text": {"type": "mrkdwn", "text": "{{agent_id}}"}}]},
    "discord": {"webhook_url": "https://discord.com/api/webhooks/1/x",
                "embeds_template": [{"title": "agent {{agent_id}}"}]},
    "email": {"to": ["ops@example.com"], "subject_template": "agent {{agent_id}}",
              "text_template": "agent {{agent_id}}", "html_template": "<b>{{agent_id}}</b>"},
    "pagerduty": {"routing_key": "R0UT1NGKEY", "summary_template": "agent {{agent_id}}"},
}  # fmt: skip


@pytest.mark.parametrize("replay", [True, False])
def test_a_replays_message_says_so_first_in_every_channel(replay: bool) -> None:
    """A job a replay queued: every channel's message starts with the marker, escaped for its
    markup; the webhook has its header and body field; nothing of it in a live job's."""
    payload = {"event_id": 1, "event": feedback_event(1), "computed": {"trigger_name": "t"},
               **({"replay": True} if replay else {})}  # fmt: skip
    job = Job(id=1, trigger_id="t", trigger_name="t", user_id="u", action_id="a",
              action_type="rest", config={}, event_id=1, chain_id=1, attempt=1, max_attempts=1,
              idempotency_key="k", payload=payload)  # fmt: skip
    assert job.replay is replay
    assert job.values["replay"] == ("true" if replay else "false")
    marker = "(replay) " if replay else ""

    def config(action_type: str) -> Any:
        return parse_action_config(action_type, REPLAY_CONFIGS[action_type])

    values = job.values
    text = telegram.send_message_body(config("telegram"), values)["text"]
    assert text == ("\\(replay\\) " if replay else "") + "agent 42"  # MarkdownV2 escapes ()
    body = slack.slack_body(config("slack"), values)
    assert body["text"] == f"{marker}agent 42"
    assert (body["blocks"][0]["type"] == "context") is replay
    assert discord.discord_body(config("discord"), values).get("content") == (
        "\\(replay\\) " if replay else None)  # fmt: skip
    message = email.build_message(config("email"), values, sender="alerts@example.com",
                                  idempotency_key="k")  # fmt: skip
    assert message["Subject"] == f"{marker}agent 42"
    assert message.get(email.REPLAY_HEADER) == ("true" if replay else None)
    assert message["Message-ID"] == "<k@example.com>"  # as a live delivery's
    assert email.text_part(config("email"), values).startswith(f"{marker}agent 42")
    assert (email.html_part(config("email"), values) or "").startswith(
        "<p>(replay)</p>\n<b>42</b>" if replay else "<b>42</b>")  # fmt: skip
    alert = pagerduty.event_body(config("pagerduty"), values, dedup_key="k", retracted=False)
    assert alert["payload"]["summary"] == f"{marker}agent 42"
    assert alert["dedup_key"] == "k"
    _, headers, raw = rest.webhook_request(rest.RestConfig(url="https://example.com/h"), job,
                                           secret="s", timestamp=1)  # fmt: skip
    assert headers.get(rest.REPLAY_HEADER) == ("true" if replay else None)
    assert headers["Idempotency-Key"] == "k"
    assert orjson.loads(raw).get("replay") is (True if replay else None)
