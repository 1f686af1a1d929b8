"""The `mcp` channel: the agent's target from PostgreSQL (registration file and encrypted
token), and tool calls against a real MCP server built with the official SDK."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from eth_hash.auto import keccak
from psycopg.types.json import Jsonb

from erc8004_backend.actions.delivery import DeliveryFailed, Job
from erc8004_backend.actions.mcp import (
    McpConfig,
    McpTarget,
    auth_header,
    deliver_mcp,
    fetch_verified_file,
    file_content,
    load_mcp_target,
    mcp_tool_arguments,
    root_cause,
)
from erc8004_backend.config import DEVELOPMENT_TOKEN_KEYS, Settings
from erc8004_backend.encryption import SecretBox, agent_token_context
from erc8004_backend.triggers.fields import FIELDS
from tests.support.asgi import serve_asgi
from tests.support.jobs import USER_ID, create_user
from tests.support.mcp_agent import McpAgentServer
from tests.support.waiting import free_port

CHAIN = 31337
AGENT = 7
TOKEN = "s3cret-agent-token"
FEEDBACK_FILE = json.dumps({"score": 95, "comment": "fast and correct"}).encode()
BOX = SecretBox.from_spec(DEVELOPMENT_TOKEN_KEYS)


def data_uri(body: bytes) -> str:
    return "data:application/json;base64," + base64.b64encode(body).decode()


def keccak_hex(body: bytes) -> str:
    return "0x" + keccak(body).hex()


def feedback_event(**changes: Any) -> dict[str, Any]:
    """A NewFeedback event as the processor puts it in a job's payload: every field, the
    ones of other events None, numbers as text."""
    event: dict[str, Any] = dict.fromkeys(FIELDS)
    event.update(
        chain_id=CHAIN,
        registry="reputation",
        event_type="NewFeedback",
        block_number="12",
        block_hash="0x" + "ab" * 32,
        transaction_hash="0x" + "cd" * 32,
        log_index=3,
        timestamp="2025-01-23T10:00:00+00:00",
        agent_id=str(AGENT),
        client_address="0x" + "11" * 20,
        feedback_index="1",
        value="95",
        value_decimals="0",
        score="95",
        tag1="quality",
        file_uri=data_uri(FEEDBACK_FILE),
        file_hash=keccak_hex(FEEDBACK_FILE),
    )
    event.update(changes)
    return event


def feedback_job(event: dict[str, Any] | None = None) -> Job:
    return Job(
        id=1,
        trigger_id="7f6c3e4a-0000-4000-8000-000000000001",
        trigger_name="great feedback",
        user_id="7f6c3e4a-0000-4000-8000-000000000002",
        action_id="7f6c3e4a-0000-4000-8000-000000000003",
        action_type="mcp",
        config={},
        event_id=42,
        chain_id=CHAIN,
        attempt=1,
        max_attempts=3,
        idempotency_key="idem-1",
        payload={
            "event_id": 42,
            "event": event if event is not None else feedback_event(),
            "computed": {
                "ema_score": "91.5",
                "count": 4,
                "trigger_name": "great feedback",
                "trigger_id": "7f6c3e4a-0000-4000-8000-000000000001",
            },
        },
    )


def expected_event(event: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if value is not None}


def private_settings(**changes: Any) -> Settings:
    return Settings(allow_private_urls=True, registration_fetch_timeout=2.0, **changes)


async def deliver(
    target: McpTarget,
    job: Job | None = None,
    *,
    settings: Settings | None = None,
    **config: Any,
) -> dict[str, Any]:
    return await deliver_mcp(
        job or feedback_job(), McpConfig(**config), target, settings=settings or private_settings()
    )


async def delivery_failure(
    target: McpTarget, job: Job | None = None, *, settings: Settings | None = None, **config: Any
) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await deliver(target, job, settings=settings, **config)
    return caught.value


# -- pure functions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "header"),
    [
        (None, ("Authorization", f"Bearer {TOKEN}")),
        ({"name": "MCP", "endpoint": "https://a/"}, ("Authorization", f"Bearer {TOKEN}")),
        ({"auth": "bearer"}, ("Authorization", f"Bearer {TOKEN}")),  # not an object: ignored
        ({"auth": {"header": "X-Api-Key", "scheme": "Token"}}, ("X-Api-Key", f"Token {TOKEN}")),
        ({"auth": {"header": "X-Api-Key", "scheme": ""}}, ("X-Api-Key", TOKEN)),
        ({"auth": {"header": "X-Api-Key"}}, ("X-Api-Key", TOKEN)),
        ({"auth": {"header": "authorization"}}, ("authorization", f"Bearer {TOKEN}")),
        ({"auth": {"scheme": "Token"}}, ("Authorization", f"Token {TOKEN}")),
        ({"authHeader": "X-Agent-Token", "authScheme": ""}, ("X-Agent-Token", TOKEN)),
        (
            {"authHeader": "Authorization", "authScheme": "Basic"},
            ("Authorization", f"Basic {TOKEN}"),
        ),
        (  # the nested form wins over the flat one
            {"auth": {"header": "X-A"}, "authHeader": "X-B"},
            ("X-A", TOKEN),
        ),
    ],
)
def test_auth_header(service: dict[str, Any] | None, header: tuple[str, str]) -> None:
    assert auth_header(service, TOKEN) == header


@pytest.mark.parametrize(
    ("service", "token", "message"),
    [
        ({"auth": {"header": "X Api Key"}}, TOKEN, "'X Api Key' is not a valid HTTP header name"),
        ({"auth": {"header": "X-Api-Key:"}}, TOKEN, "is not a valid HTTP header name"),
        ({"authHeader": "X-Key\r\nEvil: 1"}, TOKEN, "is not a valid HTTP header name"),
        ({"authHeader": ""}, TOKEN, "'' is not a valid HTTP header name"),
        ({"authHeader": 5}, TOKEN, "header 5 is not a valid HTTP header name"),
        ({"authHeader": "Host"}, TOKEN, "header 'Host' is set by the MCP transport"),
        ({"authHeader": "Mcp-Session-Id"}, TOKEN, "is set by the MCP transport"),
        ({"authScheme": "Bearer x"}, TOKEN, "auth scheme 'Bearer x' is not valid"),
        ({"authScheme": ["Bearer"]}, TOKEN, "auth scheme ['Bearer'] is not valid"),
        (None, "", "cannot be sent in an HTTP header"),
        (None, "abc\r\nX-Evil: 1", "cannot be sent in an HTTP header"),
        (None, " padded ", "cannot be sent in an HTTP header"),
    ],
)
def test_auth_header_refuses_unusable_headers(
    service: dict[str, Any] | None, token: str, message: str
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        auth_header(service, token)

    assert message in str(caught.value)
    assert caught.value.retryable is False
    if token.strip():
        assert token.strip() not in str(caught.value)


def test_tool_arguments_carry_the_event_trigger_and_computed_values() -> None:
    event = feedback_event()
    job = feedback_job(event)

    arguments = mcp_tool_arguments(job, None)

    assert arguments == {
        "event": expected_event(event),
        "trigger": {"id": job.trigger_id, "name": "great feedback"},
        "computed": {"ema_score": "91.5", "count": 4},
        "idempotency_key": "idem-1",
    }
    assert "owner" not in arguments["event"]  # None: left out
    assert arguments["event"]["score"] == "95"


def test_tool_arguments_carry_a_verified_file() -> None:
    job = feedback_job()
    job.payload["computed"] = {"count": 1, "ema_score": None}

    arguments = mcp_tool_arguments(job, {"score": 95})

    assert arguments["file"] == {"score": 95}
    assert arguments["computed"] == {"count": 1}


def test_file_content_is_json_when_it_parses_else_text() -> None:
    assert file_content(b'{"a": [1, 2]}') == {"a": [1, 2]}
    assert file_content(b"\xef\xbb\xbf[1]") == [1]
    assert file_content(b"plain words") == "plain words"
    assert file_content(b'{"x": NaN}') == '{"x": NaN}'
    assert file_content(b"caf\xe9") == "caf\ufffd"


def test_the_target_does_not_show_its_token() -> None:
    target = McpTarget("https://agent.example/mcp", "Authorization", f"Bearer {TOKEN}")

    assert TOKEN not in repr(target)


def test_root_cause_digs_through_exception_groups() -> None:
    failure = DeliveryFailed("inner", retryable=False)
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [ValueError("x"), failure])])

    assert root_cause(nested) is failure
    assert isinstance(root_cause(ExceptionGroup("g", [KeyError("k")])), KeyError)


# -- the target, from PostgreSQL -----------------------------------------------------------


async def register_agent(
    conn: psycopg.AsyncConnection,
    *,
    endpoint: str | None = "https://agent.example/mcp",
    service: dict[str, Any] | None = None,
    status: str | None = "fetched",
    error: str | None = None,
    agent_id: int = AGENT,
) -> None:
    """A Registered event and, unless status is None, its registration row."""
    uri = f"https://agent.example/{agent_id}.json"
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " token_uri) VALUES (%s, 'identity', 'Registered', %s, 1, %s, now(), %s, 0, 0, %s, %s)",
        (
            CHAIN,
            "0x8004a818bfb912233c491871b3d84c89a494bd9e",
            f"0x{agent_id:064x}",  # block hash: one event per agent
            f"0x{agent_id:064x}",
            agent_id,
            uri,
        ),
    )
    if status is None:
        return
    services = [{"name": "web", "endpoint": "https://agent.example/"}]
    if endpoint is not None:
        services.append(
            {"name": "MCP", "endpoint": endpoint, "version": "2025-06-18", **(service or {})}
        )
    fetched = status == "fetched"
    await conn.execute(
        "INSERT INTO agent_registrations (chain_id, agent_id, uri_digest, agent_uri, status,"
        " document, services, mcp_endpoint, error, fetched_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, CASE WHEN %s THEN now() END)",
        (
            CHAIN,
            agent_id,
            hashlib.sha256(uri.encode()).hexdigest(),
            uri,
            status,
            Jsonb({"name": "agent", "services": services}) if fetched else None,
            Jsonb(services if fetched else []),
            endpoint if fetched else None,
            error,
            fetched,
        ),
    )


async def store_token(
    conn: psycopg.AsyncConnection,
    token: str = TOKEN,
    *,
    agent_id: int = AGENT,
    sealed_for: tuple[int, int] | None = None,
    set_by: str = USER_ID,
) -> None:
    sealed = BOX.seal(token, agent_token_context(*(sealed_for or (CHAIN, agent_id))))
    await conn.execute(
        "INSERT INTO agent_mcp_tokens (chain_id, agent_id, token_ciphertext, key_id, created_by)"
        " VALUES (%s, %s, %s, %s, %s)",
        (CHAIN, agent_id, sealed.ciphertext, sealed.key_id, await create_user(conn, set_by)),
    )


async def target_failure(conn: psycopg.AsyncConnection, agent_id: int = AGENT) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await load_mcp_target(conn, CHAIN, agent_id, BOX, user_id=USER_ID)
    return caught.value


async def test_load_target_from_the_registration_and_the_stored_token(
    conn: psycopg.AsyncConnection,
) -> None:
    await register_agent(conn)
    await store_token(conn)
    await register_agent(conn, agent_id=8, service={"auth": {"header": "X-Api-Key", "scheme": ""}})
    await store_token(conn, agent_id=8)

    assert await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=USER_ID) == McpTarget(
        "https://agent.example/mcp", "Authorization", f"Bearer {TOKEN}"
    )
    custom = await load_mcp_target(
        conn, CHAIN, 8, BOX, user_id=USER_ID
    )  # the header the file names
    assert (custom.header_name, custom.header_value) == ("X-Api-Key", TOKEN)


async def store_transfer(conn: psycopg.AsyncConnection, log_index: int, stored: str) -> None:
    """A Transfer of the agent, stored at `stored` (an SQL time expression)."""
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        f" created_at) VALUES (%s, 'identity', 'Transfer', %s, 9, %s, now(), %s, 0, %s, %s,"
        f" {stored})",
        [CHAIN, "0x" + "80" * 20, "0x" + "99" * 32, "0x" + "98" * 32, log_index, AGENT],
    )


async def test_only_the_account_that_set_the_token_calls_with_it(
    conn: psycopg.AsyncConnection,
) -> None:
    """The token is the agent owner's credential on its server: another account's trigger
    on the agent's events does not call the server (any tool it names) with it."""
    await register_agent(conn)
    await store_token(conn)
    another = await create_user(conn, "b0b00000-0000-4000-8000-000000000002")
    with pytest.raises(DeliveryFailed) as caught:
        await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=another)
    assert caught.value.retryable is False
    assert str(caught.value) == (
        f"the MCP token of agent {AGENT} on chain {CHAIN} was set by another account: only"
        " that account's triggers call the agent's server with it (its owner can set it from"
        f" this one via PUT /api/v1/agents/{CHAIN}/{AGENT}/mcp-token)"
    )
    assert TOKEN not in str(caught.value)
    assert await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=USER_ID)


