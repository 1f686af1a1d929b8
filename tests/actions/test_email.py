"""Email actions: the message a job makes (pure), hostile values through the rendering to a
real SMTP server, and the worker delivering to that server (aiosmtpd on 127.0.0.1) in each
of its security modes, with its retries and dead letters."""

from __future__ import annotations

import asyncio
import html
import json
import re
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erc8004_backend.actions.configs import ActionConfigError, validate_config
from erc8004_backend.actions.delivery import DeliveryFailed
from erc8004_backend.actions.email import (
    CUT_MARKER,
    MAX_PART_CHARS,
    MAX_SUBJECT_CHARS,
    MAX_VALUE_CHARS,
    EmailConfig,
    build_message,
    send_email,
    smtp_options,
    subject_line,
)
from erc8004_backend.actions.preview import ActionPreviews
from erc8004_backend.config import Settings
from tests.actions.test_worker import job_status_counts, results, running_worker, settings_for
from tests.support.jobs import create_trigger, feedback_event, queue_jobs
from tests.support.smtp_server import Inbox, Mail, Security, serve_smtp
from tests.support.waiting import eventually

SENDER = "alerts@example.com"
# The headers a message has; a value that made one more would show here.
HEADERS = {"From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted", "MIME-Version",
           "Content-Type"}  # fmt: skip
HOSTILE = [
    "score\r\nBcc: victim@example.net",
    "\r\n\r\n<script>alert(1)</script>",
    '<a href="https://evil.example">click</a> & "quotes" \'too\'',
    "line\nbreak\rcarriage\x00nul\x85next\u2028separator",
    "{{agent_id}} not a placeholder twice",
    "=?utf-8?q?encoded=3F?= word",
    ".\r\n.\r\nQUIT\r\n",  # SMTP's end of data, then a command
]


def email_config(**overrides: Any) -> dict[str, Any]:
    return {"to": ["ops@example.com", "oncall@example.org"],
            "subject_template": "Agent {{agent_id}}: score {{score}} ({{tag1}})",
            "text_template": "Agent {{agent_id}} got {{score}} from {{client_address}}.\nTag: {{tag1}}",
            "html_template": "<p>Agent <b>{{agent_id}}</b> got {{score}}.</p><p>Tag: {{tag1}}</p>",
            **overrides}  # fmt: skip


def smtp_settings(url: str, port: int, **overrides: Any) -> Settings:
    values = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none",
              "smtp_from": SENDER, **overrides}  # fmt: skip
    return settings_for(url, **values)


# -- configs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "problem"),
    [
        (["ops@example"], "is not a plain email address"),
        (["Ops <ops@example.com>"], "is not a plain email address"),
        (["ops@example.com\r\nBcc: x@example.net"], "is not a plain email address"),
        (["ops@example.com, other@example.com"], "is not a plain email address"),
        (["a" * 65 + "@example.com"], "local part longer than 64"),
        (["ops@example.com", "OPS@example.com"], "lists an address twice"),
        ([f"ops{i}@example.com" for i in range(21)], "at most 20 items"),
        ([], "at least 1 item"),
    ],
)
def test_recipients_are_plain_addresses_and_bounded(to: list[str], problem: str) -> None:
    with pytest.raises(ActionConfigError, match=f"email action: to: .*{problem}"):
        validate_config(EmailConfig, "email", email_config(to=to), strict=True)


def test_the_display_name_is_one_line() -> None:
    with pytest.raises(ActionConfigError, match="from_name: has a control character"):
        validate_config(EmailConfig, "email", email_config(from_name="Alerts\r\nBcc: x@y.z"))


def test_no_smtp_server_or_sender_is_a_permanent_failure_naming_the_setting() -> None:
    with pytest.raises(DeliveryFailed, match="set ERC8004_SMTP_HOST") as missing:
        smtp_options(Settings(smtp_host=None))
    assert missing.value.retryable is False
    assert smtp_options(Settings(smtp_host="mail.example.com"))["port"] == 587
    assert smtp_options(Settings(smtp_host="m.example", smtp_security="tls"))["use_tls"] is True


# -- what a message holds ----------------------------------------------------------------


def test_values_cannot_break_the_subject_line() -> None:
    config = EmailConfig.model_validate(email_config())
    values = {**feedback_event(1), "tag1": "x\r\nBcc: victim@example.net\r\n\r\nbody"}
    subject = subject_line(config, values)
    assert subject == "Agent 42: score 45 (x Bcc: victim@example.net body)"
    message = build_message(config, values, sender=SENDER, idempotency_key="k")
    assert set(message.keys()) == HEADERS
    assert message["Bcc"] is None


