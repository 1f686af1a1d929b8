"""Email: one message per job through the operator's SMTP server (aiosmtplib), to the
action's recipients, with a plain-text part and an optional HTML one.

The server, its login and the From address are the operator's (ERC8004_SMTP_*): an action
names its recipients (a bounded list of plain addresses) and its templates only, so no
value an event carries can choose where a message goes or who it is from. Values never make
headers: the subject is one line (control characters become spaces) that the email package
encodes, the recipients are not templates, and in the HTML part every value is escaped.
Long values and parts are cut, with a marker saying so, rather than refused.

Retries send the same Message-ID (made from the job's idempotency key), which lets mail
systems that deduplicate by it drop a repeat; a retraction is a new message that refers to
the first (In-Reply-To), so that mail clients thread them. A replay's message (history asked
for) has the Message-ID a live one has, `(replay)` before its subject and text, and the
header X-ERC8004-Replay.

Each attempt keeps what it sent for its owner's request inspector (the server, envelope,
headers and parts), never the server's login.
"""

from __future__ import annotations

import asyncio
import email.policy
import html
import re
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Annotated, Any

import aiosmtplib
from pydantic import Field, field_validator

from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec, Preview, preview_of
from erc8004_backend.actions.configs import (
    RetractableConfig,
    validate_config,
)
from erc8004_backend.actions.delivery import DeliveryFailed, Job, excerpt, replay_marker
from erc8004_backend.actions.digest import digest_text
from erc8004_backend.config import Settings
from erc8004_backend.triggers.fields import RETRACTED_FIELD
from erc8004_backend.triggers.templates import render_template

MAX_RECIPIENTS = 20
MAX_TEMPLATE_CHARS = 20_000
# What a rendered message keeps. A subject past ~78 characters is folded by mail clients
# and cut by most of them; a value is cut before it is escaped, so that a cut never splits
# an HTML entity; a part is cut last, so that many long values stay within a sane message.
MAX_SUBJECT_CHARS = 200
MAX_VALUE_CHARS = 10_000
MAX_PART_CHARS = 100_000
CUT_MARKER = "[…]"
RETRACTION_SUBJECT_PREFIX = "Retracted: "
RETRACTION_TEXT_PREFIX = "Retracted, reorged out of the chain:\n\n"
RETRACTION_HTML_PREFIX = "<p><strong>Retracted, reorged out of the chain:</strong></p>\n"
# A replay's message (history asked for) says so in this header too, for mail filters.
REPLAY_HEADER = "X-ERC8004-Replay"

# A plain address (RFC 5321's dot-atom local part at a domain of DNS labels): no display
# names, comments, quoted local parts or IP literals, which only an attacker or a typo needs.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
# Controls, and the line and paragraph separators some mail clients break lines at.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# CRLF line ends; lines up to RFC 5322's limit (the email package folds a subject past 78
# characters at its start, "Subject:" CRLF SP, which readers show with a leading space); and
# 7-bit parts (quoted-printable or base64), which every server takes, 8BITMIME or not. The
# message is sent as these bytes: aiosmtplib would flatten it again with its own policy.
_POLICY = email.policy.SMTP.clone(max_line_length=998, cte_type="7bit")


def address_problem(address: str) -> str | None:
    """Why `address` is not a plain email address we send to, or None."""
    if len(address) > 254:
        return "is longer than 254 characters"
    if not _ADDRESS.fullmatch(address):
        return "is not a plain email address like alerts@example.com"
    if len(address.partition("@")[0]) > 64:
        return "has a local part longer than 64 characters"
    return None


class EmailConfig(RetractableConfig):
    to: Annotated[list[str], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    subject_template: Annotated[str, Field(min_length=1, max_length=1_000)]
    text_template: Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)]
    html_template: Annotated[str, Field(min_length=1, max_length=MAX_TEMPLATE_CHARS)] | None = None
    # Shown before the operator's From address ("ERC-8004 alerts <alerts@example.com>").
    from_name: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @field_validator("to")
    @classmethod
    def _plain_addresses(cls, addresses: list[str]) -> list[str]:
        for index, address in enumerate(addresses):
            if problem := address_problem(address):
                raise ValueError(f"to[{index}] {address[:80]!r} {problem}")
        if len({address.lower() for address in addresses}) != len(addresses):
            raise ValueError("lists an address twice")
        return addresses

    @field_validator("from_name")
    @classmethod
    def _one_line(cls, name: str | None) -> str | None:
        if name is not None and _LINE_BREAKING.search(name):
            raise ValueError("has a control character or line break")
        return name