async def test_a_transfer_stored_after_the_token_retires_it(
    conn: psycopg.AsyncConnection,
) -> None:
    """The new owner's registration file names the endpoint: the old owner's token would
    go to the new owner's server."""
    await register_agent(conn)
    await store_token(conn)
    await store_transfer(conn, 0, "now() - interval '1 hour'")  # the mint, before the token
    assert await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=USER_ID)
    await store_transfer(conn, 1, "clock_timestamp() + interval '1 second'")
    failure = await target_failure(conn)
    assert failure.retryable is False
    assert str(failure) == (
        f"agent {AGENT} on chain {CHAIN} changed hands after its MCP token was set; its new"
        f" owner must set one via PUT /api/v1/agents/{CHAIN}/{AGENT}/mcp-token"
    )


async def test_load_target_waits_for_the_registration(conn: psycopg.AsyncConnection) -> None:
    # One database for every case (each agent its own): databases take time to create.
    await store_token(conn, agent_id=1)  # no Registered event yet
    await register_agent(conn, agent_id=2, status=None)  # not yet queued for the resolver
    await store_token(conn, agent_id=2)
    await register_agent(conn, agent_id=3, status="pending")
    await store_token(conn, agent_id=3)

    failures = [await target_failure(conn, agent_id) for agent_id in (1, 2, 3)]

    assert [failure.retryable for failure in failures] == [True, True, True]
    assert [str(failure) for failure in failures] == [
        f"agent 1 on chain {CHAIN} has no Registered event indexed yet,"
        " so its MCP endpoint is unknown",
        f"the registration file of agent 2 on chain {CHAIN} has not been fetched yet",
        f"the registration file of agent 3 on chain {CHAIN} has not been fetched yet",
    ]


