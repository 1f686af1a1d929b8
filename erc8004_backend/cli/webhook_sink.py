"""`erc8004 webhook-sink`: receive the backend's signed webhooks locally and print them."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from erc8004_backend.actions.rest import REPLAY_HEADER, RETRACTED_HEADER
from erc8004_backend.api.server import listen, serve_on
from erc8004_backend.cli.logs import configure_logging
from erc8004_backend.cli.signals import run_until_signalled
from erc8004_backend.demo.webhook_sink import ReceivedWebhook, WebhookReceiver
from erc8004_backend.errors import Erc8004Error

notes = Console(stderr=True)
PORT_ENV = "ERC8004_WEBHOOK_SINK_PORT"


def webhook_sink(
    host: Annotated[
        str, typer.Option("--host", metavar="ADDRESS", help="Listen address.")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port", metavar="PORT", min=1, max=65535, envvar=PORT_ENV, help="Listen port."
        ),
    ] = 9000,
    secret: Annotated[
        list[str] | None,
        typer.Option(
            "--secret",
            metavar="SECRET",
            help="A trigger's webhook secret (repeatable): check each signature against them.",
        ),
    ] = None,
) -> None:
    """Receive webhooks on any path, answer 200, and print each one: time, path, signature
    verdict and body."""
    configure_logging()
    secrets = [s for s in secret or [] if s]
    if secret and not secrets:
        raise Erc8004Error(
            "--secret is empty: give the webhook_secret the trigger was created with"
        )
    listening = listen(host, port)  # a clear error now, before saying where it listens
    console = Console(highlight=False)
    receiver = WebhookReceiver(secrets, on_receive=lambda webhook: show(console, webhook))
    checking = (
        f"checking signatures with {len(secrets)} secret{'s' if len(secrets) > 1 else ''}"
        if secrets
        else "not checking signatures (give the trigger's secret with --secret)"
    )
    notes.print(escape(f"webhook sink on http://{_url_host(host)}:{port}/ (any path); {checking};"
                       " Ctrl-C to stop"), soft_wrap=True, highlight=False)  # fmt: skip

    async def serve(stop: asyncio.Event) -> None:
        await serve_on(receiver, listening, stop)

    with listening:
        asyncio.run(run_until_signalled(serve, "webhook-sink", grace=5))
    count = len(receiver.received)
    notes.print(f"webhook sink stopped ({count} webhook{'' if count == 1 else 's'} received)")


def show(console: Console, webhook: ReceivedWebhook) -> None:
    """One webhook: a heading line, then the body (pretty JSON when it is JSON)."""
    at = datetime.fromtimestamp(webhook.received_at).strftime("%H:%M:%S")
    colour = {None: "yellow", True: "green", False: "bold red"}[webhook.signature_ok]
    target = f"{webhook.path}?{webhook.query}" if webhook.query else webhook.path
    heading = (
        f"[dim]{at}[/]  [bold]{escape(webhook.method)} {escape(target)}[/]"
        f"  signature [{colour}]{escape(webhook.verdict)}[/]"
    )
    if webhook.idempotency_key is not None:
        heading += f"  [dim]Idempotency-Key {escape(webhook.idempotency_key)}[/]"
        if webhook.repeat:
            heading += "  [bold yellow](a repeat: this key came before)[/]"
    if webhook.headers.get(REPLAY_HEADER.lower()) == "true":
        heading += "  [cyan](a replay: history asked for)[/]"
    if webhook.headers.get(RETRACTED_HEADER.lower()) == "true":
        heading += "  [bold yellow](a retraction: reorged out of the chain)[/]"
    console.print(heading, soft_wrap=True)
    if not webhook.body:
        console.print("[dim](no body)[/]")
        return
    try:
        document = webhook.json()
    except ValueError:
        console.print(escape(webhook.body.decode("utf-8", "replace")), soft_wrap=True)
        return
    console.print_json(data=document, ensure_ascii=False)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
