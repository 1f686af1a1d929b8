"""The demo, start to finish: a devnet, the whole backend on it, local delivery targets, the
example triggers created through the REST API like a user would, then background activity and
a scripted scene on the chain, watched live: events, the agents' reputation, firings and
deliveries.

Everything runs in this process and on 127.0.0.1: anvil (a child process), the API, the
indexer, the trigger processor, a worker, a Telegram Bot API stand-in, a webhook sink and the
demo agent's MCP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
from eth_keys.datatypes import PrivateKey
from psycopg.rows import dict_row
from pydantic import SecretStr

from erc8004_backend.api.server import listening_url, serve_api
from erc8004_backend.api.tokens import token_sha256
from erc8004_backend.chain.config import DEVNET_CHAIN_ID, ChainConfig
from erc8004_backend.chain.signatures import personal_sign
from erc8004_backend.config import Settings
from erc8004_backend.database.queries import load_queries
from erc8004_backend.demo.agent_server import DemoAgentServer, ToolCall
from erc8004_backend.demo.agents import ShownAgents, agents_title, read_agents
from erc8004_backend.demo.scenario import (
    CLIENT_NAMES,
    SCENE,
    SCENE_CLIENTS,
    Feedback,
    NewcomerFeedback,
    Registration,
    Response,
    Revocation,
    SceneStep,
    demo_triggers,
    feedback_file,
    reputation_trigger,
)
from erc8004_backend.demo.telegram_api import LocalTelegramApi
from erc8004_backend.demo.view import DemoView
from erc8004_backend.demo.webhook_sink import ReceivedWebhook, WebhookReceiver
from erc8004_backend.devnet import Devnet, start_devnet
from erc8004_backend.devnet.activity.context import CLIENT_BALANCE
from erc8004_backend.devnet.activity.scripted import GivenFeedback
from erc8004_backend.devnet.documents import data_uri, registration_uri
from erc8004_backend.errors import Erc8004Error

QUERIES = load_queries("erc8004_backend.demo", "demo.sql")

DEMO_USER = {"username": "demo", "email": "demo@example.com", "password": "demo-password"}
# anvil's first development account (its well-known test mnemonic): it owns the demo agent
# and signs the agent's MCP token, as the owner's wallet would.
OWNER_KEY = PrivateKey(
    bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
)
# Devnet accounts (by index) the validator trigger trusts, and one it does not.
TRUSTED, UNTRUSTED = (1, 2), 5
# run_all of `erc8004 run`: settings, database URL, chains, the API's socket, stop.
BackendRunner = Callable[[Settings, str, list[ChainConfig], socket.socket, asyncio.Event],
                         Coroutine[Any, Any, None]]  # fmt: skip


class DemoError(Erc8004Error):
    """The demo could not be set up."""


@dataclass(frozen=True)
class DemoOptions:
    api_host: str = "127.0.0.1"  # as the API's URL names it (its socket has the port)
    rate: float = 2.0  # background events per second
    seconds: float | None = None  # None: until stopped
    seed: int = 0
    step_seconds: float = 1.0  # between two scripted feedbacks
    scene_pause: float = 60.0  # between two plays of the scene


async def run_demo(
    settings: Settings,
    database_url: str,
    api_socket: socket.socket,
    options: DemoOptions,
    view: DemoView,
    run_backend: BackendRunner,
    stop: asyncio.Event,
) -> None:
    """Until `stop` is set or `options.seconds` have passed; the API on `api_socket` (from
    `listen`, bound before the demo's database was made)."""
    if options.seconds is not None:
        asyncio.get_running_loop().call_later(options.seconds, stop.set)
    agent_token = secrets.token_urlsafe(24)
    bot_token = f"1000:{secrets.token_urlsafe(16)}"
    telegram = LocalTelegramApi(bot_token, on_message=lambda m: view.delivered(
        "telegram", f"chat {m.chat_id}: {_one_line(m.text)}"))  # fmt: skip
    sink = WebhookReceiver(on_receive=lambda r: view.delivered("webhook", _describe_webhook(r)))
    agent = DemoAgentServer(agent_token, on_call=lambda c: view.delivered(
        "mcp", _describe_call(c)))  # fmt: skip
    shown = ShownAgents()
    view.agents_title = agents_title()
    async with (
        start_devnet(0, seed=options.seed) as net,
        _serving(telegram) as telegram_url,
        _serving(sink) as sink_url,
        _serving(agent) as agent_url,
    ):
        settings = settings.model_copy(update={
            "database_url": database_url, "telegram_api_url": telegram_url,
            "telegram_bot_token": SecretStr(bot_token), "allow_private_urls": True,
            "telegram_rate_limits": False,  # its Telegram is a local stand-in
            "jwt_secret": settings.jwt_secret or SecretStr(secrets.token_urlsafe(32)),
        })  # fmt: skip
        root = listening_url(options.api_host, api_socket)
        api_url = f"{root}/api/v1"
        view.header.extend([
            f"dashboard    {root}/ (sign in as {DEMO_USER['username']},"
            f" password {DEMO_USER['password']})",
            f"devnet       {net.url} (chain {DEVNET_CHAIN_ID}; registries at"
            f" {net.registries.identity}, …)",
            f"REST API     {api_url} (user {DEMO_USER['username']},"
            f" password {DEMO_USER['password']})",
            f"targets      Telegram Bot API {telegram_url} · webhook sink {sink_url}"
            f" · agent MCP server {agent_url}/mcp",
        ])  # fmt: skip
        chains = [net.chain_config(confirmations=0, poll_interval=0.2)]
        backend = asyncio.create_task(run_backend(settings, database_url, chains, api_socket, stop))
        targets = {"webhook": sink_url, "mcp": f"{agent_url}/mcp"}
        play = asyncio.create_task(_play(net, api_url, database_url, sink, targets, agent_token,
                                         shown, options, view, stop))  # fmt: skip
        try:
            await asyncio.wait({backend, play}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Whichever ended first, the other stops the way it does at Ctrl-C.
            stop.set()
            outcomes = await asyncio.gather(play, backend, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        # The backend has stopped, so these numbers are final: the view ends with them.
        if shown.demo_agent is not None:
            async with await psycopg.AsyncConnection.connect(
                database_url, autocommit=True, row_factory=dict_row
            ) as conn:
                view.agent_lines(await read_agents(conn, DEVNET_CHAIN_ID, shown))


async def _play(
    net: Devnet,
    api_url: str,
    database_url: str,
    sink: WebhookReceiver,
    targets: dict[str, str],
    agent_token: str,
    shown: ShownAgents,
    options: DemoOptions,
    view: DemoView,
    stop: asyncio.Event,
) -> None:
    """Set up the demo through the API, then drive the chain and watch, until `stop`."""
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as api:
        await _wait_until_ready(api, stop)
        if stop.is_set():
            return
        session = await _sign_in(api)
        agent_id = await _set_up(net, api, session, sink, targets, agent_token, view)
    shown.demo_agent = agent_id
    watching = asyncio.create_task(_watch(database_url, session["user_id"], net, shown, view, stop))
    try:
        await _drive_chain(net, agent_id, shown, options, view, stop)
    finally:
        stop.set()
        await watching


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a free loopback port until the block ends."""
    port = free_port()
    done = asyncio.Event()
    task = asyncio.create_task(serve_api(app, "127.0.0.1", port, done))
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        done.set()
        await task


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _wait_until_ready(api: httpx.AsyncClient, stop: asyncio.Event) -> None:
    for _ in range(600):
        if stop.is_set():
            return
        with contextlib.suppress(httpx.TransportError):
            if (await api.get("/ready")).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise DemoError(f"the API at {api.base_url} did not become ready in 30 s")


async def _sign_in(api: httpx.AsyncClient) -> dict[str, str]:
    registered = await api.post("/auth/register", json=DEMO_USER)
    if registered.status_code not in (201, 409):
        raise DemoError(f"cannot register the demo user: {registered.text}")
    login = await api.post("/auth/login", json={"username": DEMO_USER["username"],
                                                 "password": DEMO_USER["password"]})  # fmt: skip
    if login.status_code != 200:
        raise DemoError(f"cannot log in as the demo user: {login.text}")
    token = login.json()["access_token"]
    me = await api.get("/me", headers={"Authorization": f"Bearer {token}"})
    return {"Authorization": f"Bearer {token}", "user_id": me.json()["id"]}


def _auth(session: dict[str, str]) -> dict[str, str]:
    return {"Authorization": session["Authorization"]}


async def _set_up(
    net: Devnet,
    api: httpx.AsyncClient,
    session: dict[str, str],
    sink: WebhookReceiver,
    targets: dict[str, str],
    agent_token: str,
    view: DemoView,
) -> int:
    """The demo agent on the chain, its MCP token, the scene's clients, and the eight
    triggers; returns its id."""
    owner = OWNER_KEY.public_key.to_checksum_address().lower()
    if owner not in net.activity.accounts:
        raise DemoError(f"the devnet has no account {owner} (anvil's first development account)")
    history = await net.activity.run(events=60)  # other agents, so the chain has a past
    view.add("note", f"the devnet has a history: {history.events} events")
    uri = registration_uri(
        "Demo Agent",
        description="The erc8004 demo's agent: it takes feedback on its own MCP server.",
        mcp_url=targets["mcp"],
    )
    agent_id = (await net.activity.register_agent(uri, owner=owner)).agent_id
    net.activity.hands_off.add(agent_id)  # its registration file must keep naming our server
    view.add("note", f"registered the demo agent #{agent_id}, owned by {owner}")
    await store_agent_token(api, _auth(session), agent_id, agent_token)
    view.add("note", f"stored agent #{agent_id}'s MCP token, signed by its owner (EIP-191)")
    # The scene's clients are no accounts of the node: it lets them send, as it does the
    # activity's own extra clients.
    for client in SCENE_CLIENTS:
        await net.rpc.call("anvil_impersonateAccount", [client])
        await net.rpc.call("anvil_setBalance", [client, hex(CLIENT_BALANCE)])
    view.add("note", "the scene's clients: " + ", ".join(
        f"{name} {address}" for address, name in CLIENT_NAMES.items()))  # fmt: skip
    validators = [net.activity.accounts[i] for i in TRUSTED]
    bodies = [*demo_triggers(agent_id, targets["webhook"], validators),
              reputation_trigger(agent_id, SCENE_CLIENTS)]  # fmt: skip
    for body in bodies:
        created = await api.post("/triggers", headers=_auth(session), json=body)
        if created.status_code != 201:
            raise DemoError(f"cannot create the trigger {body['name']!r}: {created.text}")
        if secret := created.json().get("webhook_secret"):
            sink.secrets.add(secret)
    view.add("note", "created the seven example triggers and a reputation threshold through"
                     " the REST API")  # fmt: skip
    return agent_id


async def store_agent_token(
    api: httpx.AsyncClient, headers: dict[str, str], agent_id: int, token: str
) -> None:
    """Store the demo agent's MCP token as its owner's wallet would authorize it: ask for a
    challenge (once the indexer has seen the agent: 404 until then), sign its message with
    the owner's key (personal_sign) and PUT the token with the signature and the nonce."""
    path = f"/agents/{DEVNET_CHAIN_ID}/{agent_id}/mcp-token"
    body = {"action": "set", "token_sha256": token_sha256(token)}
    asked = None
    for _ in range(200):
        asked = await api.post(f"{path}/challenge", headers=headers, json=body)
        if asked.status_code != 404:
            break
        await asyncio.sleep(0.1)
    if asked is None or asked.status_code != 201:
        raise DemoError(f"cannot store the demo agent's MCP token: {asked and asked.text}")
    challenge = asked.json()
    signature = personal_sign(OWNER_KEY, challenge["message"])
    answer = await api.put(path, headers=headers, json={"token": token, "signature": signature,
                                                        "nonce": challenge["nonce"]})  # fmt: skip
    if answer.status_code not in (200, 201):
        raise DemoError(f"cannot store the demo agent's MCP token: {answer.text}")


async def _watch(
    database_url: str,
    user_id: str,
    net: Devnet,
    shown: ShownAgents,
    view: DemoView,
    stop: asyncio.Event,
) -> None:
    """Feed the view from the database and the chain, twice a second."""
    after = 0
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        while not stop.is_set():
            cursor = await conn.execute(
                QUERIES["new_events"], {"chain_id": DEVNET_CHAIN_ID, "after": after}
            )
            rows = await cursor.fetchall()
            if rows:
                after = rows[-1]["id"]
                view.new_events(rows)
            view.agent_lines(await read_agents(conn, DEVNET_CHAIN_ID, shown))
            cursor = await conn.execute(QUERIES["trigger_counts"], {"user_id": user_id})
            view.trigger_counts(await cursor.fetchall())
            view.head = await net.rpc.block_number()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)


@dataclass
class _Play:
    """One play of the scene: what its steps made, for the steps that refer to them."""

    given: dict[int, GivenFeedback] = field(default_factory=dict)  # by position in SCENE
    newcomer: int | None = None  # the agent its Registration made


async def _drive_chain(
    net: Devnet,
    agent_id: int,
    shown: ShownAgents,
    options: DemoOptions,
    view: DemoView,
    stop: asyncio.Event,
) -> None:
    """Background activity at `options.rate`, with the scene's steps woven in (one generator,
    one transaction at a time: they share the accounts' nonces); the scene plays again after
    a pause."""
    loop = asyncio.get_running_loop()
    scene_started = loop.time()
    position = 0
    play = _Play()
    while not stop.is_set():
        if position < len(SCENE):
            step = SCENE[position]
            await _play_step(net, agent_id, position, step, play)
            if play.newcomer is not None:
                shown.newcomer = play.newcomer
            view.add("note", f"scene: {_describe_step(step, agent_id, play)}")
            position += 1
        elif loop.time() - scene_started > len(SCENE) * options.step_seconds + options.scene_pause:
            position, scene_started, play = 0, loop.time(), _Play()
        if options.rate > 0:
            await net.activity.run(events=max(1, round(options.rate * options.step_seconds)))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), options.step_seconds)