async def test_load_target_gives_up_when_it_cannot_succeed(conn: psycopg.AsyncConnection) -> None:
    await register_agent(
        conn, agent_id=1, status="failed", error="HTTP 404 from https://agent.example/1.json"
    )
    await register_agent(conn, agent_id=2, endpoint=None)
    await register_agent(conn, agent_id=3)  # no token
    await register_agent(conn, agent_id=4)
    await store_token(conn, agent_id=4, sealed_for=(CHAIN, 5))  # copied from another row
    await register_agent(conn, agent_id=5, service={"authHeader": "X Key"})
    for agent_id in (1, 2, 5):
        await store_token(conn, agent_id=agent_id)

    failures = [await target_failure(conn, agent_id) for agent_id in (1, 2, 3, 4, 5)]

    assert [failure.retryable for failure in failures] == [False] * 5
    assert [str(failure) for failure in failures] == [
        f"the registration file of agent 1 on chain {CHAIN} could not be fetched:"
        " HTTP 404 from https://agent.example/1.json",
        f"the registration file of agent 2 on chain {CHAIN} has no MCP service with an http(s)"
        " endpoint",
        f"agent 3 on chain {CHAIN} has no MCP token stored; its owner must set one via"
        f" PUT /api/v1/agents/{CHAIN}/3/mcp-token",
        f"the MCP token of agent 4 on chain {CHAIN} cannot be decrypted (value does not decrypt"
        " with its key (tampered or misplaced)); check ERC8004_TOKEN_KEYS or have the owner set"
        " the token again",
        "the registration file's MCP auth header 'X Key' is not a valid HTTP header name"
        " (letters, digits and !#$%&'*+-.^_`|~ only; no spaces or colons)",
    ]