def test_a_retraction_says_so_and_refers_to_the_first_message() -> None:
    config = EmailConfig.model_validate(email_config())
    values = {**feedback_event(1), "retracted": "true"}
    message = build_message(config, values, sender=SENDER, idempotency_key="abc")
    assert str(message["Subject"]).startswith("Retracted: Agent 42")
    assert message["Message-ID"] == "<abc.retracted@example.com>"
    assert message["In-Reply-To"] == message["References"] == "<abc@example.com>"


def test_the_preview_is_the_subject_and_the_text() -> None:
    previews = ActionPreviews([{"id": "a", "action_type": "email", "priority": 1,
                                "config": email_config(html_template=None)}])  # fmt: skip
    [shown] = previews.render({"event": feedback_event(1, tag1="<b>"), "computed": {}}, None)
    assert shown.text == (
        "Agent 42: score 45 (<b>)\n\nAgent 42 got 45 from 0x" + "cc" * 20 + ".\nTag: <b>"
    )


async def _send_to_smtp(values: dict[str, Any]) -> Mail:
    """What a real SMTP server receives for these values (as the worker sends it)."""
    config = EmailConfig.model_validate(email_config())
    async with serve_smtp(inbox := Inbox()) as server:
        message = build_message(config, values, sender=SENDER, idempotency_key="k")
        options = smtp_options(Settings(smtp_host="127.0.0.1", smtp_port=server.port,
                                        smtp_security="none", smtp_from=SENDER))  # fmt: skip
        await send_email(message, options, sender=SENDER, recipients=config.to)
    [mail] = inbox.mails
    return mail