def cut(text: str, limit: int) -> str:
    """`text`, or its first characters and a marker that it was cut, within `limit`."""
    if len(text) <= limit:
        return text
    return text[: limit - len(CUT_MARKER)] + CUT_MARKER


def _cut_html(markup: str, limit: int) -> str:
    """As cut, but not inside a tag (the author's: values in it are escaped) nor inside an
    entity (`&lt;` cut to `&l` would show as text)."""
    if len(markup) <= limit:
        return markup
    kept = markup[: limit - len(CUT_MARKER)]
    if kept.rfind("<") > kept.rfind(">"):
        kept = kept[: kept.rfind("<")]
    if kept.rfind("&") > kept.rfind(";"):
        kept = kept[: kept.rfind("&")]
    return kept + CUT_MARKER


def _plain_value(text: str) -> str:
    return cut(text, MAX_VALUE_CHARS).replace("\x00", "\ufffd")


def _html_value(text: str) -> str:
    return html.escape(_plain_value(text), quote=True)


def _subject_value(text: str) -> str:
    return _LINE_BREAKING.sub(" ", cut(text, MAX_SUBJECT_CHARS))


def subject_line(config: EmailConfig, values: dict[str, Any]) -> str:
    """One line: values' line breaks (and the template's own) become spaces."""
    rendered = render_template(config.subject_template, values, _subject_value)
    subject = " ".join(_LINE_BREAKING.sub(" ", rendered).split()) or "(no subject)"
    subject = replay_marker(values) + subject
    if values.get(RETRACTED_FIELD) == "true":
        subject = RETRACTION_SUBJECT_PREFIX + subject
    return cut(subject, MAX_SUBJECT_CHARS)


def text_part(config: EmailConfig, values: dict[str, Any]) -> str:
    text = replay_marker(values) + render_template(config.text_template, values, _plain_value)
    if values.get(RETRACTED_FIELD) == "true":
        text = RETRACTION_TEXT_PREFIX + text
    return cut(text, MAX_PART_CHARS)


def html_part(config: EmailConfig, values: dict[str, Any]) -> str | None:
    if config.html_template is None:
        return None
    markup = render_template(config.html_template, values, _html_value)
    if marker := replay_marker(values, html.escape):
        markup = f"<p>{marker.strip()}</p>\n{markup}"
    if values.get(RETRACTED_FIELD) == "true":
        markup = RETRACTION_HTML_PREFIX + markup
    return _cut_html(markup, MAX_PART_CHARS)


def _message_id(key: str, domain: str, *, retracted: bool) -> str:
    return f"<{key}{'.retracted' if retracted else ''}@{domain}>"


def build_message(
    config: EmailConfig,
    values: dict[str, Any],
    *,
    sender: str,
    idempotency_key: str,
    digest: Job | None = None,
) -> EmailMessage:
    """The message for a job's values (pure), or for a `digest` job's firings. `sender`: a
    plain address."""
    retracted = values.get(RETRACTED_FIELD) == "true"
    message = EmailMessage(policy=_POLICY)
    local, _, domain = sender.partition("@")
    message["From"] = Address(display_name=config.from_name or "", username=local, domain=domain)
    message["To"] = ", ".join(config.to)
    subject, text, markup = (subject_line(config, values), text_part(config, values),
                             html_part(config, values))  # fmt: skip
    if digest is not None and digest.digest is not None:
        subject, (text, markup) = digest_subject(config, digest), digest_parts(config, digest)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = _message_id(idempotency_key, domain, retracted=retracted)
    if retracted:
        original = _message_id(idempotency_key, domain, retracted=False)
        message["In-Reply-To"] = original
        message["References"] = original
    if replay_marker(values):
        message[REPLAY_HEADER] = "true"
    # RFC 3834: sent by a program, so that auto-responders do not answer it.
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    if markup is not None:
        message.add_alternative(markup, subtype="html")
    return message


