"""Outbound requests to addresses users supply: webhooks, MCP servers, registration and
feedback files.

A user-supplied URL must not reach the operator's own network, so every connection is judged
by the address it actually goes to: names are resolved once, every answer must be public
(not private, loopback, link-local, multicast, reserved or a cloud metadata service), and the
socket connects to an address from that answer (so a second DNS answer cannot differ: no
rebinding). The check sits in the connection layer, under the HTTP client, so redirects and
reused clients are covered alike, and TLS still verifies the name: aiohttp's sockets come from
`guarded_socket_factory` (webhooks, Telegram), httpx2's connections from
`GuardedNetworkBackend` (the `mcp` SDK). `allow_private` lifts it, for tests and devnets;
`allowed` networks are exempt.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

from yarl import URL

from erc8004_backend.errors import Erc8004Error

if TYPE_CHECKING:
    # Imported where they are used: the indexer's start-up need not load every client.
    import aiohttp
    import httpx2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundAddressError(Erc8004Error):
    """An outbound request would reach an address it must not, or its host does not resolve."""


class UnresolvedHostError(OutboundAddressError):
    """The host has no address now: unlike a refusal, it may resolve later."""


# Redirects a client follows by hand (webhooks within their origin, registration files to any
# address that passes the checks), and how many in a row.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


# -- outbound address checks -------------------------------------------------------------

_CLOUD_METADATA = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_problem(address: IPAddress) -> str | None:
    """Why an outbound request must not go to `address`, or None for a public address."""
    if address in _CLOUD_METADATA:
        return "cloud metadata"
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address reach that address: judge it instead.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
        if embedded is not None:
            return address_problem(embedded)
    for problem, applies in (
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),  # e.g. 100.64.0.0/10, shared by carriers
    ):
        if applies:
            return problem
    return None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDR blocks ("10.1.2.0/24, fd00::/8"); a bare address is a /32 or /128."""
    networks = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise Erc8004Error(f"{item!r} is not an IP network (like 10.1.2.0/24)") from None
    return tuple(networks)


async def check_public_host(
    host: str, port: int, *, allowed: Sequence[IPNetwork] = ()
) -> list[IPAddress]:
    """The addresses `host` resolves to, when every one of them is public.

    Names are judged by where they lead (localhost, metadata.google.internal, names that
    resolve inside on purpose). Connect to a returned address (`pin_to_address`) rather than
    resolving the name again: a second answer could differ (DNS rebinding).
    """
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (OSError, UnicodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UnresolvedHostError(f"cannot resolve {host}: {reason}") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]))
        problem = address_problem(address)
        if problem is not None and not any(address in network for network in allowed):
            where = host if str(address) == host else f"{host} resolves to {address}, which"
            raise OutboundAddressError(f"{where} is a {problem} address")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvedHostError(f"{host} has no address")
    return addresses


def pin_to_address(url: URL, address: IPAddress) -> tuple[URL, dict[str, str], str | None]:
    """A request target (URL, headers, and for https the name TLS verifies: aiohttp's
    `server_hostname`) that connects to `address` while speaking to `url`'s host: the Host
    header and, for https, the TLS server name and certificate check stay the host's."""
    host = url.raw_host or ""
    headers = {
        "Host": url.host_port_subcomponent or host,
        # aiohttp pools connections by address alone: without this a TLS connection verified
        # for one name could later carry a request for another name at the same address.
        "Connection": "close",
    }
    # TLS verifies the name; an address in the URL is verified as itself, as it is the target.
    server_hostname = host if url.scheme == "https" and not _is_address(host) else None
    return url.with_host(str(address)), headers, server_hostname


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- the connection layer -----------------------------------------------------------------


