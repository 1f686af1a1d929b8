"""MCP tool calls (`mcp` actions): the feedback an agent received, pushed to the agent's own
MCP server.

The target comes from the agent, not from the trigger: the endpoint is the MCP service of the
agent's current registration file, the token is the one its owner stored (encrypted) through
`PUT /api/v1/agents/{chain}/{agent_id}/mcp-token`. The token travels in `Authorization:
Bearer <token>` unless the registration file's MCP service names another header::

    {"name": "MCP", "endpoint": "https://agent.example/mcp",
     "auth": {"header": "X-Api-Key", "scheme": ""}}          # or "authHeader" / "authScheme"

The call goes through the official SDK's streamable HTTP client over a guarded connection
(no private addresses unless ERC8004_ALLOW_PRIVATE_URLS). With `verify_file_hash`, the
feedback file named by the event is fetched first and its keccak256 compared with the
on-chain hash; a mismatch is never pushed.

The token never appears in what this module returns or raises: messages and excerpts a
server sends back are scrubbed of it too.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
import psycopg
from eth_hash.auto import keccak
from mcp import Client, InputRequiredRoundsExceededError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from pydantic import Field, ValidationError

from erc8004_backend import __version__
from erc8004_backend.actions.channel import ChannelDependencies, ChannelSpec
from erc8004_backend.actions.configs import ChannelConfig, validate_config
from erc8004_backend.actions.delivery import DeliveryFailed, Job, excerpt
from erc8004_backend.config import Settings
from erc8004_backend.database.queries import load_queries
from erc8004_backend.encryption import EncryptionError, Sealed, SecretBox, agent_token_context
from erc8004_backend.indexer.registration import current_registration
from erc8004_backend.outbound import (
    OutboundAddressError,
    UnresolvedHostError,
    check_public_host,
    outbound_client2,
)
from erc8004_backend.retry import parse_retry_after, retryable_status
from erc8004_backend.uri_fetch import FetchError, fetch_uri, new_http_client, short_text

QUERIES = load_queries("erc8004_backend.actions", "mcp.sql")

DEFAULT_AUTH_HEADER = "Authorization"
DEFAULT_AUTH_SCHEME = "Bearer"
MCP_CREDENTIAL_ROUTE = "PUT /api/v1/agents/{chain_id}/{agent_id}/mcp-token"

# RFC 9110 field names: one or more tchar.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Headers the MCP transport or HTTP itself sets: a registration file may not take them over.
_RESERVED_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "accept",
        "accept-encoding",
        "last-event-id",
        "idempotency-key",
        "user-agent",
    }
)
_RESERVED_HEADER_PREFIX = "mcp-"  # mcp-session-id, mcp-protocol-version, mcp-method, ...
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_ZERO_HASH = "0x" + "0" * 64
# Messages the SDK makes up for an HTTP error status: the status says more.
_SDK_STAND_INS = frozenset({"Server returned an error response", "Not Found", "Session terminated"})
_TOOL_LIST_PAGES = 10


# -- the target: the agent's endpoint and token -------------------------------------------


DEFAULT_MCP_TOOL = "agent.receiveFeedback"


class McpConfig(ChannelConfig):
    tool_name: Annotated[str, Field(min_length=1, max_length=128)] = DEFAULT_MCP_TOOL
    verify_file_hash: bool = False
    timeout_ms: Annotated[int, Field(ge=100, le=120_000)] = 30_000


@dataclass(frozen=True)
class McpTarget:
    """Where an agent's MCP server is and how to authenticate to it."""

    endpoint: str
    header_name: str
    header_value: str = field(repr=False)  # holds the token: never shown


def _agent(chain_id: int, agent_id: int) -> str:
    return f"agent {agent_id} on chain {chain_id}"