def digest_subject(config: EmailConfig, job: Job) -> str:
    """A digest's subject: `Digest of N firings: ` and the first shown firing's subject."""
    count = job.digest.count if job.digest else 0
    first = job.digest.items[0].values if job.digest and job.digest.items else {}
    return cut(f"Digest of {count} firing{'' if count == 1 else 's'}: "
               f"{subject_line(config, first)}", MAX_SUBJECT_CHARS)  # fmt: skip


def digest_parts(config: EmailConfig, job: Job) -> tuple[str, str | None]:
    """A digest's text part (each shown firing's text, between rules) and HTML part."""
    text = digest_text(job, lambda item: text_part(config, item.values), limit=MAX_PART_CHARS,
                       escape=_plain_value, separator="\n\n----\n\n")  # fmt: skip
    if config.html_template is None:
        return cut(text, MAX_PART_CHARS), None
    markup = digest_text(job, lambda item: html_part(config, item.values) or "",
                         limit=MAX_PART_CHARS, escape=lambda line: f"<p>{_html_value(line)}</p>",
                         separator="\n<hr>\n")  # fmt: skip
    return cut(text, MAX_PART_CHARS), _cut_html(markup, MAX_PART_CHARS)


def smtp_options(settings: Settings) -> dict[str, Any]:
    """aiosmtplib.send's connection settings from ERC8004_SMTP_*; DeliveryFailed (not
    retryable) naming the setting that is missing."""
    if not settings.smtp_host:
        raise DeliveryFailed(
            "no SMTP server is configured for email actions (set ERC8004_SMTP_HOST)",
            retryable=False,
        )
    security = settings.smtp_security
    options: dict[str, Any] = {
        "hostname": settings.smtp_host,
        "port": settings.smtp_port or DEFAULT_PORTS[security],
        "use_tls": security == "tls",
        # starttls: required, not "if offered", so that no one between us and the server
        # can make us send in plain text by hiding the offer.
        "start_tls": security == "starttls",
        "timeout": settings.smtp_timeout,
    }
    if settings.smtp_ca_file is not None:
        options["tls_context"] = ssl.create_default_context(cafile=str(settings.smtp_ca_file))
    if settings.smtp_username:
        options["username"] = settings.smtp_username
        password = settings.smtp_password
        options["password"] = password.get_secret_value() if password else ""
    return options


def sender_address(settings: Settings) -> str:
    sender = settings.smtp_from
    if not sender:
        raise DeliveryFailed(
            "no From address is configured for email actions (set ERC8004_SMTP_FROM)",
            retryable=False,
        )
    if problem := address_problem(sender):
        raise DeliveryFailed(f"ERC8004_SMTP_FROM {sender[:80]!r} {problem}", retryable=False)
    return sender


def _reply(code: int, message: str) -> str:
    return excerpt(f"{code} {message}".strip())


def _refusal(error: aiosmtplib.SMTPResponseException, what: str) -> DeliveryFailed:
    """4xx: the server asks us to try again later; 5xx: it will not take the message."""
    reply = _reply(error.code, error.message)
    return DeliveryFailed(f"the SMTP server refused {what}: {reply}",
                          retryable=400 <= error.code < 500,
                          response={"code": error.code, "reply": reply})  # fmt: skip


def inspected_message(
    message: EmailMessage, options: dict[str, Any], *, sender: str, recipients: list[str]
) -> dict[str, Any]:
    """What an attempt sent, for its owner's request inspector: the server and its security,
    the envelope, the message's headers and excerpts of its parts. Never the login: the
    server's credentials are the operator's."""
    security = "tls" if options["use_tls"] else "starttls" if options["start_tls"] else "none"
    parts: dict[str, str] = {}
    for subtype in ("plain", "html"):
        part = message.get_body(preferencelist=(subtype,))
        if part is not None and part.get_content_subtype() == subtype:
            parts[subtype] = excerpt(part.get_content())
    return {
        "method": "SMTP",
        "url": f"smtp://{options['hostname']}:{options['port']}",
        "security": security,
        "envelope": {"mail_from": sender, "rcpt_to": list(recipients)},
        "subject": str(message["Subject"]),
        "headers": {
            name: str(value)
            for name, value in message.items()
            if name not in ("MIME-Version", "Content-Type")
        },
        "text": parts.get("plain"),
        "html": parts.get("html"),
    }


