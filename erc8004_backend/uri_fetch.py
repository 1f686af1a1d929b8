"""Fetching the files that users' URIs name (agents' registration files, feedback files):
https, http, ipfs:// through the configured gateway, or on-chain data: URIs, within a size
and a time limit. The indexer's registration resolver and the MCP action both fetch here.

Every URI is hostile: only four schemes, each redirect hop checked again, and no connection
to private, loopback, link-local, multicast, reserved or cloud-metadata addresses once names
are resolved (unless the configuration allows private addresses, or the address is in one of
its allowed networks).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlsplit

import aiohttp
from yarl import URL

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.outbound import (
    MAX_REDIRECTS,
    REDIRECT_STATUSES,
    IPNetwork,
    OutboundAddressError,
    UnresolvedHostError,
    check_public_host,
    pin_to_address,
)
from erc8004_backend.retry import retryable_status

SUPPORTED_SCHEMES = ("https", "http", "ipfs", "data")


class FetchError(Erc8004Error):
    """A file cannot be fetched.

    `permanent`: trying again cannot give another answer (an unsupported scheme, a malformed
    on-chain data: URI, an address the settings refuse). `transient`: trying again soon may
    succeed (a timeout, a connection failure, a name that does not resolve, HTTP 5xx / 408 /
    425 / 429, a misconfigured gateway). Neither: the server's answer, which changes only when
    someone changes the server (another HTTP error).
    """

    def __init__(self, message: str, *, permanent: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.transient = transient


# -- URIs --------------------------------------------------------------------------------

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_CID = re.compile(r"[A-Za-z0-9]+")  # CIDv0 (base58) and CIDv1 (base32, base36...) alike
_BASE64_URLSAFE = bytes.maketrans(b"-_", b"+/")


def uri_scheme(uri: str) -> str | None:
    """The scheme of `uri` in lower case, None when it does not start with one."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else None


def decode_data_uri(uri: str) -> bytes:
    """The data of an RFC 2397 `data:` URI, base64 or percent-encoded.

    Lenient where writers differ and no ambiguity comes of it: whitespace in base64, missing
    padding, the URL-safe alphabet, percent-escapes inside base64.
    """
    if uri_scheme(uri) != "data":
        raise FetchError(f"not a data: URI: {short_text(uri)}", permanent=True)
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise FetchError("the data: URI has no ',' before its data", permanent=True)
    data = unquote_to_bytes(payload)
    if header.rsplit(";", 1)[-1].strip().lower() != "base64":
        return data
    compact = re.sub(rb"\s+", b"", data).rstrip(b"=").translate(_BASE64_URLSAFE)
    if len(compact) % 4 == 1:  # no base64 text has this length, padded or not
        raise FetchError("the data: URI's base64 data is truncated", permanent=True)
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except binascii.Error as error:
        raise FetchError(
            f"the data: URI's data is not valid base64: {error}", permanent=True
        ) from None


def ipfs_to_http(uri: str, gateway: str) -> str:
    """The gateway URL of an IPFS URI: `ipfs://CID/path` -> `{gateway}CID/path`.

    Also accepts the older `ipfs://ipfs/CID` and `ipfs:CID`. The content identifier must be
    alphanumeric, so nothing in the URI can change which server the gateway URL names.
    """
    if uri_scheme(uri) != "ipfs":
        raise FetchError(f"not an ipfs:// URI: {short_text(uri)}", permanent=True)
    rest = uri[len("ipfs:") :].lstrip("/")
    if rest[:5].lower() == "ipfs/":
        rest = rest[5:]
    match = _CID.match(rest)
    remainder = rest[match.end() :] if match else ""
    if match is None or (remainder and remainder[0] not in "/?#"):
        raise FetchError(
            f"the ipfs URI has no valid content identifier: {short_text(uri)}", permanent=True
        )
    return gateway_base(gateway) + rest