async def _play_step(net: Devnet, agent_id: int, position: int, step: SceneStep,
                     play: _Play) -> None:  # fmt: skip
    activity = net.activity
    if isinstance(step, Feedback):
        file_uri, file_hash = (feedback_file(agent_id, position, step.score)
                               if step.with_file else ("", b"\x00" * 32))  # fmt: skip
        play.given[position] = await activity.give_feedback(
            agent_id, step.score, tag1=step.tag1, file_uri=file_uri, file_hash=file_hash,
            client=SCENE_CLIENTS[step.client])  # fmt: skip
    elif isinstance(step, Registration):
        play.newcomer = (await activity.register_agent(registration_uri("Newcomer Agent"))).agent_id
        # Its feedback is the scene's: the random activity leaves it alone, as the demo agent.
        activity.hands_off.add(play.newcomer)
    elif isinstance(step, NewcomerFeedback):
        if play.newcomer is None:
            raise DemoError(f"scene step {position} rates a newcomer before one registered")
        await activity.give_feedback(play.newcomer, step.score, tag1="starred",
                                     client=SCENE_CLIENTS[step.client])  # fmt: skip
    elif isinstance(step, Revocation):
        given = _given(play, step.step, position)
        await activity.revoke_feedback(agent_id, given.client, given.feedback_index)
    elif isinstance(step, Response):
        given = _given(play, step.step, position)
        uri, digest = data_uri({"comment": "Refund sent: sorry for the trouble.",
                                "agentId": agent_id})  # fmt: skip
        await activity.append_response(agent_id, given.client, given.feedback_index,
                                       response_uri=uri, response_hash=digest)  # fmt: skip
    else:
        validator = activity.accounts[TRUSTED[0] if step.trusted else UNTRUSTED]
        request = await activity.request_validation(agent_id, validator)
        await activity.respond_validation(request.request_hash, step.response, tag="demo")