hostile_text = st.one_of(
    st.text(),
    st.sampled_from(HOSTILE),
    st.lists(
        st.sampled_from(["<", ">", "&", '"', "\r", "\n", "\r\n", ".", "x", "é", "{{", "}}"])
    ).map("".join),
    # Very long: past a value's limit, and (three times over) past a part's.
    st.tuples(st.sampled_from([*HOSTILE, "y"]), st.integers(1, 40_000)).map(lambda t: t[0] * t[1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tag=hostile_text, agent=hostile_text)
def test_hostile_values_arrive_escaped_and_within_limits(tag: str, agent: str) -> None:
    values = {**feedback_event(1), "tag1": tag, "agent_id": agent}
    mail = asyncio.run(_send_to_smtp(values))
    assert mail.rcpt_tos == ["ops@example.com", "oncall@example.org"]
    assert set(mail.message.keys()) == HEADERS
    assert not mail.message.defects
    subject = str(mail.message["Subject"])
    assert "\r" not in subject
    assert "\n" not in subject
    assert len(subject) <= MAX_SUBJECT_CHARS
    text, markup = mail.text(), mail.html()
    assert markup is not None
    assert len(text) <= MAX_PART_CHARS + 2  # the final line break the email package adds
    assert len(markup) <= MAX_PART_CHARS + 2
    # In HTML, no value's markup survives: every < of it is escaped.
    assert "<script" not in markup
    assert markup.count("<") == markup.count(">")
    if len(tag) < MAX_VALUE_CHARS and len(text) < MAX_PART_CHARS - 1_000:
        shown = tag.replace("\x00", "\ufffd")
        # Line ends are the transport's: CRLF and CR arrive as LF, as in any mail.
        assert _lines(shown) in _lines(text)
        assert _lines(html.escape(shown, quote=True)) in _lines(markup)
    if len(tag) > MAX_VALUE_CHARS:
        assert CUT_MARKER in text


def _lines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# -- through the worker ------------------------------------------------------------------


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


@pytest.mark.parametrize("security", ["starttls", "tls", "none"])
async def test_an_email_is_delivered_with_login_in_each_security_mode(
    conn: psycopg.AsyncConnection, migrated_url: str, security: Security
) -> None:
    hostile = "<script>alert(1)</script>\r\nBcc: victim@example.net"
    async with serve_smtp(
        inbox := Inbox(), security=security, login=("mailer", "s3cret")
    ) as server:
        trigger, action, _ = await create_trigger(conn, "email",
                                                  email_config(from_name="ERC-8004 alerts"))  # fmt: skip
        [job] = await queue_jobs(conn, trigger, action, 1, tag1=hostile)
        settings = smtp_settings(migrated_url, server.port, smtp_security=security,
                                 smtp_username="mailer", smtp_password="s3cret",
                                 smtp_ca_file=server.ca_file)  # fmt: skip
        async with running_worker(settings):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
    [mail] = inbox.mails
    assert mail.encrypted is (security != "none")
    assert mail.login == "mailer"
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == ["ops@example.com", "oncall@example.org"]
    message = mail.message
    assert set(message.keys()) == HEADERS
    assert message["From"] == "ERC-8004 alerts <alerts@example.com>"
    assert (
        message["Subject"]
        == "Agent 42: score 45 (<script>alert(1)</script> Bcc: victim@example.net)"
    )
    assert mail.text() == f"Agent 42 got 45 from 0x{'cc' * 20}.\nTag: {_lines(hostile)}\n"
    assert mail.html() == ("<p>Agent <b>42</b> got 45.</p><p>Tag: &lt;script&gt;alert(1)"
                           "&lt;/script&gt;\nBcc: victim@example.net</p>\n")  # fmt: skip
    cursor = await conn.execute("SELECT idempotency_key FROM action_jobs WHERE id = %s", [job])
    key = (await cursor.fetchone() or [""])[0]
    assert message["Message-ID"] == f"<{key}@example.com>"
    [row] = await results(conn)
    assert row["status"] == "success"
    sent = row["response_data"].pop("request")
    assert row["response_data"] == {
        "reply": "2.0.0 OK: queued",
        "message_id": f"<{key}@example.com>",
    }
    # The request inspector: the envelope, headers and parts as received; no login.
    assert {k: v for k, v in sent.items() if k not in ("headers", "text", "html")} == {
        "method": "SMTP", "url": f"smtp://127.0.0.1:{server.port}", "security": security,
        "envelope": {"mail_from": SENDER, "rcpt_to": mail.rcpt_tos},
        "subject": message["Subject"]}  # fmt: skip
    assert sent["headers"] == {name: message[name] for name in HEADERS
                               if name not in ("MIME-Version", "Content-Type")}  # fmt: skip
    assert (_lines(sent["text"]), _lines(sent["html"])) == (mail.text(), mail.html())
    assert "s3cret" not in json.dumps(row["response_data"] | {"request": sent})
    assert "mailer" not in json.dumps(sent)


async def test_a_4xx_reply_is_retried_with_the_same_message_id(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_smtp(inbox := Inbox()) as server:
        inbox.fail_next(2, "451 4.3.0 Mailbox busy, try again later")
        trigger, action, _ = await create_trigger(conn, "email", email_config())
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(smtp_settings(migrated_url, server.port)):
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
    assert inbox.attempts == 3
    assert len(inbox.mails) == 1
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["retrying", "retrying", "success"]
    assert rows[0]["error_message"] == (
        "the SMTP server refused the message: 451 4.3.0 Mailbox busy, try again later"
    )


async def test_a_5xx_reply_is_dead_at_once(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_smtp(inbox := Inbox()) as server:
        inbox.fail_next(1, "554 5.7.1 Message rejected as spam")
        trigger, action, _ = await create_trigger(conn, "email", email_config())
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(smtp_settings(migrated_url, server.port)):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    [row] = await results(conn)
    assert row["status"] == "failed"
    assert (
        row["error_message"]
        == "the SMTP server refused the message: 554 5.7.1 Message rejected as spam"
    )
    sent = row["response_data"].pop("request")
    assert row["response_data"] == {"code": 554, "reply": "554 5.7.1 Message rejected as spam"}
    assert sent["envelope"] == {"mail_from": SENDER, "rcpt_to": email_config()["to"]}
    assert sent["subject"] == "Agent 42: score 45 (refund)"


async def test_recipients_refused_for_now_are_retried_and_for_good_are_kept(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_smtp(inbox := Inbox()) as server:
        inbox.refused_recipients = {"ops@example.com": "450 4.2.1 Mailbox temporarily unavailable",
                                    "oncall@example.org": "550 5.1.1 No such user"}  # fmt: skip
        trigger, action, _ = await create_trigger(conn, "email", email_config())
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(smtp_settings(migrated_url, server.port)):
            await eventually(lambda: results(conn), what="a first attempt")
            del inbox.refused_recipients["ops@example.com"]
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
    [mail] = inbox.mails
    assert mail.rcpt_tos == ["ops@example.com"]
    rows = await results(conn)
    first, last = rows[0], rows[-1]
    assert first["status"] == "retrying"
    assert first["error_message"].startswith("the SMTP server refused every recipient")
    assert last["response_data"]["refused"] == {"oncall@example.org": "550 5.1.1 No such user"}


async def test_an_unreachable_server_is_retried_then_dead(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_smtp(Inbox()) as server:
        port = server.port  # closed when the block ends
    trigger, action, _ = await create_trigger(conn, "email", email_config())
    await queue_jobs(conn, trigger, action, 1, max_attempts=2)
    async with running_worker(smtp_settings(migrated_url, port)):
        await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    rows = await results(conn)
    assert [row["status"] for row in rows] == ["retrying", "failed"]
    assert rows[0]["error_message"].startswith(f"cannot reach the SMTP server 127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (
            {"smtp_host": None},
            "no SMTP server is configured for email actions (set ERC8004_SMTP_HOST)",
        ),
        (
            {"smtp_from": None},
            "no From address is configured for email actions (set ERC8004_SMTP_FROM)",
        ),
        ({"smtp_security": "starttls"}, "STARTTLS"),  # required, and this server has none
        ({"smtp_security": "tls", "smtp_ca_file": None}, "is not trusted"),
    ],
)
async def test_settings_that_cannot_work_are_dead_at_once_saying_why(
    conn: psycopg.AsyncConnection, migrated_url: str, overrides: dict[str, Any], error: str
) -> None:
    security: Security = "tls" if overrides.get("smtp_security") == "tls" else "none"
    async with serve_smtp(inbox := Inbox(), security=security) as server:
        trigger, action, _ = await create_trigger(conn, "email", email_config())
        await queue_jobs(conn, trigger, action, 1)
        async with running_worker(smtp_settings(migrated_url, server.port, **overrides)):
            await eventually(lambda: _equals(job_status_counts(conn), {"dead": 1}))
    [row] = await results(conn)
    assert error in row["error_message"]
    assert not inbox.mails


async def test_a_retraction_is_a_second_message_in_the_same_thread(
    conn: psycopg.AsyncConnection, migrated_url: str
) -> None:
    async with serve_smtp(inbox := Inbox()) as server:
        trigger, action, _ = await create_trigger(conn, "email",
                                                  email_config(notify_retractions=True))  # fmt: skip
        [job] = await queue_jobs(conn, trigger, action, 1)
        async with running_worker(smtp_settings(migrated_url, server.port)):
            await eventually(lambda: len(inbox.mails) == 1)
            await eventually(lambda: _equals(job_status_counts(conn), {"succeeded": 1}))
            await queue_retraction(conn, job)
            await eventually(lambda: len(inbox.mails) == 2)
    first, retraction = (mail.message for mail in inbox.mails)
    assert retraction["Subject"] == "Retracted: " + first["Subject"]
    assert retraction["In-Reply-To"] == first["Message-ID"]
    assert inbox.mails[1].text().startswith("Retracted, reorged out of the chain:")


async def queue_retraction(conn: psycopg.AsyncConnection, job: int) -> None:
    """What the indexer queues after a reorg removed a delivered job's event
    (indexer/store.sql, queue_retractions)."""
    await conn.execute(
        "INSERT INTO action_jobs (trigger_id, action_id, event_id, chain_id, priority,"
        " idempotency_key, payload, max_attempts, retraction)"
        " SELECT trigger_id, action_id, event_id, chain_id, priority, idempotency_key,"
        " payload || '{\"retracted\": true}', max_attempts, true FROM action_jobs WHERE id = %s",
        [job],
    )


def test_a_long_html_part_is_cut_between_entities_and_tags() -> None:
    config = EmailConfig.model_validate(email_config(html_template="<p>{{tag1}}</p>" * 30))
    values = {**feedback_event(1), "tag1": "<&>" * 3_000}
    message = build_message(config, values, sender=SENDER, idempotency_key="k")
    part = message.get_body(("html",))
    assert part is not None
    markup = str(part.get_content()).rstrip("\n")
    assert len(markup) <= MAX_PART_CHARS
    assert markup.endswith(CUT_MARKER)
    kept = markup.removesuffix(CUT_MARKER)
    assert kept.endswith((";", ">"))  # a whole entity or tag, never part of one
    assert re.fullmatch(r"(?:&lt;|&amp;|&gt;)*", kept.replace("<p>", "").replace("</p>", ""))