class _NetworkBackend(Protocol):
    """What httpcore2 asks of a network backend."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any: ...

    async def sleep(self, seconds: float) -> None: ...


class GuardedNetworkBackend:
    """For httpx2 (the `mcp` SDK's HTTP client): a network backend that connects only to
    public addresses (see the module's doc)."""

    def __init__(
        self, inner: _NetworkBackend, *, allow_private: bool, allowed: Sequence[IPNetwork] = ()
    ) -> None:
        self._inner = inner
        self.allow_private = allow_private
        self.allowed = tuple(allowed)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> Any:
        if self.allow_private:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        import httpcore2

        addresses = await check_public_host(host, port, allowed=self.allowed)
        for number, address in enumerate(addresses, 1):
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore2.ConnectError:
                if number == len(addresses):
                    raise
        raise AssertionError("unreachable: check_public_host returns at least one address")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> Any:
        raise OutboundAddressError("outbound requests cannot use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class RefusedAddressError(OSError):
    """A connection to an address the policy refuses. An OSError (EPERM), so that HTTP
    clients report it as the connection failure it is; `refusal()` finds it again."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EPERM, message)


_REFUSAL = re.compile(r"[0-9A-Fa-f:.]+ is an? [a-z -]+ address")


def refusal(error: BaseException) -> str | None:
    """The policy's reasons inside a connection error (several when a name had several
    addresses), or None when the error is not a refusal."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.EPERM:
            reasons = _REFUSAL.findall(str(error))
            if reasons:
                return "; ".join(dict.fromkeys(reasons))
        error = error.__cause__ or getattr(error, "os_error", None)  # type: ignore[assignment]
    return None


def guarded_socket_factory(
    allowed: Sequence[IPNetwork] = (),
) -> Callable[[tuple[Any, ...]], socket.socket]:
    """For aiohttp's TCPConnector: a socket for each address it is about to connect to
    (names already resolved, IP literals too, on every redirect), refused unless public or
    in `allowed`."""

    def create(addr_info: tuple[Any, ...]) -> socket.socket:
        family, type_, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        problem = address_problem(address)
        if problem is not None and not any(address in network for network in allowed):
            raise RefusedAddressError(f"{address} is a {problem} address")
        return socket.socket(family, type_, proto)

    return create


def outbound_session(
    *, allow_private: bool, allowed: Sequence[IPNetwork] = (), max_connections: int = 100
) -> aiohttp.ClientSession:
    """An aiohttp session for user-supplied URLs (webhooks): guarded connections (see the
    module's doc), no proxies from the environment (a proxy would connect unguarded), and no
    cookies: one session carries every user's requests, and a cookie one receiver set would
    go with the next request to its host, whoever's it was."""
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=max_connections,
        ttl_dns_cache=10,
        socket_factory=None if allow_private else guarded_socket_factory(allowed),
    )
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": "erc8004-backend"},
    )


class ResponseTooLargeError(Erc8004Error):
    """A response body is larger than the limit."""


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """A response's body, refusing more than `limit` bytes (after decompression)."""
    declared = response.content_length
    if declared is not None and declared > limit:
        raise ResponseTooLargeError(f"the response is {declared} bytes, over the limit of {limit}")
    body = await response.content.read(limit + 1)
    while len(body) <= limit and not response.content.at_eof():
        chunk = await response.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise ResponseTooLargeError(f"the response is over the limit of {limit} bytes")
    return body


def outbound_client2(
    *,
    allow_private: bool,
    allowed: Sequence[IPNetwork] = (),
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> httpx2.AsyncClient:
    """The same guarded client for httpx2, the HTTP library of the `mcp` SDK."""
    import httpcore2
    import httpx2

    transport = httpx2.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore2.AsyncConnectionPool(
        ssl_context=httpx2.create_ssl_context(trust_env=False),
        network_backend=cast(
            httpcore2.AsyncNetworkBackend,
            GuardedNetworkBackend(
                httpcore2.AnyIOBackend(), allow_private=allow_private, allowed=allowed
            ),
        ),
    )
    return httpx2.AsyncClient(
        transport=transport,
        timeout=httpx2.Timeout(timeout),
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "erc8004-backend", **(headers or {})},
    )