async def send_email(
    message: EmailMessage, options: dict[str, Any], *, sender: str, recipients: list[str]
) -> dict[str, Any]:
    """One SMTP session: the response record, or DeliveryFailed; either holds the request."""
    sent = inspected_message(message, options, sender=sender, recipients=recipients)
    try:
        record = await _send_email(message, options, sender=sender, recipients=recipients)
    except DeliveryFailed as failure:
        failure.response = {**(failure.response or {}), "request": sent}
        raise
    return {**record, "request": sent}


async def _send_email(
    message: EmailMessage, options: dict[str, Any], *, sender: str, recipients: list[str]
) -> dict[str, Any]:
    server = f"{options['hostname']}:{options['port']}"
    try:
        refused, reply = await aiosmtplib.send(message.as_bytes(), sender=sender,
                                               recipients=recipients, **options)  # fmt: skip
    except aiosmtplib.SMTPRecipientsRefused as error:
        # Every recipient refused: as the least final of their replies.
        codes = [item.code for item in error.recipients]
        retryable = any(400 <= code < 500 for code in codes)
        replies = {item.recipient: _reply(item.code, item.message) for item in error.recipients}
        raise DeliveryFailed(
            f"the SMTP server refused every recipient: {replies}",
            retryable=retryable,
            response={"refused": replies},
        ) from None
    except aiosmtplib.SMTPAuthenticationError as error:
        raise _refusal(error, "the login (ERC8004_SMTP_USERNAME, ERC8004_SMTP_PASSWORD)") from None
    except aiosmtplib.SMTPSenderRefused as error:
        raise _refusal(error, "the From address (ERC8004_SMTP_FROM)") from None
    except aiosmtplib.SMTPConnectResponseError as error:
        raise _refusal(error, "the connection") from None
    except aiosmtplib.SMTPResponseException as error:
        raise _refusal(error, "the message") from None
    except aiosmtplib.SMTPNotSupported as error:
        # STARTTLS required but not offered, or a login to a server that has none.
        raise DeliveryFailed(f"{server}: {error} (see ERC8004_SMTP_SECURITY)",
                             retryable=False) from None  # fmt: skip
    except (aiosmtplib.SMTPTimeoutError, TimeoutError):
        raise DeliveryFailed(f"{server} did not answer in time", retryable=True) from None
    except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError) as error:
        if untrusted := _certificate_refusal(error):
            raise DeliveryFailed(
                f"the certificate of {server} is not trusted: {untrusted.verify_message}"
                " (ERC8004_SMTP_CA_FILE names the CA to trust)",
                retryable=False,
            ) from None
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise DeliveryFailed(f"cannot reach the SMTP server {server}: {reason}",
                             retryable=True) from None  # fmt: skip
    except aiosmtplib.SMTPException as error:
        # What the client refuses to do with this server (a login it offers no AUTH for):
        # the settings', not the moment's.
        raise DeliveryFailed(f"{server}: {error} (see ERC8004_SMTP_*)", retryable=False) from None
    record: dict[str, Any] = {"reply": excerpt(reply), "message_id": message["Message-ID"]}
    if refused:
        # Some recipients took it: sending again would repeat it to them, so the others'
        # refusals are kept, not retried.
        record["refused"] = {address: _reply(item.code, item.message)
                             for address, item in refused.items()}  # fmt: skip
    return record


def _certificate_refusal(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed under a connection error (aiosmtplib wraps it)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


class EmailChannel:
    """A message to the action's recipients through the operator's SMTP server (not a
    user's address: no address guard), at most smtp_max_connections at once."""

    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.settings = dependencies.settings
        self.connections = asyncio.Semaphore(dependencies.settings.smtp_max_connections)

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = validate_config(EmailConfig, "email", job.config)
        options = smtp_options(self.settings)
        sender = sender_address(self.settings)
        message = build_message(config, job.values, sender=sender,
                                idempotency_key=job.idempotency_key, digest=job)  # fmt: skip
        async with self.connections:
            return await send_email(message, options, sender=sender, recipients=config.to)


CHANNEL = ChannelSpec(
    "email",
    EmailConfig,
    EmailChannel,
    template_keys=("subject_template", "text_template", "html_template"),
    digests=True,
    preview=preview_of(
        EmailConfig,
        "email",
        lambda config, values: Preview(
            text=f"{subject_line(config, values)}\n\n{text_part(config, values)}"
        ),
    ),
)