# -- delivery to a real MCP server -----------------------------------------------------


@pytest.fixture
async def agent() -> AsyncIterator[McpAgentServer]:
    async with McpAgentServer(token=TOKEN) as server:
        yield server


def target_of(agent: McpAgentServer, token: str = TOKEN) -> McpTarget:
    return McpTarget(agent.url, "Authorization", f"Bearer {token}")


@pytest.mark.parametrize("transport", ["stateless, JSON answers", "sessions, SSE answers"])
async def test_delivery_pushes_the_event_to_the_agents_tool(
    conn: psycopg.AsyncConnection, transport: str
) -> None:
    stateless = transport.startswith("stateless")
    async with McpAgentServer(token=TOKEN, stateless=stateless, json_response=stateless) as agent:
        await register_agent(conn, endpoint=agent.url)
        await store_token(conn)
        job = feedback_job()

        target = await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=USER_ID)
        response = await deliver(target, job)

    assert response == {
        "endpoint": agent.url,
        "tool": "agent.receiveFeedback",
        "is_error": False,
        "content": "feedback received",
    }
    assert agent.calls == [
        {
            "event": expected_event(job.payload["event"]),
            "trigger": {"id": job.trigger_id, "name": "great feedback"},
            "computed": {"ema_score": "91.5", "count": 4},
            "idempotency_key": "idem-1",
        }
    ]
    assert agent.rejected == 0
    assert agent.headers_seen
    assert all(seen["authorization"] == f"Bearer {TOKEN}" for seen in agent.headers_seen)
    assert all(seen["idempotency-key"] == "idem-1" for seen in agent.headers_seen)
    assert TOKEN not in json.dumps(response)