def gateway_base(gateway: str) -> str:
    """The configured IPFS gateway, checked, ending with '/'."""
    try:
        parts = urlsplit(gateway)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:  # a configuration error, fixable by the operator
        raise FetchError(
            f"the IPFS gateway must be an http(s) URL, not {gateway!r}", transient=True
        )
    return gateway if gateway.endswith("/") else gateway + "/"


def short_text(text: str, limit: int = 160) -> str:
    """Long URIs (on-chain data: URIs run to kilobytes) cut for messages and logs."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# -- fetching ----------------------------------------------------------------------------


def new_http_client(user_agent: str = "erc8004-backend") -> aiohttp.ClientSession:
    """A client for fetch_uri, made in the event loop that uses it: proxies from the
    environment are ignored (they would bypass the address checks), redirects are followed by
    hand, bodies are decompressed here (with a bound on what they expand to), and no cookie
    is kept from one file's server for another's."""
    return aiohttp.ClientSession(
        trust_env=False,
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": user_agent},
    )


async def fetch_uri(
    uri: str,
    *,
    client: aiohttp.ClientSession,
    gateway: str,
    max_bytes: int,
    timeout: float,
    allow_private: bool,
    allowed: Sequence[IPNetwork] = (),
) -> bytes:
    """The bytes of the file behind `uri`, at most `max_bytes`, within
    `timeout` seconds for everything (resolution, redirects, body).

    `allow_private` lifts the address checks (tests, devnets); addresses in `allowed`
    networks pass them. URLs under the configured gateway are the operator's choice and skip
    them too; hops leaving it are checked.
    """
    uri = uri.strip()
    if not uri:
        raise FetchError("the URI is empty", permanent=True)
    scheme = uri_scheme(uri)
    if scheme == "data":
        body = decode_data_uri(uri)
        if len(body) > max_bytes:
            raise FetchError(
                f"the data: URI holds {len(body)} bytes, more than the limit of {max_bytes}",
                permanent=True,
            )
        return body
    if scheme == "ipfs":
        url = ipfs_to_http(uri, gateway)
    elif scheme in ("http", "https"):
        url = uri
    elif scheme is None:
        raise FetchError(f"the URI has no scheme: {short_text(uri)}", permanent=True)
    else:
        raise FetchError(
            f"unsupported URI scheme {scheme!r} (supported: {', '.join(SUPPORTED_SCHEMES)})",
            permanent=True,
        )
    fetch = _HttpFetch(
        client=client,
        max_bytes=max_bytes,
        allow_private=allow_private,
        allowed=allowed,
        trusted_prefix=_trusted_prefix(gateway),
    )
    try:
        async with asyncio.timeout(timeout):
            return await fetch.get(_http_url(url, permanent=True))
    except TimeoutError:
        raise FetchError(
            f"no complete answer from {short_text(url)} within {timeout:g} s", transient=True
        ) from None
    except aiohttp.ClientError as error:  # the connection failed, or the server broke the protocol
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise FetchError(f"fetching {short_text(url)} failed: {reason}", transient=True) from None


def _trusted_prefix(gateway: str) -> str | None:
    """The gateway as yarl normalises URLs, to compare hops with; None if misconfigured."""
    try:
        return str(_http_url(gateway_base(gateway), permanent=False))
    except FetchError:
        return None


def _http_url(text: str, *, permanent: bool) -> URL:
    try:
        url = URL(text)
        host = url.raw_host  # IDNA-encodes the name: an invalid one raises here
    except (ValueError, UnicodeError) as error:
        raise FetchError(f"invalid URL {short_text(text)}: {error}", permanent=permanent) from None
    if url.scheme not in ("http", "https") or not host:
        raise FetchError(f"not an http(s) URL: {short_text(text)}", permanent=permanent)
    return url


@dataclass(frozen=True)
class _Hop:
    """One request of a fetch: where it connects, with which headers, and for https the
    name TLS verifies (the URL's host, when the request is pinned to an address)."""

    target: URL
    headers: dict[str, str]
    server_hostname: str | None


@dataclass(frozen=True)
class _HttpFetch:
    client: aiohttp.ClientSession
    max_bytes: int
    allow_private: bool
    allowed: Sequence[IPNetwork]
    trusted_prefix: str | None

    async def get(self, url: URL) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            hop = await self._hop(url)
            async with self.client.get(
                hop.target,
                headers=hop.headers,
                allow_redirects=False,
                server_hostname=hop.server_hostname,
                # fetch_uri's own time limit bounds the whole fetch.
                timeout=aiohttp.ClientTimeout(total=None),
            ) as response:
                if response.status in REDIRECT_STATUSES:
                    url = self._redirect_target(url, response)
                    continue
                if not 200 <= response.status < 300:
                    raise FetchError(
                        f"HTTP {response.status} from {short_text(str(url))}",
                        transient=retryable_status(response.status),
                    )
                return await self._read_body(response, url)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    async def _hop(self, url: URL) -> _Hop:
        # identity: a compressed body's size says little about what it expands to.
        headers = {"Accept": "application/json, */*;q=0.5", "Accept-Encoding": "identity"}
        trusted = self.trusted_prefix is not None and str(url).startswith(self.trusted_prefix)
        if not (self.allow_private or trusted):
            host = url.raw_host or ""
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                addresses = await check_public_host(host, port, allowed=self.allowed)
            except UnresolvedHostError as error:
                raise FetchError(
                    f"cannot fetch {short_text(str(url))}: {error}", transient=True
                ) from None
            except OutboundAddressError as error:
                raise FetchError(
                    f"refused to fetch {short_text(str(url))}: {error}"
                    " (ERC8004_ALLOW_PRIVATE_URLS=true allows private addresses,"
                    " ERC8004_ALLOWED_NETWORKS chosen networks)",
                    permanent=True,  # until the operator changes the settings
                ) from None
            target, pin_headers, server_hostname = pin_to_address(url, addresses[0])
            return _Hop(target, {**headers, **pin_headers}, server_hostname)
        return _Hop(url, headers, None)

    @staticmethod
    def _redirect_target(url: URL, response: aiohttp.ClientResponse) -> URL:
        location = response.headers.get("Location")
        if not location:
            raise FetchError(
                f"HTTP {response.status} redirect from {short_text(str(url))} has no Location"
            )
        try:
            joined = str(url.join(URL(location)))  # relative to the hop's own URL
        except (ValueError, UnicodeError) as error:
            raise FetchError(f"invalid redirect Location {short_text(location)}: {error}") from None
        return _http_url(joined, permanent=False)

    async def _read_body(self, response: aiohttp.ClientResponse, url: URL) -> bytes:
        limit = self.max_bytes
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise FetchError(
                f"{short_text(str(url))} sends {int(declared)} bytes,"
                f" more than the limit of {limit}"
            )
        decoder = _body_decoder(response.headers.get("Content-Encoding", ""))
        body = bytearray()
        try:
            # Raw chunks (the session does not decompress), decompressed here with an
            # output bound: a client would inflate a whole chunk at once, however far it
            # expands.
            async for chunk in response.content.iter_any():
                body += decoder.decompress(chunk, limit + 1 - len(body)) if decoder else chunk
                if len(body) > limit:
                    break
            else:
                if decoder is not None:
                    body += decoder.flush()
        except zlib.error as error:
            raise FetchError(f"{short_text(str(url))} sent a corrupt body: {error}") from None
        if len(body) > limit:
            raise FetchError(f"{short_text(str(url))} sends more than the limit of {limit} bytes")
        return bytes(body)


def _body_decoder(content_encoding: str) -> zlib._Decompress | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise FetchError(f"unsupported Content-Encoding {encoding!r} (identity was asked for)")
