"""Outbound requests to user-supplied addresses: the address checks, the guarded clients
(aiohttp and httpx2) against a real HTTP server on loopback, and bounded response bodies."""

from __future__ import annotations

import gzip
import importlib.abc
import ipaddress
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import httpx
import pytest

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.outbound import (
    OutboundAddressError,
    RefusedAddressError,
    ResponseTooLargeError,
    UnresolvedHostError,
    address_problem,
    check_public_host,
    outbound_client2,
    outbound_session,
    parse_networks,
    read_capped,
    refusal,
)
from tests.support.asgi import serve_asgi
from tests.support.waiting import free_port

# -- address checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.8", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 (an address to judge)
        ("::", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped
        ("64:ff9b::7f00:1", "loopback"),  # NAT64
        ("2002:a9fe:a9fe::", "cloud metadata"),  # 6to4 of 169.254.169.254
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:1.1.1.1", None),
    ],
)
def test_address_problem(address: str, problem: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == problem


async def test_check_public_host_judges_names_after_resolution() -> None:
    assert await check_public_host("8.8.8.8", 443) == [ipaddress.ip_address("8.8.8.8")]
    with pytest.raises(
        OutboundAddressError, match=r"localhost resolves to .*, which is a loopback"
    ) as refused:
        await check_public_host("localhost", 80)
    assert not isinstance(refused.value, UnresolvedHostError)  # a refusal, for good
    with pytest.raises(
        OutboundAddressError, match=r"169\.254\.169\.254 is a cloud metadata address"
    ):
        await check_public_host("169.254.169.254", 80)
    # A name that does not resolve (now) is told apart: it may resolve later.
    with pytest.raises(UnresolvedHostError, match=r"cannot resolve no-such-host\.invalid"):
        await check_public_host("no-such-host.invalid", 80)


def test_parse_networks_reads_cidr_blocks() -> None:
    assert parse_networks("10.1.2.0/24, fd00::/8") == (
        ipaddress.ip_network("10.1.2.0/24"),
        ipaddress.ip_network("fd00::/8"),
    )
    # Host bits are dropped; empty items and surrounding space are ignored.
    assert parse_networks(" 10.1.2.3/24 ,, ") == (ipaddress.ip_network("10.1.2.0/24"),)
    assert parse_networks("") == ()


def test_parse_networks_takes_a_bare_address_as_a_single_host() -> None:
    assert parse_networks("10.1.2.3,fd00::5") == (
        ipaddress.ip_network("10.1.2.3/32"),
        ipaddress.ip_network("fd00::5/128"),
    )


@pytest.mark.parametrize("bad", ["10.1.2.0/33", "example.com", "10.1.2", "fd00::/129"])
def test_parse_networks_names_the_bad_item(bad: str) -> None:
    with pytest.raises(Erc8004Error) as caught:
        parse_networks(f"10.0.0.0/8, {bad}")
    assert str(caught.value) == f"{bad!r} is not an IP network (like 10.1.2.0/24)"


async def test_allowed_networks_let_their_private_addresses_through_only() -> None:
    allowed = parse_networks("10.1.2.0/24, fd00::/8")

    assert await check_public_host("10.1.2.3", 80, allowed=allowed) == [
        ipaddress.ip_address("10.1.2.3")
    ]
    assert await check_public_host("fd00::7", 80, allowed=allowed) == [
        ipaddress.ip_address("fd00::7")
    ]
    with pytest.raises(OutboundAddressError, match=r"^10\.1\.3\.1 is a private address$"):
        await check_public_host("10.1.3.1", 80, allowed=allowed)
    with pytest.raises(OutboundAddressError, match=r"^127\.0\.0\.1 is a loopback address$"):
        await check_public_host("127.0.0.1", 80, allowed=allowed)
    with pytest.raises(OutboundAddressError, match=r"cloud metadata"):
        await check_public_host("169.254.169.254", 80, allowed=allowed)


# -- a loopback server -------------------------------------------------------------------


@dataclass
class Target:
    """An ASGI app: `/hello`; `/sized?n=` and `/chunked?n=` (n bytes with and without a
    Content-Length); `/gzip?n=` (n zero bytes, gzipped); `/redirect?to=` (302); `/cookie`
    (sets one). Each request's path and Cookie header are noted."""

    paths: list[str] = field(default_factory=list)
    cookies: list[str | None] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.paths.append(scope["path"])
        self.cookies.append(dict(scope["headers"]).get(b"cookie", b"").decode() or None)
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        size = int(query.get("n", "0"))
        headers: list[tuple[bytes, bytes]] = []
        status = 200
        chunks = [b"hello"]
        if scope["path"] == "/sized":
            chunks = [b"x" * size]
            headers.append((b"content-length", str(size).encode()))
        elif scope["path"] == "/chunked":
            chunks = [b"y" * 1000] * (size // 1000) + [b"y" * (size % 1000)]
        elif scope["path"] == "/gzip":
            chunks = [gzip.compress(b"\0" * size)]
            headers += [
                (b"content-encoding", b"gzip"),
                (b"content-length", str(len(chunks[0])).encode()),
            ]
        elif scope["path"] == "/redirect":
            status, chunks = 302, [b""]
            headers.append((b"location", query["to"].encode()))
        elif scope["path"] == "/cookie":
            headers.append((b"set-cookie", b"session=planted; Path=/"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for number, chunk in enumerate(chunks, 1):
            more = number < len(chunks)
            await send({"type": "http.response.body", "body": chunk, "more_body": more})


@pytest.fixture
async def target() -> AsyncIterator[tuple[Target, str]]:
    app = Target()
    async with serve_asgi(app, lifespan="off") as base_url:
        yield app, base_url


LOOPBACK = "127.0.0.1 is a loopback address"


async def refused(session: aiohttp.ClientSession, url: str) -> str | None:
    """The policy's reasons for refusing a GET of `url` (None: it failed otherwise)."""
    with pytest.raises(aiohttp.ClientConnectorError) as caught:
        async with session.get(url):
            pass
    return refusal(caught.value)


async def test_the_guarded_session_refuses_a_loopback_server(target: tuple[Target, str]) -> None:
    app, base = target
    async with outbound_session(allow_private=False) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            async with session.get(f"{base}/hello"):
                pass
    assert isinstance(caught.value.os_error, RefusedAddressError)
    assert LOOPBACK in str(caught.value)
    assert refusal(caught.value.os_error) == LOOPBACK
    assert refusal(caught.value) == LOOPBACK  # what deliver_rest reads
    assert app.paths == []  # refused before connecting


async def test_the_guarded_session_judges_names_by_their_addresses(
    target: tuple[Target, str],
) -> None:
    app, base = target
    port = httpx.URL(base).port
    async with outbound_session(allow_private=False) as session:
        assert await refused(session, f"http://localhost:{port}/hello") == LOOPBACK
    assert app.paths == []


async def test_the_guarded_session_reaches_loopback_when_allowed(
    target: tuple[Target, str],
) -> None:
    app, base = target
    for session in (
        outbound_session(allow_private=True),
        outbound_session(allow_private=False, allowed=parse_networks("127.0.0.1/32")),
    ):
        async with session, session.get(f"{base}/hello") as response:
            assert (response.status, await response.read()) == (200, b"hello")
    assert app.paths == ["/hello", "/hello"]


async def test_an_allowed_network_does_not_allow_others(target: tuple[Target, str]) -> None:
    app, base = target
    allowed = parse_networks("10.0.0.0/8, 127.0.0.2/32")
    async with outbound_session(allow_private=False, allowed=allowed) as session:
        assert await refused(session, f"{base}/hello") == LOOPBACK
    assert app.paths == []


async def test_redirects_are_judged_hop_by_hop(target: tuple[Target, str]) -> None:
    app, base = target
    allowed = parse_networks("127.0.0.1")
    async with outbound_session(allow_private=False, allowed=allowed) as session:
        metadata = f"{base}/redirect?to=http://169.254.169.254/latest/"
        assert await refused(session, metadata) == "169.254.169.254 is a cloud metadata address"
        # A redirect to an allowed address is followed.
        async with session.get(f"{base}/redirect?to={base}/hello") as response:
            assert await response.read() == b"hello"
    assert app.paths == ["/redirect", "/redirect", "/hello"]


async def test_the_session_keeps_no_cookie(target: tuple[Target, str]) -> None:
    # One session carries every user's webhooks: a cookie one receiver sets must not go with
    # the requests after it, to that host or any, whoever's they are.
    app, base = target
    named = f"http://localhost:{httpx.URL(base).port}"  # a jar keeps no cookie of an address
    async with outbound_session(allow_private=True) as session:
        for _ in range(2):
            async with session.get(f"{named}/cookie") as response:
                assert response.status == 200
    assert app.cookies == [None, None]


async def test_an_ordinary_connection_failure_is_no_refusal() -> None:
    port = free_port()  # nothing listens on it
    async with outbound_session(allow_private=False, allowed=parse_networks("127.0.0.1")) as s:
        assert await refused(s, f"http://127.0.0.1:{port}/") is None


LOCALHOST_REFUSED = r"^localhost resolves to (127\.0\.0\.1|::1), which is a loopback address$"


async def test_the_httpx2_client_is_guarded_alike(target: tuple[Target, str]) -> None:
    app, base = target
    port = httpx.URL(base).port
    async with outbound_client2(allow_private=False) as client:
        with pytest.raises(OutboundAddressError, match=f"^{LOOPBACK}$"):
            await client.get(f"{base}/hello")
        with pytest.raises(OutboundAddressError, match=LOCALHOST_REFUSED):
            await client.get(f"http://localhost:{port}/hello")
    async with outbound_client2(allow_private=False, allowed=parse_networks("10.0.0.0/8")) as c:
        with pytest.raises(OutboundAddressError, match=f"^{LOOPBACK}$"):
            await c.get(f"{base}/hello")
    assert app.paths == []
    for client2 in (
        outbound_client2(allow_private=True),
        outbound_client2(allow_private=False, allowed=parse_networks("127.0.0.1/32")),
    ):
        async with client2:
            answer = await client2.get(f"{base}/hello")
        assert (answer.status_code, answer.content) == (200, b"hello")
    assert app.paths == ["/hello", "/hello"]


class ModuleSearches(importlib.abc.MetaPathFinder):
    """Counts the searches of the module path (a failed import searches it every time)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        self.names.append(fullname)


async def test_http_clients_search_the_module_path_for_nothing(
    target: tuple[Target, str],
) -> None:
    # httpcore imports sniffio on every request: without it installed, each import searched
    # the whole module path again (about 0.2 ms a request; httpx serves the devnet and demo
    # commands). The MCP action's httpx2 is checked alike.
    _, base = target
    async with httpx.AsyncClient() as plain, outbound_client2(allow_private=True) as guarded:
        for client in (plain, guarded):
            assert (await client.get(f"{base}/hello")).status_code == 200  # first-use imports
        searches = ModuleSearches()
        sys.meta_path.insert(0, searches)
        try:
            for _ in range(5):
                for client in (plain, guarded):
                    assert (await client.get(f"{base}/hello")).status_code == 200
        finally:
            sys.meta_path.remove(searches)
    assert searches.names == []


# -- bounded bodies ----------------------------------------------------------------------


async def read(base: str, path: str, n: int, limit: int) -> bytes:
    async with (
        outbound_session(allow_private=True) as session,
        session.get(f"{base}{path}", params={"n": n}) as response,
    ):
        if path == "/chunked":
            assert response.content_length is None
        return await read_capped(response, limit)


@pytest.mark.parametrize("path", ["/sized", "/chunked"])
async def test_read_capped_returns_bodies_within_the_limit_whole(
    target: tuple[Target, str], path: str
) -> None:
    _, base = target
    expected = (b"x" if path == "/sized" else b"y") * 4500
    assert await read(base, path, 4500, limit=10_000) == expected
    assert await read(base, path, 4500, limit=4500) == expected  # exactly the limit
    assert await read(base, path, 0, limit=10) == b""


async def test_read_capped_refuses_a_declared_length_over_the_limit(
    target: tuple[Target, str],
) -> None:
    _, base = target
    with pytest.raises(
        ResponseTooLargeError, match=r"^the response is 4501 bytes, over the limit of 4500$"
    ):
        await read(base, "/sized", 4501, limit=4500)


async def test_read_capped_refuses_an_undeclared_body_over_the_limit(
    target: tuple[Target, str],
) -> None:
    _, base = target
    with pytest.raises(
        ResponseTooLargeError, match=r"^the response is over the limit of 4500 bytes$"
    ):
        await read(base, "/chunked", 4501, limit=4500)


async def test_read_capped_bounds_the_decoded_size(target: tuple[Target, str]) -> None:
    _, base = target
    # A small compressed body (its Content-Length is within the limit) that expands past it.
    with pytest.raises(ResponseTooLargeError, match=re.escape("over the limit of 10000 bytes")):
        await read(base, "/gzip", 1_000_000, limit=10_000)
    assert await read(base, "/gzip", 10_000, limit=10_000) == b"\0" * 10_000