async def test_a_wrong_token_is_a_permanent_failure(agent: McpAgentServer) -> None:
    failure = await delivery_failure(target_of(agent, "not-the-token"))

    assert failure.retryable is False
    assert str(failure) == (
        f"the MCP server at {agent.url} refused the agent's token (HTTP 401); the agent's"
        " owner must set the token its server expects"
    )
    assert failure.response == {
        "endpoint": agent.url,
        "tool": "agent.receiveFeedback",
        "status": 401,
    }
    assert agent.rejected >= 1
    assert agent.calls == []


async def test_the_header_named_by_the_registration_file_carries_the_token(
    conn: psycopg.AsyncConnection,
) -> None:
    async with McpAgentServer(token=TOKEN, header="X-Api-Key", scheme="") as agent:
        await register_agent(
            conn, endpoint=agent.url, service={"auth": {"header": "X-Api-Key", "scheme": ""}}
        )
        await store_token(conn)

        await deliver(await load_mcp_target(conn, CHAIN, AGENT, BOX, user_id=USER_ID))

    assert len(agent.calls) == 1
    assert all(seen["x-api-key"] == TOKEN for seen in agent.headers_seen)
    assert all("authorization" not in seen for seen in agent.headers_seen)


async def test_an_error_result_of_the_tool_is_a_permanent_failure(agent: McpAgentServer) -> None:
    agent.fail_with = f"cannot store this feedback (token {TOKEN} is read-only)"

    failure = await delivery_failure(target_of(agent))

    assert failure.retryable is False
    assert str(failure) == (
        f"the MCP tool 'agent.receiveFeedback' at {agent.url} returned an error:"
        " cannot store this feedback (token [token] is read-only)"
    )
    assert failure.response is not None
    assert failure.response["is_error"] is True
    assert TOKEN not in json.dumps(failure.response)
    assert len(agent.calls) == 1