def _given(play: _Play, step: int, position: int) -> GivenFeedback:
    given = play.given.get(step)
    if given is None:
        raise DemoError(f"scene step {position} refers to step {step}, which gave no feedback")
    return given


def _describe_step(step: SceneStep, agent_id: int, play: _Play) -> str:
    if isinstance(step, Feedback):
        what = f"feedback {step.score} for agent #{agent_id} from {_client(step.client)}" + (
            f", tag {step.tag1}" if step.tag1 != "starred" else "")  # fmt: skip
    elif isinstance(step, Registration):
        what = f"registration of agent #{play.newcomer}"
    elif isinstance(step, NewcomerFeedback):
        what = f"feedback {step.score} for agent #{play.newcomer} from {_client(step.client)}"
    elif isinstance(step, Revocation | Response):
        earlier = SCENE[step.step]
        assert isinstance(earlier, Feedback)  # _play_step checked: it gave feedback
        client = _client(earlier.client)
        what = (f"{client} revokes its {earlier.score} for agent #{agent_id}"
                if isinstance(step, Revocation)
                else f"agent #{agent_id}'s owner answers {client}'s {earlier.score}")  # fmt: skip
    else:
        by = "a trusted" if step.trusted else "an untrusted"
        what = f"validation of agent #{agent_id}: {step.response}/100 by {by} validator"
    return what + (f" ({step.note})" if step.note else "")


def _client(index: int) -> str:
    return f"client {CLIENT_NAMES[SCENE_CLIENTS[index]]}"


def _one_line(text: str, limit: int = 110) -> str:
    flat = " · ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _describe_webhook(received: ReceivedWebhook) -> str:
    verdict = {True: "signature ok", False: "BAD SIGNATURE", None: "unsigned"}
    return _one_line(f"POST {received.path} ({verdict[received.signature_ok]})"
                     f" {received.body.decode('utf-8', 'replace')}")  # fmt: skip


def _describe_call(call: ToolCall) -> str:
    event = call.event
    verified = " · file verified" if call.arguments.get("file") is not None else ""
    return (f"agent.receiveFeedback(agent {event.get('agent_id')}, score {event.get('score')},"
            f" tx {str(event.get('transaction_hash'))[:10]}…){verified}")  # fmt: skip
