"""Agent registration files: parsing, fetching them (uri_fetch.py: URIs, real local HTTP
servers), and the queue on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import hashlib
import ipaddress
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote_from_bytes

import aiohttp
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.rows import dict_row
from structlog.testing import capture_logs
from yarl import URL

from erc8004_backend.api.server import listen
from erc8004_backend.cli.run import run_all
from erc8004_backend.config import Settings, get_settings
from erc8004_backend.indexer.registration import (
    RegistrationError,
    RegistrationResolver,
    current_registration,
    enqueue_registrations,
    parse_registration,
)
from erc8004_backend.outbound import pin_to_address
from erc8004_backend.uri_fetch import (
    FetchError,
    decode_data_uri,
    fetch_uri,
    ipfs_to_http,
    new_http_client,
)

# The example of the spec (ERC8004SPEC.md, "Agent URI and Agent Registration File").
SPEC_EXAMPLE: dict[str, Any] = {
    "type": "https://eips.ethereum.org/EIPS/eip-8004#registration-v1",
    "name": "myAgentName",
    "description": "A natural language description of the Agent",
    "image": "https://example.com/agentimage.png",
    "services": [
        {"name": "web", "endpoint": "https://web.agentxyz.com/"},
        {
            "name": "A2A",
            "endpoint": "https://agent.example/.well-known/agent-card.json",
            "version": "0.3.0",
        },
        {"name": "MCP", "endpoint": "https://mcp.agent.eth/", "version": "2025-06-18"},
        {"name": "OASF", "endpoint": "ipfs://{cid}", "version": "0.8", "skills": [], "domains": []},
        {"name": "ENS", "endpoint": "vitalik.eth", "version": "v1"},
        {"name": "DID", "endpoint": "did:method:foobar", "version": "v1"},
        {"name": "email", "endpoint": "mail@myagent.com"},
    ],
    "x402Support": False,
    "active": True,
    "registrations": [{"agentId": 22, "agentRegistry": "eip155:1:0x742"}],
    "supportedTrust": ["reputation", "crypto-economic", "tee-attestation"],
}

CHAIN = 11155111
MAX_AGENT_ID = 2**256 - 1  # uint256: numeric(78, 0) must hold it


def registration_file(mcp: str = "https://mcp.example/", a2a: str | None = None) -> bytes:
    services = [{"name": "MCP", "endpoint": mcp, "version": "2025-06-18"}]
    if a2a is not None:
        services.append({"name": "A2A", "endpoint": a2a})
    return json.dumps(
        {"type": SPEC_EXAMPLE["type"], "name": "agent", "services": services}
    ).encode()


def data_uri(body: bytes) -> str:
    return "data:application/json;base64," + base64.b64encode(body).decode()


# -- parsing -----------------------------------------------------------------------------


def test_parse_spec_example() -> None:
    registration = parse_registration(json.dumps(SPEC_EXAMPLE).encode())

    assert registration.document == SPEC_EXAMPLE
    assert registration.services == SPEC_EXAMPLE["services"]
    assert registration.mcp_endpoint == "https://mcp.agent.eth/"
    assert registration.mcp_service == SPEC_EXAMPLE["services"][2]
    assert registration.a2a_endpoint == "https://agent.example/.well-known/agent-card.json"
    assert registration.a2a_service is not None
    assert registration.a2a_service["version"] == "0.3.0"
    assert registration.active is True


def test_parse_accepts_the_older_endpoints_key_and_a_byte_order_mark() -> None:
    raw = (
        b"\xef\xbb\xbf"
        + json.dumps(
            {"endpoints": [{"name": "MCP", "endpoint": "https://old.example/mcp"}]}
        ).encode()
    )

    registration = parse_registration(raw)

    assert registration.mcp_endpoint == "https://old.example/mcp"
    assert registration.services == [{"name": "MCP", "endpoint": "https://old.example/mcp"}]


def test_parse_takes_the_first_mcp_service_with_an_http_endpoint_in_any_case() -> None:
    raw = json.dumps(
        {
            "services": [
                {"name": "MCP", "endpoint": "mcp.agent.eth"},
                {"name": "mcp", "endpoint": "https://second.example/", "auth": "bearer"},
                {"name": "MCP", "endpoint": "https://third.example/"},
            ],
            "active": "yes",
        }
    ).encode()

    registration = parse_registration(raw)

    assert registration.mcp_endpoint == "https://second.example/"
    assert registration.mcp_service == {
        "name": "mcp",
        "endpoint": "https://second.example/",
        "auth": "bearer",
    }
    assert registration.a2a_endpoint is None
    assert registration.active is None  # not a boolean


def test_parse_a_file_without_services() -> None:
    registration = parse_registration(b'{"name": "quiet agent", "services": null}')

    assert registration.services == []
    assert registration.mcp_endpoint is None
    assert registration.a2a_endpoint is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "the registration file is empty"),
        (b"  \n", "the registration file is empty"),
        (b'{"name": "\xff"}', "not UTF-8 text (invalid byte at offset 10)"),
        (
            b"{",
            "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)",
        ),
        (b"<html></html>", "not valid JSON: Expecting value (line 1, column 1)"),
        (b"[1, 2]", "must be a JSON object, not an array"),
        (b'"text"', "must be a JSON object, not a string"),
        (b'{"services": {"name": "MCP"}}', "`services` must be an array, not an object"),
        (b'{"endpoints": "https://x/"}', "`endpoints` must be an array, not a string"),
        (b'{"services": [1]}', "services[0] must be an object, not a number"),
        (
            b'{"services": [{"name": "a", "endpoint": "b"}, {"endpoint": "x"}]}',
            "services[1] has no `name`",
        ),
        (b'{"services": [{"name": "MCP"}]}', "services[0] has no `endpoint`"),
        (
            b'{"services": [{"name": "MCP", "endpoint": 5}]}',
            "services[0].endpoint must be a string, not a number",
        ),
        (
            b'{"services": [{"name": null, "endpoint": "x"}]}',
            "services[0].name must be a string, not null",
        ),
        (b'{"score": NaN}', "not valid JSON: NaN is not JSON"),
        (b'{"score": -Infinity}', "not valid JSON: -Infinity is not JSON"),
        (b'{"score": 1e400}', "not valid JSON: number 1e400 is out of range"),
        (b'{"name": "a\\u0000b"}', "contains a NUL character or an unpaired surrogate"),
        (b'{"\\ud800": 1}', "contains a NUL character or an unpaired surrogate"),
        (b'{"a": ' + b"[" * 80 + b"]" * 80 + b"}", "nests deeper than 64 levels"),
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON: nested too deeply"),
    ],
)
def test_parse_refuses_with_a_message_naming_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(RegistrationError, match="^.*" + _escaped(message)):
        parse_registration(raw)


def _escaped(text: str) -> str:
    return re.escape(text)


@given(st.binary(max_size=300))
def test_parse_raises_only_registration_errors_on_any_bytes(raw: bytes) -> None:
    with contextlib.suppress(RegistrationError):
        parse_registration(raw)


# PostgreSQL cannot store NUL or lone surrogates (parse_registration refuses them, above).
_storable_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_service_names = _storable_text.filter(lambda name: name.strip().lower() not in ("", "mcp"))
_other_services = st.lists(
    st.fixed_dictionaries(
        {"name": _service_names, "endpoint": _storable_text},
        optional={"version": _storable_text},
    ),
    max_size=6,
)


@given(
    others=_other_services,
    position=st.integers(min_value=0, max_value=6),
    path=st.from_regex(r"[a-z0-9/]{0,20}", fullmatch=True),
)
def test_parse_finds_the_mcp_endpoint_among_any_services(
    others: list[dict[str, str]], position: int, path: str
) -> None:
    mcp = {"name": "MCP", "endpoint": f"https://mcp.example/{path}"}
    services = [*others[:position], mcp, *others[position:]]

    registration = parse_registration(json.dumps({"services": services}).encode())

    assert registration.services == services
    assert registration.mcp_endpoint == mcp["endpoint"]


# -- URIs --------------------------------------------------------------------------------


def test_decode_data_uri_forms() -> None:
    body = b'{"name": "on-chain agent"}'
    encoded = base64.b64encode(body).decode()

    assert decode_data_uri(f"data:application/json;base64,{encoded}") == body
    assert decode_data_uri(f"DATA:application/json;charset=utf-8;BASE64,{encoded}") == body
    assert decode_data_uri(f"data:;base64,{encoded.rstrip('=')}") == body  # no padding
    assert decode_data_uri(f"data:;base64,{encoded[:8]}\n {encoded[8:]}") == body
    assert decode_data_uri("data:application/json,%7B%22a%22%3A%201%7D") == b'{"a": 1}'
    assert decode_data_uri('data:application/json,{"a":"caf\u00e9"}') == '{"a":"café"}'.encode()
    assert decode_data_uri("data:,") == b""


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("data:application/json;base64", "has no ',' before its data"),
        ("data:;base64,eyJ*", "not valid base64"),
        ("data:;base64,eyJhI", "base64 data is truncated"),
        ("https://example.com/", "not a data: URI"),
    ],
)
def test_decode_data_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(FetchError, match=_escaped(message)) as caught:
        decode_data_uri(uri)
    assert caught.value.permanent


@given(st.binary(max_size=200), st.booleans())
def test_decode_data_uri_round_trips_base64(data: bytes, url_safe: bool) -> None:
    encoded = (base64.urlsafe_b64encode if url_safe else base64.b64encode)(data).decode()
    assert decode_data_uri(f"data:application/json;base64,{encoded}") == data
    assert decode_data_uri(f"data:;base64,{encoded.rstrip('=')}") == data


@given(st.binary(max_size=200))
def test_decode_data_uri_round_trips_percent_encoding(data: bytes) -> None:
    assert decode_data_uri("data:text/plain," + quote_from_bytes(data, safe="")) == data


@pytest.mark.parametrize(
    ("uri", "gateway", "url"),
    [
        (
            "ipfs://bafyabc/agent.json",
            "https://ipfs.io/ipfs/",
            "https://ipfs.io/ipfs/bafyabc/agent.json",
        ),
        (
            "ipfs://QmYwAPJzv5CZsnA",
            "https://gw.example/ipfs",
            "https://gw.example/ipfs/QmYwAPJzv5CZsnA",
        ),
        ("ipfs://ipfs/bafyabc", "https://ipfs.io/ipfs/", "https://ipfs.io/ipfs/bafyabc"),
        (
            "IPFS:bafyabc?format=raw",
            "http://127.0.0.1:8080/ipfs/",
            "http://127.0.0.1:8080/ipfs/bafyabc?format=raw",
        ),
    ],
)
def test_ipfs_to_http(uri: str, gateway: str, url: str) -> None:
    assert ipfs_to_http(uri, gateway) == url


@pytest.mark.parametrize(
    ("uri", "gateway", "message"),
    [
        ("ipfs://", "https://ipfs.io/ipfs/", "no valid content identifier"),
        ("ipfs://bafy@evil.example/x", "https://ipfs.io/ipfs/", "no valid content identifier"),
        ("ipfs://../admin", "https://ipfs.io/ipfs/", "no valid content identifier"),
        ("https://bafy", "https://ipfs.io/ipfs/", "not an ipfs:// URI"),
        ("ipfs://bafyabc", "ftp://gateway/", "the IPFS gateway must be an http(s) URL"),
    ],
)
def test_ipfs_to_http_refuses(uri: str, gateway: str, message: str) -> None:
    with pytest.raises(FetchError, match=_escaped(message)):
        ipfs_to_http(uri, gateway)


@given(cid=st.from_regex(r"[A-Za-z0-9]{1,60}", fullmatch=True), path=st.text(max_size=60))
def test_ipfs_urls_stay_on_the_gateway(cid: str, path: str) -> None:
    url = ipfs_to_http(f"ipfs://{cid}/{path}", "https://gateway.example:8443/ipfs/")

    assert url.startswith("https://gateway.example:8443/ipfs/")
    try:
        parsed = URL(url)  # as fetch_uri parses it
    except ValueError:
        return  # fetch_uri refuses the URL before any request
    assert (parsed.host, parsed.port) == ("gateway.example", 8443)


# -- a local HTTP server -----------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length
    delay: float = 0.0  # seconds between the headers and the body
    release: asyncio.Event | None = None  # the body waits for it
    arrived: asyncio.Event | None = None  # set when a request for this reply comes in


@dataclass
class LocalServer:
    """A small HTTP/1.1 server on 127.0.0.1 answering fixed replies by path."""

    routes: dict[str, Reply] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = (await reader.readline()).decode("latin-1")
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            target = request_line.split(" ")[1]
            self.requests.append((target, headers))
            reply = self.routes.get(target.split("?")[0], Reply(404, b"no such file"))
            if reply.arrived is not None:
                reply.arrived.set()
            await self._send(writer, reply)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
        headers = {"Connection": "close", **reply.headers}
        if reply.chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers.setdefault("Content-Length", str(len(reply.body)))
        head = f"HTTP/1.1 {reply.status} Reply\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        writer.write(head.encode("latin-1") + b"\r\n")
        await writer.drain()
        if reply.release is not None:
            await reply.release.wait()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if not reply.chunked:
            writer.write(reply.body)
        else:
            for start in range(0, len(reply.body), 500):
                piece = reply.body[start : start + 500]
                writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    local = LocalServer()
    await local.start()
    yield local
    await local.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_http_client() as http_client:
        yield http_client


async def fetch(
    uri: str,
    client: aiohttp.ClientSession,
    *,
    gateway: str = "https://ipfs.io/ipfs/",
    max_bytes: int = 4096,
    timeout: float = 5.0,
    allow_private: bool = True,
) -> bytes:
    return await fetch_uri(
        uri,
        client=client,
        gateway=gateway,
        max_bytes=max_bytes,
        timeout=timeout,
        allow_private=allow_private,
    )


# -- fetching ----------------------------------------------------------------------------


async def test_fetch_a_data_uri(client: aiohttp.ClientSession) -> None:
    body = json.dumps(SPEC_EXAMPLE).encode()

    raw = await fetch(data_uri(body), client, allow_private=False)

    assert parse_registration(raw).mcp_endpoint == "https://mcp.agent.eth/"


async def test_fetch_refuses_a_data_uri_over_the_limit(client: aiohttp.ClientSession) -> None:
    with pytest.raises(FetchError, match="holds 5000 bytes, more than the limit of 4096"):
        await fetch(data_uri(b" " * 5000), client)


async def test_fetch_over_http(server: LocalServer, client: aiohttp.ClientSession) -> None:
    server.routes["/agent.json"] = Reply(body=registration_file())

    raw = await fetch(f"{server.base}/agent.json", client)

    assert parse_registration(raw).mcp_endpoint == "https://mcp.example/"
    target, headers = server.requests[0]
    assert target == "/agent.json"
    assert headers["accept-encoding"] == "identity"


async def test_fetch_keeps_no_cookie(server: LocalServer, client: aiohttp.ClientSession) -> None:
    # One file's server could otherwise plant a cookie that the fetches after it carry.
    server.routes["/agent.json"] = Reply(
        body=registration_file(), headers={"Set-Cookie": "session=planted; Path=/"}
    )
    await fetch(f"{server.base}/agent.json", client)
    await fetch(f"{server.base}/agent.json", client)
    assert [headers.get("cookie") for _, headers in server.requests] == [None, None]


async def test_fetch_follows_redirects(server: LocalServer, client: aiohttp.ClientSession) -> None:
    server.routes["/old"] = Reply(301, headers={"Location": "/moved/here"})
    server.routes["/moved/here"] = Reply(307, headers={"Location": "../agent.json?v=2"})
    server.routes["/agent.json"] = Reply(body=registration_file())

    assert await fetch(f"{server.base}/old", client) == registration_file()
    assert [target for target, _ in server.requests] == ["/old", "/moved/here", "/agent.json?v=2"]


async def test_fetch_stops_after_five_redirects(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/loop"] = Reply(302, headers={"Location": "/loop"})

    with pytest.raises(FetchError, match="more than 5 redirects"):
        await fetch(f"{server.base}/loop", client)
    assert len(server.requests) == 6


async def test_fetch_refuses_a_redirect_to_another_scheme(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/away"] = Reply(302, headers={"Location": "file:///etc/passwd"})

    with pytest.raises(FetchError, match=r"not an http\(s\) URL: file:"):
        await fetch(f"{server.base}/away", client)


async def test_fetch_reports_http_errors(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    with pytest.raises(FetchError, match=r"HTTP 404 from http://127\.0\.0\.1:\d+/missing\.json"):
        await fetch(f"{server.base}/missing.json", client)


async def test_fetch_refuses_a_declared_oversize_body_before_reading_it(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/big.json"] = Reply(body=b" " * 10_000)

    with pytest.raises(FetchError, match="sends 10000 bytes, more than the limit of 4096"):
        await fetch(f"{server.base}/big.json", client)


async def test_fetch_refuses_an_oversize_chunked_body_while_streaming(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/big.json"] = Reply(body=b" " * 10_000, chunked=True)

    with pytest.raises(FetchError, match="sends more than the limit of 4096 bytes"):
        await fetch(f"{server.base}/big.json", client)


async def test_fetch_accepts_a_chunked_body_within_the_limit(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    body = registration_file().ljust(4096)
    server.routes["/agent.json"] = Reply(body=body, chunked=True)

    assert await fetch(f"{server.base}/agent.json", client) == body


async def test_fetch_bounds_what_a_compressed_body_expands_to(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    # Sent although identity was asked for: 10 MB of spaces in about 10 kB.
    bomb = gzip.compress(b" " * 10_000_000)
    server.routes["/bomb.json"] = Reply(body=bomb, headers={"Content-Encoding": "gzip"})
    server.routes["/agent.json"] = Reply(
        body=gzip.compress(registration_file()), headers={"Content-Encoding": "gzip"}
    )

    assert len(bomb) < 20_000
    with pytest.raises(FetchError, match="sends more than the limit of 20000 bytes"):
        await fetch(f"{server.base}/bomb.json", client, max_bytes=20_000)
    assert await fetch(f"{server.base}/agent.json", client) == registration_file()


async def test_fetch_gives_up_on_a_slow_server(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/slow.json"] = Reply(body=registration_file(), delay=10)
    started = time.monotonic()

    with pytest.raises(FetchError, match=r"no complete answer from .*/slow.json within 0.3 s"):
        await fetch(f"{server.base}/slow.json", client, timeout=0.3)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_fetch_refuses_the_loopback_server_unless_private_urls_are_allowed(
    server: LocalServer, client: aiohttp.ClientSession, host: str
) -> None:
    server.routes["/agent.json"] = Reply(body=registration_file())
    url = f"http://{host}:{server.port}/agent.json"

    with pytest.raises(FetchError, match=r"refused to fetch .* loopback address") as caught:
        await fetch(url, client, allow_private=False)
    assert "ERC8004_ALLOW_PRIVATE_URLS" in str(caught.value)
    assert server.requests == []  # refused before connecting
    assert await fetch(url, client, allow_private=True) == registration_file()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "ftp://example.com/agent.json",
            "unsupported URI scheme 'ftp' (supported: https, http, ipfs, data)",
        ),
        ("ar://abcdef", "unsupported URI scheme 'ar'"),
        ("file:///etc/passwd", "unsupported URI scheme 'file'"),
        ("javascript:alert(1)", "unsupported URI scheme 'javascript'"),
        ("agent.json", "the URI has no scheme: agent.json"),
        ("   ", "the URI is empty"),
        ("https://", "not an http(s) URL"),
    ],
)
async def test_fetch_refuses_unsupported_uris(
    client: aiohttp.ClientSession, uri: str, message: str
) -> None:
    with pytest.raises(FetchError, match=_escaped(message)) as caught:
        await fetch(uri, client)
    assert caught.value.permanent


async def test_a_misconfigured_gateway_fails_ipfs_uris_only(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/agent.json"] = Reply(body=registration_file())

    with pytest.raises(FetchError, match="the IPFS gateway must be an http") as caught:
        await fetch("ipfs://bafyagent", client, gateway="gateway.local")
    assert caught.value.transient  # the operator can fix it; the URI is fine
    assert await fetch(f"{server.base}/agent.json", client, gateway="gateway.local")


async def test_fetch_ipfs_through_the_gateway(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/ipfs/bafyagent/registration.json"] = Reply(body=registration_file())
    gateway = f"{server.base}/ipfs/"

    # The configured gateway is trusted even where private addresses are not.
    for allow_private in (True, False):
        raw = await fetch(
            "ipfs://bafyagent/registration.json",
            client,
            gateway=gateway,
            allow_private=allow_private,
        )
        assert raw == registration_file()


async def test_fetch_checks_redirects_that_leave_the_gateway(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    gateway = f"{server.base}/ipfs/"
    server.routes["/ipfs/bafymetadata"] = Reply(
        302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    server.routes["/ipfs/bafyinside"] = Reply(302, headers={"Location": "/admin/agent.json"})
    server.routes["/admin/agent.json"] = Reply(body=registration_file())

    with pytest.raises(FetchError, match=r"169\.254\.169\.254 is a cloud metadata address"):
        await fetch("ipfs://bafymetadata", client, gateway=gateway, allow_private=False)
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 is a loopback address"):
        await fetch("ipfs://bafyinside", client, gateway=gateway, allow_private=False)
    assert [target for target, _ in server.requests] == ["/ipfs/bafymetadata", "/ipfs/bafyinside"]


async def test_a_pinned_request_reaches_the_address_and_keeps_the_host(
    server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/agent.json"] = Reply(body=registration_file())
    url = URL(f"http://localhost:{server.port}/agent.json")

    target, headers, server_hostname = pin_to_address(url, ipaddress.ip_address("127.0.0.1"))
    async with client.get(target, headers=headers, server_hostname=server_hostname) as response:
        body = await response.read()

    assert target.host == "127.0.0.1"
    assert body == registration_file()
    assert server.requests[0][1]["host"] == f"localhost:{server.port}"
    assert server_hostname is None  # plain http: no TLS name
    https_target, https_headers, https_name = pin_to_address(
        URL("https://agent.example/a.json"), ipaddress.ip_address("2606:4700::1")
    )
    assert str(https_target) == "https://[2606:4700::1]/a.json"
    assert https_headers["Host"] == "agent.example"
    assert https_name == "agent.example"
    _, literal_headers, literal_name = pin_to_address(
        URL("https://[2606:4700::1]:8443/a.json"), ipaddress.ip_address("2606:4700::1")
    )
    assert literal_headers["Host"] == "[2606:4700::1]:8443"
    assert literal_name is None  # an address in the URL is verified as itself


# -- the queue and the resolver (PostgreSQL) ---------------------------------------------


@pytest.fixture
async def conn(migrated_url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(migrated_url, autocommit=True) as connection:
        yield connection


def resolver_for(
    conn: psycopg.AsyncConnection,
    client: aiohttp.ClientSession,
    *,
    gateway: str = "https://ipfs.io/ipfs/",
    max_attempts: int = 3,
    idle_sleep: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    **settings_given: Any,
) -> RegistrationResolver:
    settings = Settings(
        **{
            "ipfs_gateway": gateway,
            "registration_max_bytes": 4096,
            "registration_fetch_timeout": 2.0,
            "allow_private_urls": True,
            **settings_given,
        }
    )
    return RegistrationResolver(
        conn,
        settings=settings,
        client=client,
        max_attempts=max_attempts,
        retry_delay=timedelta(0),  # every retry due at once
        idle_sleep=idle_sleep,
        clock=clock,
    )


async def registration_rows(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(
            "SELECT chain_id, agent_id, agent_uri, uri_digest, status, document, services,"
            " mcp_endpoint, a2a_endpoint, error, attempts, fetched_at, next_attempt_at"
            " FROM agent_registrations ORDER BY agent_id, agent_uri"
        )
        return await cursor.fetchall()


async def test_enqueue_adds_pending_rows_and_sets_them_back_to_pending(
    conn: psycopg.AsyncConnection,
) -> None:
    uri = "https://agent.example/a.json"
    await enqueue_registrations(conn, CHAIN, [(0, uri), (0, uri), (MAX_AGENT_ID, uri)])

    rows = await registration_rows(conn)
    assert [(row["agent_id"], row["status"], row["attempts"]) for row in rows] == [
        (0, "pending", 0),
        (MAX_AGENT_ID, "pending", 0),
    ]
    assert rows[0]["uri_digest"] == hashlib.sha256(uri.encode()).hexdigest()

    await conn.execute(
        "UPDATE agent_registrations SET status = 'failed', attempts = 3, error = 'gone',"
        " next_attempt_at = now() + interval '1 day', document = '{\"name\": \"old\"}'"
    )
    await enqueue_registrations(conn, CHAIN, [(0, uri)])  # URIUpdated naming the same URI
    await enqueue_registrations(conn, CHAIN, [])  # nothing to do, no statement

    by_agent = {row["agent_id"]: row for row in await registration_rows(conn)}
    assert by_agent[0]["status"] == "pending"
    assert by_agent[0]["attempts"] == 0
    assert by_agent[0]["error"] is None
    assert by_agent[0]["document"] == {"name": "old"}  # kept until the file is read again
    assert by_agent[MAX_AGENT_ID]["status"] == "failed"  # not named: untouched


async def test_resolver_fetches_and_stores_services(
    conn: psycopg.AsyncConnection, server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/agent.json"] = Reply(
        body=registration_file("https://mcp.one/", a2a="https://one/.well-known/agent-card.json")
    )
    server.routes["/ipfs/bafytwo"] = Reply(body=registration_file("https://mcp.two/"))
    await enqueue_registrations(
        conn,
        CHAIN,
        [
            (1, f"{server.base}/agent.json"),
            (2, "ipfs://bafytwo"),
            (3, data_uri(registration_file("https://mcp.three/"))),
        ],
    )
    resolver = resolver_for(conn, client, gateway=f"{server.base}/ipfs/")

    assert await resolver.run_once() == 3
    assert await resolver.run_once() == 0

    rows = await registration_rows(conn)
    assert [row["status"] for row in rows] == ["fetched"] * 3
    assert [row["mcp_endpoint"] for row in rows] == [
        "https://mcp.one/",
        "https://mcp.two/",
        "https://mcp.three/",
    ]
    assert rows[0]["a2a_endpoint"] == "https://one/.well-known/agent-card.json"
    assert (
        rows[0]["services"]
        == json.loads(
            registration_file("https://mcp.one/", a2a="https://one/.well-known/agent-card.json")
        )["services"]
    )
    assert rows[0]["document"]["name"] == "agent"
    assert all(row["attempts"] == 1 and row["fetched_at"] is not None for row in rows)


async def test_a_transient_failure_fails_after_the_last_attempt(
    conn: psycopg.AsyncConnection, server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/down.json"] = Reply(503, b"try later")
    await enqueue_registrations(conn, CHAIN, [(7, f"{server.base}/down.json")])
    resolver = resolver_for(conn, client, max_attempts=3)

    for attempt in (1, 2):
        assert await resolver.run_once() == 1
        [row] = await registration_rows(conn)
        assert (row["status"], row["attempts"]) == ("pending", attempt)
        assert row["error"].startswith("HTTP 503 from")
    assert await resolver.run_once() == 1

    [row] = await registration_rows(conn)
    assert row["status"] == "failed"
    assert row["attempts"] == 3
    assert row["error"] == f"HTTP 503 from {server.base}/down.json"
    assert row["document"] is None
    assert await resolver.run_once() == 0
    assert len(server.requests) == 3


async def test_retries_wait_with_backoff(
    conn: psycopg.AsyncConnection, server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/down.json"] = Reply(502)
    await enqueue_registrations(conn, CHAIN, [(8, f"{server.base}/down.json")])
    resolver = RegistrationResolver(
        conn,
        settings=Settings(allow_private_urls=True, registration_fetch_timeout=2.0),
        client=client,
        retry_delay=timedelta(minutes=1),
    )

    assert await resolver.run_once() == 1
    assert await resolver.run_once() == 0  # not due yet

    cursor = await conn.execute(
        "SELECT status, error, next_attempt_at - now() FROM agent_registrations"
    )
    status, error, wait = await cursor.fetchone() or (None, None, None)
    assert status == "pending"
    assert error.startswith("HTTP 502 from")
    assert timedelta(seconds=50) < wait <= timedelta(minutes=1)


async def test_permanent_failures_are_not_retried(
    conn: psycopg.AsyncConnection, client: aiohttp.ClientSession
) -> None:
    await enqueue_registrations(
        conn, CHAIN, [(1, "ftp://agent.example/a.json"), (2, data_uri(b"[1, 2]"))]
    )
    resolver = resolver_for(conn, client, max_attempts=5)

    assert await resolver.run_once() == 2
    assert await resolver.run_once() == 0

    rows = await registration_rows(conn)
    assert [(row["status"], row["attempts"], row["error"]) for row in rows] == [
        ("failed", 1, "unsupported URI scheme 'ftp' (supported: https, http, ipfs, data)"),
        ("failed", 1, "the registration file must be a JSON object, not an array"),
    ]


async def test_allowed_networks_are_reached_and_refused_addresses_fail_at_once(
    conn: psycopg.AsyncConnection, server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/agent.json"] = Reply(body=registration_file("https://mcp.inside/"))
    await enqueue_registrations(
        conn, CHAIN, [(1, f"{server.base}/agent.json"), (2, "http://10.1.2.3/agent.json")]
    )
    resolver = resolver_for(
        conn, client, max_attempts=5, allow_private_urls=False, allowed_networks="127.0.0.0/8"
    )

    assert await resolver.run_once() == 2

    inside, refused = await registration_rows(conn)
    assert (inside["status"], inside["mcp_endpoint"]) == ("fetched", "https://mcp.inside/")
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert refused["error"] == (
        "refused to fetch http://10.1.2.3/agent.json: 10.1.2.3 is a private address"
        " (ERC8004_ALLOW_PRIVATE_URLS=true allows private addresses, ERC8004_ALLOWED_NETWORKS"
        " chosen networks)"
    )
    assert await resolver.run_once() == 0  # nothing left to try


async def test_only_transient_failures_are_retried(
    conn: psycopg.AsyncConnection, server: LocalServer, client: aiohttp.ClientSession
) -> None:
    """Timeouts, connection failures, names that do not resolve and HTTP 5xx / 408 / 425 / 429
    may pass later; any other answer is final until an event names the URI again."""
    server.routes["/broken.json"] = Reply(body=b"<html>not json</html>")
    server.routes["/huge.json"] = Reply(body=b" " * 5000)
    server.routes["/gone.json"] = Reply(410)
    server.routes["/busy.json"] = Reply(429)
    server.routes["/down.json"] = Reply(503)
    server.routes["/slow.json"] = Reply(body=registration_file(), delay=10)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    expected = {
        f"{server.base}/missing.json": ("failed", f"HTTP 404 from {server.base}/missing.json"),
        f"{server.base}/gone.json": ("failed", f"HTTP 410 from {server.base}/gone.json"),
        f"{server.base}/broken.json": ("failed", "the registration file is not valid JSON"),
        f"{server.base}/huge.json": ("failed", f"{server.base}/huge.json sends 5000 bytes"),
        f"{server.base}/busy.json": ("pending", f"HTTP 429 from {server.base}/busy.json"),
        f"{server.base}/down.json": ("pending", f"HTTP 503 from {server.base}/down.json"),
        f"{server.base}/slow.json": ("pending", f"no complete answer from {server.base}/slow"),
        f"http://127.0.0.1:{closed_port}/a.json": ("pending", "fetching http://127.0.0.1:"),
        "http://agent.invalid/a.json": ("pending", "cannot fetch http://agent.invalid/a.json:"),
    }
    await enqueue_registrations(conn, CHAIN, list(enumerate(expected)))
    resolver = resolver_for(
        conn,
        client,
        max_attempts=5,
        allow_private_urls=False,
        allowed_networks="127.0.0.0/8",
        registration_fetch_timeout=0.5,
    )

    assert await resolver.run_once() == len(expected)

    found = {row["agent_uri"]: row for row in await registration_rows(conn)}
    for uri, (status, error) in expected.items():
        assert (found[uri]["status"], found[uri]["attempts"]) == (status, 1), uri
        assert found[uri]["error"].startswith(error), found[uri]["error"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registration_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"].startswith("registration.")]


async def test_a_host_that_keeps_failing_is_one_log_line_a_minute(
    conn: psycopg.AsyncConnection, client: aiohttp.ClientSession
) -> None:
    """A devnet's agents name hosts that do not resolve by the hundred: a host's first failure
    is logged, the failures after it are counted into one line a minute."""
    clock = Clock()
    uris = [f"https://agents.devnet.invalid/agent-{n}/agent.json" for n in range(12)]
    uris += ["https://other.invalid/agent.json", data_uri(b"[1]")]
    await enqueue_registrations(conn, CHAIN, list(enumerate(uris)))
    resolver = resolver_for(conn, client, max_attempts=2, clock=clock)

    with capture_logs() as first_round:
        assert await resolver.run_once() == len(uris)
    told = sorted(
        (line["event"], line.get("host", ""), line["agent_id"])
        for line in registration_lines(first_round)
    )
    assert [(event, host) for event, host, _ in told] == [
        ("registration.failed", ""),  # a data: URI: the agent's own problem, told each time
        ("registration.retry", "agents.devnet.invalid"),
        ("registration.retry", "other.invalid"),
    ]

    with capture_logs() as second_round:  # every retry fails too, within the minute
        assert await resolver.run_once() == len(uris) - 1
    assert registration_lines(second_round) == []

    clock.now += 60
    with capture_logs() as a_minute_later:
        assert await resolver.run_once() == 0  # nothing left to fetch; the counts are told
    by_host = {line["host"]: line for line in registration_lines(a_minute_later)}
    assert {host: (line["event"], line["failures"], line["given_up"], line["seconds"])
            for host, line in by_host.items()} == {
        "agents.devnet.invalid": ("registration.failures", 23, 12, 60),
        "other.invalid": ("registration.failures", 1, 1, 60),
    }  # fmt: skip
    latest = by_host["other.invalid"]
    assert (latest["agent_id"], latest["attempts"]) == (12, 2)
    assert "other.invalid" in latest["error"]


async def test_the_private_address_hint_is_given_only_for_a_refused_address(
    conn: psycopg.AsyncConnection, client: aiohttp.ClientSession
) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    refused = "http://10.1.2.3/agent.json"
    unresolved = "http://agent.invalid/agent.json"
    connection_refused = f"http://127.0.0.1:{closed_port}/agent.json"  # an allowed network
    await enqueue_registrations(
        conn, CHAIN, list(enumerate([refused, unresolved, connection_refused]))
    )
    resolver = resolver_for(conn, client, allow_private_urls=False, allowed_networks="127.0.0.0/8")

    with capture_logs() as logs:
        assert await resolver.run_once() == 3

    hint = "ERC8004_ALLOW_PRIVATE_URLS=true allows private addresses"
    stored = {row["agent_uri"]: row["error"] for row in await registration_rows(conn)}
    logged = {line["uri"]: line["error"] for line in registration_lines(logs)}
    assert stored == logged
    assert hint in stored[refused]
    assert "10.1.2.3 is a private address" in stored[refused]
    assert stored[unresolved].startswith("cannot fetch http://agent.invalid/agent.json:")
    assert stored[connection_refused].startswith(f"fetching {connection_refused} failed:")
    assert [uri for uri, error in stored.items() if hint in error or "private" in error] == [
        refused
    ]


@pytest.mark.parametrize("indexer_commits", ["before the result", "after the result"])
async def test_a_row_queued_again_during_its_fetch_is_fetched_again(
    conn: psycopg.AsyncConnection,
    migrated_url: str,
    server: LocalServer,
    client: aiohttp.ClientSession,
    indexer_commits: str,
) -> None:
    uri = f"{server.base}/agent.json"
    release, arrived = asyncio.Event(), asyncio.Event()
    server.routes["/agent.json"] = Reply(
        body=registration_file("https://before.example/"), release=release, arrived=arrived
    )
    await enqueue_registrations(conn, CHAIN, [(5, uri)])
    resolver = resolver_for(conn, client)

    running = asyncio.create_task(resolver.run_once())
    await asyncio.wait_for(arrived.wait(), 5)
    # Meanwhile the indexer stores a URIUpdated event naming the same URI. While its
    # transaction is open the resolver skips the row it locks instead of waiting for it.
    async with (
        await psycopg.AsyncConnection.connect(migrated_url) as indexer,
        indexer.transaction(),
    ):
        await enqueue_registrations(indexer, CHAIN, [(5, uri)])
        if indexer_commits == "after the result":
            release.set()
            assert await asyncio.wait_for(running, 5) == 1
    server.routes["/agent.json"] = Reply(body=registration_file("https://after.example/"))
    release.set()
    assert await asyncio.wait_for(running, 5) == 1

    [row] = await registration_rows(conn)
    assert (row["status"], row["attempts"], row["document"]) == ("pending", 0, None)

    assert await resolver.run_once() == 1
    [row] = await registration_rows(conn)
    assert (row["status"], row["mcp_endpoint"]) == ("fetched", "https://after.example/")


async def test_run_resolves_until_stopped(
    conn: psycopg.AsyncConnection, server: LocalServer, client: aiohttp.ClientSession
) -> None:
    server.routes["/agent.json"] = Reply(body=registration_file())
    resolver = resolver_for(conn, client, idle_sleep=0.05)
    stop = asyncio.Event()
    running = asyncio.create_task(resolver.run(stop))

    await enqueue_registrations(conn, CHAIN, [(9, f"{server.base}/agent.json")])
    for _ in range(100):
        rows = await registration_rows(conn)
        if rows[0]["status"] == "fetched":
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 5)

    assert rows[0]["status"] == "fetched"
    assert not client.closed  # the caller's client stays open


async def test_erc8004_run_resolves_with_the_settings_it_is_given(
    conn: psycopg.AsyncConnection, migrated_url: str, server: LocalServer
) -> None:
    server.routes["/ipfs/bafyrun"] = Reply(body=registration_file("https://mcp.run/"))
    settings = Settings(database_url=migrated_url, ipfs_gateway=f"{server.base}/ipfs/")
    assert get_settings().ipfs_gateway != settings.ipfs_gateway  # the environment's differs
    await enqueue_registrations(conn, CHAIN, [(3, "ipfs://bafyrun")])
    stop = asyncio.Event()
    running = asyncio.create_task(run_all(settings, migrated_url, [], listen("127.0.0.1", 0), stop))
    try:
        for _ in range(200):
            [row] = await registration_rows(conn)
            if row["status"] != "pending" or row["error"] or running.done():
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)

    assert (row["status"], row["mcp_endpoint"], row["error"]) == (
        "fetched",
        "https://mcp.run/",
        None,
    )
    assert [target for target, _ in server.requests] == ["/ipfs/bafyrun"]


# -- current_registration ----------------------------------------------------------------


async def insert_uri_event(
    conn: psycopg.AsyncConnection,
    *,
    agent_id: int,
    event_type: str,
    uri: str,
    block: int,
    log_index: int,
    chain_id: int = CHAIN,
) -> None:
    await conn.execute(
        "INSERT INTO events (chain_id, registry, event_type, contract_address, block_number,"
        " block_hash, block_time, transaction_hash, transaction_index, log_index, agent_id,"
        " token_uri) VALUES (%s, 'identity', %s, %s, %s, %s, now(), %s, 0, %s, %s, %s)",
        (
            chain_id,
            event_type,
            "0x8004a818bfb912233c491871b3d84c89a494bd9e",
            block,
            f"0x{block:064x}",
            f"0x{block * 1000 + log_index:064x}",
            log_index,
            agent_id,
            uri,
        ),
    )


async def test_current_registration_follows_the_latest_uri(
    conn: psycopg.AsyncConnection, client: aiohttp.ClientSession
) -> None:
    first = data_uri(registration_file("https://first.example/"))
    second = data_uri(registration_file("https://second.example/"))
    latest = data_uri(registration_file("https://latest.example/"))
    events = [  # stored out of order: the answer comes from chain order
        ("URIUpdated", latest, 20, 3),
        ("Registered", first, 10, 1),
        ("URIUpdated", second, 20, 2),
    ]
    for event_type, uri, block, log_index in events:
        await insert_uri_event(
            conn,
            agent_id=MAX_AGENT_ID,
            event_type=event_type,
            uri=uri,
            block=block,
            log_index=log_index,
        )
    await insert_uri_event(  # the same agent id on another chain
        conn,
        agent_id=MAX_AGENT_ID,
        event_type="URIUpdated",
        uri=first,
        block=99,
        log_index=0,
        chain_id=1,
    )
    await enqueue_registrations(conn, CHAIN, [(MAX_AGENT_ID, uri) for _, uri, _, _ in events])
    await resolver_for(conn, client).run_once()

    current = await current_registration(conn, CHAIN, MAX_AGENT_ID)

    assert current is not None
    assert current.agent_id == MAX_AGENT_ID
    assert current.agent_uri == latest
    assert current.status == "fetched"
    assert current.mcp_endpoint == "https://latest.example/"
    assert current.mcp_service == {
        "name": "MCP",
        "endpoint": "https://latest.example/",
        "version": "2025-06-18",
    }
    assert current.document is not None
    assert current.fetched_at is not None
    assert await current_registration(conn, CHAIN, 12345) is None


async def test_current_registration_of_a_uri_not_yet_read(conn: psycopg.AsyncConnection) -> None:
    await insert_uri_event(
        conn, agent_id=0, event_type="Registered", uri="https://a.example/", block=1, log_index=0
    )
    current = await current_registration(conn, CHAIN, 0)
    assert current is not None
    assert (current.agent_uri, current.status, current.mcp_endpoint) == (
        "https://a.example/",
        None,
        None,
    )

    await enqueue_registrations(conn, CHAIN, [(0, "https://a.example/")])
    current = await current_registration(conn, CHAIN, 0)
    assert current is not None
    assert (current.status, current.services, current.attempts) == ("pending", [], 0)