async def test_an_unknown_tool_is_a_permanent_failure(agent: McpAgentServer) -> None:
    failure = await delivery_failure(target_of(agent), tool_name="agent.noSuchTool")

    assert failure.retryable is False
    assert str(failure) == (
        f"the MCP server at {agent.url} has no tool 'agent.noSuchTool'"
        " (its tools: 'agent.receiveFeedback')"
    )
    assert agent.calls == []


async def test_server_errors_are_retried_with_their_retry_after(agent: McpAgentServer) -> None:
    agent.status_override, agent.retry_after = 503, "7"

    failure = await delivery_failure(target_of(agent))

    assert failure.retryable is True
    assert failure.retry_after == 7.0
    assert str(failure) == f"the MCP server at {agent.url} answered HTTP 503"


async def test_a_missing_endpoint_is_a_permanent_failure(agent: McpAgentServer) -> None:
    agent.status_override = 404

    failure = await delivery_failure(target_of(agent))

    assert failure.retryable is False
    assert "answered HTTP 404: no MCP endpoint at this URL" in str(failure)


async def test_a_slow_server_times_out_and_is_retried(agent: McpAgentServer) -> None:
    agent.delay = 10.0

    failure = await delivery_failure(target_of(agent), timeout_ms=300)

    assert failure.retryable is True
    assert str(failure) == f"no answer from the MCP server at {agent.url} within 0.3 s"


async def test_an_unreachable_server_is_retried() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/mcp"  # a port nobody listens on

    failure = await delivery_failure(McpTarget(endpoint, "Authorization", "Bearer x"))

    assert failure.retryable is True
    assert failure.args[0].startswith(f"cannot reach the MCP server at {endpoint}: ConnectError")


async def test_a_loopback_endpoint_is_refused_unless_private_urls_are_allowed(
    agent: McpAgentServer,
) -> None:
    failure = await delivery_failure(target_of(agent), settings=Settings(allow_private_urls=False))

    assert failure.retryable is False
    assert str(failure) == (
        f"refused to call the MCP server at {agent.url}: 127.0.0.1 is a loopback address"
        " (ERC8004_ALLOW_PRIVATE_URLS=true allows private addresses, ERC8004_ALLOWED_NETWORKS"
        " chosen networks)"
    )
    assert agent.calls == []
    assert agent.headers_seen == []  # nothing was sent
    assert agent.rejected == 0

    await deliver(target_of(agent), settings=Settings(allow_private_urls=True))
    await deliver(
        target_of(agent),
        settings=Settings(allow_private_urls=False, allowed_networks="127.0.0.0/8"),
    )
    assert len(agent.calls) == 2


# -- the feedback file ------------------------------------------------------------------


async def test_a_verified_file_is_pushed_with_the_event(agent: McpAgentServer) -> None:
    response = await deliver(target_of(agent), verify_file_hash=True)

    assert response["file_hash_verified"] is True
    [call] = agent.calls
    assert call["file"] == {"score": 95, "comment": "fast and correct"}
    assert call["event"]["file_hash"] == keccak_hex(FEEDBACK_FILE)