def auth_header(service: Mapping[str, Any] | None, token: str) -> tuple[str, str]:
    """The header (name, value) that carries `token`, as the registration file's MCP service
    entry asks: `"auth": {"header": ..., "scheme": ...}` or flat `"authHeader"` /
    `"authScheme"`. Without a header named: `Authorization: Bearer <token>`; a header named
    without a scheme carries the raw token (`X-Api-Key: <token>`), except Authorization,
    which keeps Bearer; scheme "" is the raw token. Raises DeliveryFailed (permanent) naming
    the problem with an unusable header, scheme or token (never the token itself)."""
    auth = service.get("auth") if service else None
    nested = auth if isinstance(auth, Mapping) else {}
    header: Any = nested.get("header", service.get("authHeader") if service else None)
    scheme: Any = nested.get("scheme", service.get("authScheme") if service else None)
    if header is None:
        header = DEFAULT_AUTH_HEADER
    if not isinstance(header, str) or not _HEADER_NAME.match(header):
        raise DeliveryFailed(
            f"the registration file's MCP auth header {_quoted(header)} is not a valid HTTP"
            " header name (letters, digits and !#$%&'*+-.^_`|~ only; no spaces or colons)",
            retryable=False,
        )
    lowered = header.lower()
    if lowered in _RESERVED_HEADERS or lowered.startswith(_RESERVED_HEADER_PREFIX):
        raise DeliveryFailed(
            f"the registration file's MCP auth header {header!r} is set by the MCP transport"
            " and cannot carry the token",
            retryable=False,
        )
    if scheme is None:
        scheme = DEFAULT_AUTH_SCHEME if lowered == "authorization" else ""
    if not isinstance(scheme, str) or (scheme and not _HEADER_NAME.match(scheme)):
        raise DeliveryFailed(
            f"the registration file's MCP auth scheme {_quoted(scheme)} is not valid"
            ' (one word such as "Bearer", or "" for the raw token)',
            retryable=False,
        )
    if not token or token != token.strip() or not _latin1_visible(token):
        raise DeliveryFailed(
            "the agent's MCP token cannot be sent in an HTTP header (it is empty, has"
            " surrounding spaces, control characters or characters outside Latin-1);"
            f" the owner must set a new one via {MCP_CREDENTIAL_ROUTE}",
            retryable=False,
        )
    return header, f"{scheme} {token}" if scheme else token


def _latin1_visible(text: str) -> bool:
    return all(" " <= char <= "~" or "\xa0" <= char <= "\xff" for char in text)