async def test_a_file_over_http_is_verified(agent: McpAgentServer) -> None:
    body = b"plain text feedback"
    requests: list[str] = []

    async def files(scope: dict[str, Any], receive: Any, send: Any) -> None:
        requests.append(scope["path"])
        found = scope["path"] == "/feedback.txt"
        await send(
            {
                "type": "http.response.start",
                "status": 200 if found else 404,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": body if found else b"missing"})

    async with serve_asgi(files, lifespan="off") as base:
        event = feedback_event(file_uri=f"{base}/feedback.txt", file_hash=keccak_hex(body))
        await deliver(target_of(agent), feedback_job(event), verify_file_hash=True)

        gone = feedback_event(file_uri=f"{base}/gone.txt", file_hash=keccak_hex(body))
        failure = await delivery_failure(
            target_of(agent), feedback_job(gone), verify_file_hash=True
        )

    assert [call["file"] for call in agent.calls] == ["plain text feedback"]
    assert requests == ["/feedback.txt", "/gone.txt"]
    assert failure.retryable is True  # the file may be there later
    assert (
        str(failure)
        == f"cannot fetch the feedback file {base}/gone.txt: HTTP 404 from {base}/gone.txt"
    )


async def test_a_file_in_an_allowed_network_is_fetched(agent: McpAgentServer) -> None:
    """ERC8004_ALLOWED_NETWORKS opens the feedback file's address as it opens the MCP
    server's (the fetch once ignored it and refused every private file)."""
    body = b"feedback on the operator's network"

    async def files(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    allowed = Settings(
        allow_private_urls=False, allowed_networks="127.0.0.0/8", registration_fetch_timeout=2.0
    )
    async with serve_asgi(files, lifespan="off") as base:
        event = feedback_event(file_uri=f"{base}/feedback.txt", file_hash=keccak_hex(body))
        await deliver(
            target_of(agent), feedback_job(event), settings=allowed, verify_file_hash=True
        )
        refused = await delivery_failure(
            target_of(agent),
            feedback_job(event),
            settings=Settings(allow_private_urls=False, registration_fetch_timeout=2.0),
            verify_file_hash=True,
        )

    assert [call["file"] for call in agent.calls] == [body.decode()]
    assert refused.retryable is False
    assert "loopback" in str(refused)


async def test_a_file_that_does_not_match_its_hash_is_not_pushed(agent: McpAgentServer) -> None:
    on_chain = keccak_hex(b"the file that was promised")
    job = feedback_job(feedback_event(file_hash=on_chain.upper().replace("0X", "0x")))

    failure = await delivery_failure(target_of(agent), job, verify_file_hash=True)

    assert failure.retryable is False
    assert str(failure) == (
        f"the feedback file's keccak256 {keccak_hex(FEEDBACK_FILE)} does not match the on-chain"
        f" hash {on_chain} ({data_uri(FEEDBACK_FILE)}, {len(FEEDBACK_FILE)} bytes); it was not pushed"
    )
    assert agent.calls == []
    assert agent.headers_seen == []  # not even connected


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"file_uri": None}, "verify_file_hash is on but the event has no file_uri to fetch"),
        ({"file_uri": ""}, "verify_file_hash is on but the event has no file_uri to fetch"),
        ({"file_hash": None}, "no on-chain hash to verify against"),
        ({"file_hash": "0x" + "0" * 64}, "no on-chain hash to verify against"),
        ({"file_hash": "0x1234"}, "the event's file_hash '0x1234' is not a 32-byte hex value"),
        ({"file_uri": "ftp://files.example/f.json"}, "unsupported URI scheme 'ftp'"),
    ],
)
async def test_a_file_that_cannot_be_verified_is_a_permanent_failure(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeliveryFailed) as caught:
        await fetch_verified_file(feedback_job(feedback_event(**changes)), private_settings())

    assert message in str(caught.value)
    assert caught.value.retryable is False