def _quoted(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


async def load_mcp_target(
    conn: psycopg.AsyncConnection, chain_id: int, agent_id: int, box: SecretBox, *, user_id: str
) -> McpTarget:
    """The agent's MCP endpoint (from its current registration file) and token header, for
    a trigger of account `user_id`.

    The token is its owner's credential on its server: only the account that set it (by the
    owner's signature, or as an operator) calls the server with it, and only while the
    agent has not changed hands since: the new owner's file names the endpoint, and would
    receive the old owner's token.

    Raises DeliveryFailed: retryable while the registration may still arrive (no
    Registered event indexed yet, the file not fetched yet), permanent when it cannot (the
    fetch failed, no MCP service, no token stored or none of this account's, an agent
    transferred since, a token that does not decrypt)."""
    agent = _agent(chain_id, agent_id)
    registration = await current_registration(conn, chain_id, agent_id)
    if registration is None:
        raise DeliveryFailed(
            f"{agent} has no Registered event indexed yet, so its MCP endpoint is unknown",
            retryable=True,
        )
    if registration.status is None or registration.status == "pending":
        raise DeliveryFailed(
            f"the registration file of {agent} has not been fetched yet", retryable=True
        )
    if registration.status == "failed":
        reason = f": {registration.error}" if registration.error else ""
        raise DeliveryFailed(
            f"the registration file of {agent} could not be fetched{reason}", retryable=False
        )
    service = registration.mcp_service
    if service is None:
        raise DeliveryFailed(
            f"the registration file of {agent} has no MCP service with an http(s) endpoint",
            retryable=False,
        )
    route = MCP_CREDENTIAL_ROUTE.format(chain_id=chain_id, agent_id=agent_id)
    cursor = await conn.execute(
        QUERIES["agent_mcp_token"],
        {"chain_id": chain_id, "agent_id": Decimal(agent_id), "user_id": user_id},
    )
    row = await cursor.fetchone()
    if row is None:
        raise DeliveryFailed(
            f"{agent} has no MCP token stored; its owner must set one via {route}",
            retryable=False,
        )
    ciphertext, key_id, set_by_user, changed_hands = row
    if not set_by_user:
        raise DeliveryFailed(
            f"the MCP token of {agent} was set by another account: only that account's"
            f" triggers call the agent's server with it (its owner can set it from this one"
            f" via {route})",
            retryable=False,
        )
    if changed_hands:
        raise DeliveryFailed(
            f"{agent} changed hands after its MCP token was set; its new owner must set one"
            f" via {route}",
            retryable=False,
        )
    try:
        token = box.open(Sealed(bytes(ciphertext), key_id), agent_token_context(chain_id, agent_id))
    except EncryptionError as error:
        raise DeliveryFailed(
            f"the MCP token of {agent} cannot be decrypted ({error}); check ERC8004_TOKEN_KEYS"
            " or have the owner set the token again",
            retryable=False,
        ) from None
    name, value = auth_header(service, token)
    return McpTarget(endpoint=str(service["endpoint"]), header_name=name, header_value=value)


# -- the tool's arguments ----------------------------------------------------------------


def mcp_tool_arguments(job: Job, file: Any | None) -> dict[str, Any]:
    """What the tool receives: the event's fields (None values left out), the trigger, the
    computed values (ema_score, count), the idempotency key (the same for every attempt, so
    the agent can ignore a repeat) and, when verified, the feedback file."""
    event = job.payload.get("event") or {}
    computed = job.payload.get("computed") or {}
    arguments: dict[str, Any] = {
        "event": {name: value for name, value in event.items() if value is not None},
        "trigger": {"id": job.trigger_id, "name": job.trigger_name},
        "computed": {
            name: computed[name]
            for name in ("ema_score", "count")
            if computed.get(name) is not None
        },
        "idempotency_key": job.idempotency_key,
    }
    if file is not None:
        arguments["file"] = file
    return arguments


def file_content(raw: bytes) -> Any:
    """A fetched feedback file as the tool gets it: the parsed value if it is JSON, else its
    text (bytes that are not UTF-8 replaced by U+FFFD)."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return text


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _expected_hash(value: Any) -> str | None:
    """The on-chain hash as lower-case 0x-hex; None when there is none to compare with."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _HASH.match(value):
        raise DeliveryFailed(
            f"the event's file_hash {_quoted(value)} is not a 32-byte hex value",
            retryable=False,
        )
    lowered = value.lower()
    return None if lowered == _ZERO_HASH else lowered


async def fetch_verified_file(job: Job, settings: Settings) -> Any:
    """The feedback file named by the event, when its keccak256 equals the on-chain hash
    (parsed JSON, or text). Raises DeliveryFailed: permanent without a URI or hash, for a
    mismatch, or a URI that can never be fetched; retryable for other fetch failures."""
    event = job.payload.get("event") or {}
    uri = event.get("file_uri")
    if not isinstance(uri, str) or not uri.strip():
        raise DeliveryFailed(
            "verify_file_hash is on but the event has no file_uri to fetch", retryable=False
        )
    expected = _expected_hash(event.get("file_hash"))
    if expected is None:
        raise DeliveryFailed(
            "verify_file_hash is on but the event's file_hash is empty: no on-chain hash to"
            " verify against",
            retryable=False,
        )
    client = new_http_client()
    try:
        raw = await fetch_uri(
            uri,
            client=client,
            gateway=settings.ipfs_gateway,
            max_bytes=settings.registration_max_bytes,
            timeout=settings.registration_fetch_timeout,
            allow_private=settings.allow_private_urls,
            allowed=settings.allowed_ip_networks,
        )
    except FetchError as error:
        raise DeliveryFailed(
            f"cannot fetch the feedback file {short_text(uri)}: {error}",
            retryable=not error.permanent and not uri.strip().lower().startswith("data:"),
        ) from None
    finally:
        await client.close()
    actual = "0x" + keccak(raw).hex()
    if actual != expected:
        raise DeliveryFailed(
            f"the feedback file's keccak256 {actual} does not match the on-chain hash"
            f" {expected} ({short_text(uri)}, {len(raw)} bytes); it was not pushed",
            retryable=False,
        )
    return file_content(raw)


# -- the call ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _HttpAnswer:
    method: str
    status: int
    retry_after: float | None


@dataclass
class _Call:
    """One delivery's context, for the failure messages."""

    endpoint: str
    tool: str
    secrets: tuple[str, ...]
    answers: list[_HttpAnswer] = field(default_factory=list)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[token]")
        return text

    def failed(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        response: dict[str, Any] | None = None,
    ) -> DeliveryFailed:
        return DeliveryFailed(
            self.scrub(message),
            retryable=retryable,
            retry_after=retry_after,
            response={"endpoint": self.endpoint, "tool": self.tool, **(response or {})},
        )


def _secrets(target: McpTarget) -> tuple[str, ...]:
    """The header value and the bare token in it, longest first (for scrubbing)."""
    value = target.header_value
    token = value.split(" ", 1)[1] if " " in value else value
    return tuple(sorted({value, token} - {""}, key=len, reverse=True))


async def deliver_mcp(
    job: Job, config: McpConfig, target: McpTarget, *, settings: Settings
) -> dict[str, Any]:
    """Call `config.tool_name` on the agent's MCP server with the event (and, with
    `verify_file_hash`, the verified feedback file), everything within `config.timeout_ms`.

    Returns what the audit trail keeps: endpoint, tool, is_error (false) and an excerpt of
    the tool's result. Raises DeliveryFailed: retryable for timeouts, connection errors,
    HTTP 5xx / 408 / 429 and server-side internal errors; permanent for a refused token
    (401 / 403), 404, other 4xx, an unknown tool, a tool result with isError, a refused
    address and an unverifiable feedback file."""
    call = _Call(endpoint=target.endpoint, tool=config.tool_name, secrets=_secrets(target))
    seconds = config.timeout_ms / 1000
    try:
        async with asyncio.timeout(seconds):
            await _check_endpoint(target.endpoint, settings)
            file = await fetch_verified_file(job, settings) if config.verify_file_hash else None
            arguments = mcp_tool_arguments(job, file)
            result = await _call_tool(call, target, arguments, job, settings, seconds)
    except TimeoutError:
        raise call.failed(
            f"no answer from the MCP server at {target.endpoint} within {seconds:g} s",
            retryable=True,
        ) from None
    except DeliveryFailed as error:
        if error.response is None:
            error.response = {"endpoint": call.endpoint, "tool": call.tool}
        raise
    except Exception as error:  # groups of the SDK's task groups too (not cancellation)
        raise _failure(call, error) from None
    content = call.scrub(result_text(result))
    if result.is_error:
        raise call.failed(
            f"the MCP tool {config.tool_name!r} at {target.endpoint} returned an error: "
            + (excerpt(content) or "(no text)"),
            retryable=False,
            response={"is_error": True, "content": excerpt(content)},
        )
    response: dict[str, Any] = {
        "endpoint": target.endpoint,
        "tool": config.tool_name,
        "is_error": False,
        "content": excerpt(content),
    }
    if config.verify_file_hash:
        response["file_hash_verified"] = True
    return response


async def _check_endpoint(endpoint: str, settings: Settings) -> None:
    """Refuse, with a clear message, an endpoint whose host is not public (the guarded
    connection would refuse it too, less clearly)."""
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port
    except ValueError as error:
        raise DeliveryFailed(
            f"the MCP endpoint {short_text(endpoint)} is not a valid URL: {error}", retryable=False
        ) from None
    if parts.scheme not in ("http", "https") or not host:
        raise DeliveryFailed(
            f"the MCP endpoint {short_text(endpoint)} is not an http(s) URL", retryable=False
        )
    if settings.allow_private_urls:
        return
    try:
        default_port = 443 if parts.scheme == "https" else 80
        await check_public_host(host, port or default_port, allowed=settings.allowed_ip_networks)
    except OutboundAddressError as error:
        raise _address_failure(endpoint, error) from None


def _address_failure(endpoint: str, error: OutboundAddressError) -> DeliveryFailed:
    message = str(error)
    if isinstance(error, UnresolvedHostError):  # DNS may answer later
        return DeliveryFailed(
            f"cannot reach the MCP server at {endpoint}: {message}", retryable=True
        )
    return DeliveryFailed(
        f"refused to call the MCP server at {endpoint}: {message}"
        " (ERC8004_ALLOW_PRIVATE_URLS=true allows private addresses, ERC8004_ALLOWED_NETWORKS"
        " chosen networks)",
        retryable=False,
    )


async def _call_tool(
    call: _Call,
    target: McpTarget,
    arguments: dict[str, Any],
    job: Job,
    settings: Settings,
    seconds: float,
) -> types.CallToolResult:
    http = outbound_client2(
        allow_private=settings.allow_private_urls,
        allowed=settings.allowed_ip_networks,
        timeout=seconds,
        headers={target.header_name: target.header_value, "Idempotency-Key": job.idempotency_key},
    )

    async def record(response: httpx2.Response) -> None:
        call.answers.append(
            _HttpAnswer(
                response.request.method,
                response.status_code,
                parse_retry_after(response.headers.get("Retry-After")),
            )
        )

    http.event_hooks["response"].append(record)
    client = Client(
        streamable_http_client(target.endpoint, http_client=http),
        read_timeout_seconds=seconds,
        client_info=types.Implementation(name="erc8004-backend", version=__version__),
        cache=None,
    )
    async with http, client:
        try:
            return await client.call_tool(call.tool, arguments)
        except MCPError as error:
            if error.code in (types.INVALID_PARAMS, types.METHOD_NOT_FOUND):
                tools = await _tool_names(client)
                if tools is not None and call.tool not in tools:
                    listed = ", ".join(repr(name) for name in tools[:20]) or "none"
                    raise call.failed(
                        f"the MCP server at {call.endpoint} has no tool {call.tool!r}"
                        f" (its tools: {listed})",
                        retryable=False,
                    ) from None
            raise


async def _tool_names(client: Client) -> list[str] | None:
    """The server's tool names; None when it cannot list them."""
    names: list[str] = []
    cursor: str | None = None
    try:
        for _ in range(_TOOL_LIST_PAGES):
            page = await client.list_tools(cursor=cursor)
            names.extend(tool.name for tool in page.tools)
            cursor = page.next_cursor
            if cursor is None:
                return names
    except (MCPError, ValidationError, httpx2.HTTPError):
        return None
    return names


def result_text(result: types.CallToolResult) -> str:
    """A tool result as text: its text blocks, a note for other blocks, or its structured
    content as JSON when it has no content blocks."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{block.type} content]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False, default=str))
    return "\n".join(parts)


# -- reading failures ----------------------------------------------------------------------


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


_PREFERRED_CAUSES: tuple[type[BaseException], ...] = (
    DeliveryFailed,
    MCPError,
    InputRequiredRoundsExceededError,
    httpx2.HTTPError,
    OutboundAddressError,
    ValidationError,
)


def root_cause(error: BaseException) -> BaseException:
    """The error that explains a failure the SDK reports inside (nested) exception groups:
    ours first, then an MCP error, then a transport error, then whatever is not a
    cancellation."""
    leaves = _leaves(error)
    for kind in _PREFERRED_CAUSES:
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0]


def _failure(call: _Call, error: BaseException) -> DeliveryFailed:
    cause = root_cause(error)
    if isinstance(cause, DeliveryFailed):
        return cause
    http_error = _http_error(call)
    if http_error is not None and isinstance(cause, MCPError | httpx2.HTTPStatusError):
        said = str(cause) if isinstance(cause, MCPError) else ""
        return _status_failure(call, http_error, said)
    where = f"the MCP server at {call.endpoint}"
    if isinstance(cause, MCPError):
        return _mcp_error_failure(call, cause)
    if isinstance(cause, httpx2.TimeoutException):
        return call.failed(f"{where} timed out ({_describe(cause)})", retryable=True)
    if isinstance(cause, httpx2.HTTPError):
        return call.failed(f"cannot reach {where}: {_describe(cause)}", retryable=True)
    if isinstance(cause, OutboundAddressError):
        failure = _address_failure(call.endpoint, cause)
        return call.failed(str(failure), retryable=failure.retryable)
    if isinstance(cause, InputRequiredRoundsExceededError):
        return call.failed(
            f"{where} keeps asking for input (elicitation or sampling) that this backend"
            " cannot give",
            retryable=False,
        )
    if isinstance(cause, ValidationError):
        return call.failed(
            f"{where} answered with something that is not a valid MCP result:"
            f" {cause.error_count()} validation error(s)",
            retryable=False,
        )
    return call.failed(f"calling {where} failed: {_describe(cause)}", retryable=True)


def _http_error(call: _Call) -> _HttpAnswer | None:
    """The HTTP error status of the last request the transport sent, if it had one: the
    request the failure is about (the SDK turns error statuses into stand-in messages)."""
    posts = [answer for answer in call.answers if answer.method == "POST"]
    if posts and posts[-1].status >= 400:
        return posts[-1]
    return None


def _status_failure(call: _Call, answer: _HttpAnswer, said: str) -> DeliveryFailed:
    status = answer.status
    where = f"the MCP server at {call.endpoint}"
    detail = f": {excerpt(said)}" if said and said not in _SDK_STAND_INS else ""
    response = {"status": status}
    if status in (401, 403):
        return call.failed(
            f"{where} refused the agent's token (HTTP {status}){detail}; the agent's owner"
            " must set the token its server expects",
            retryable=False,
            response=response,
        )
    if status == 404:
        return call.failed(
            f"{where} answered HTTP 404: no MCP endpoint at this URL{detail}",
            retryable=False,
            response=response,
        )
    return call.failed(
        f"{where} answered HTTP {status}{detail}",
        retryable=retryable_status(status),
        retry_after=answer.retry_after,
        response=response,
    )


def _mcp_error_failure(call: _Call, error: MCPError) -> DeliveryFailed:
    where = f"the MCP server at {call.endpoint}"
    said = excerpt(error.message)
    if error.code in (types.CONNECTION_CLOSED, types.REQUEST_TIMEOUT):
        return call.failed(f"{where} did not answer: {said}", retryable=True)
    if error.code == types.INTERNAL_ERROR:
        return call.failed(f"{where} failed internally: {said}", retryable=True)
    if error.code in (types.INVALID_PARAMS, types.METHOD_NOT_FOUND):
        return call.failed(
            f"{where} refused the call of tool {call.tool!r}: {said}", retryable=False
        )
    if error.code == types.UNSUPPORTED_PROTOCOL_VERSION:
        return call.failed(
            f"{where} speaks no MCP protocol version this backend does: {said}",
            retryable=False,
        )
    return call.failed(f"{where} answered MCP error {error.code}: {said}", retryable=False)


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class McpChannel:
    """A tool call to the MCP server of the event's agent."""

    def __init__(self, dependencies: ChannelDependencies) -> None:
        self.settings = dependencies.settings
        self.box = dependencies.box
        self.pool = dependencies.pool

    async def deliver(self, job: Job) -> dict[str, Any]:
        config = validate_config(McpConfig, "mcp", job.config)
        agent_id = job.payload.get("event", {}).get("agent_id")
        if agent_id is None:
            raise DeliveryFailed("an mcp action needs an event with an agent", retryable=False)
        async with self.pool.connection() as conn:
            target = await load_mcp_target(conn, job.chain_id, int(agent_id), self.box,
                                           user_id=job.user_id)  # fmt: skip
        return await deliver_mcp(job, config, target, settings=self.settings)


CHANNEL = ChannelSpec("mcp", McpConfig, McpChannel)
