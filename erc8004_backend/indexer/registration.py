"""Agent registration files: reading each agent's agentURI and keeping its services.

The indexer queues a row in `agent_registrations` for every Registered / URIUpdated event, in
the transaction that stores the event (`enqueue_registrations`). `RegistrationResolver` claims
due rows, fetches the files (https, http, ipfs:// through a gateway, or on-chain data: URIs)
within a size and a time limit, and stores the parsed document with its MCP and A2A endpoints,
or the error. Only transient failures are retried, with backoff; any other (a refused address,
an HTTP error other than 5xx / 408 / 425 / 429, a file that is not a registration file) is
final until an event names the URI again. `current_registration` answers for the MCP action:
the agent's current URI (its latest event) and what was read from it.

Fetching treats every URI as hostile: only four schemes, each redirect hop checked again, and
no connection to private, loopback, link-local, multicast, reserved or cloud-metadata
addresses once names are resolved (unless the configuration allows private addresses, or the
address is in one of its allowed networks).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote_to_bytes, urlsplit

import httpx
import psycopg
import structlog

from erc8004_backend.actions.delivery import retryable_status
from erc8004_backend.config import Settings
from erc8004_backend.database.queries import load_queries
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.indexer.repeated_failures import FailureReport, RepeatedFailures
from erc8004_backend.outbound import (
    IPNetwork,
    OutboundAddressError,
    UnresolvedHostError,
    check_public_host,
    pin_to_address,
)
from erc8004_backend.retry import wait_or_stop

QUERIES = load_queries("erc8004_backend.indexer", "registration.sql")

log = structlog.get_logger(__name__)

SUPPORTED_SCHEMES = ("https", "http", "ipfs", "data")
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# A host that keeps failing gets one log line a minute, with the count (see _log_failure).
FAILURE_LOG_PERIOD = 60.0

# Registration files are a few levels deep; a cap keeps hostile nesting cheap to reject.
MAX_DOCUMENT_DEPTH = 64

RegistrationStatus = Literal["pending", "fetched", "failed"]


class RegistrationError(Erc8004Error):
    """A registration file cannot be fetched or read.

    `permanent`: trying again cannot give another answer (an unsupported scheme, a malformed
    on-chain data: URI, an address the settings refuse). `transient`: trying again soon may
    succeed (a timeout, a connection failure, a name that does not resolve, HTTP 5xx / 408 /
    425 / 429, a misconfigured gateway). Neither: the server's answer, which changes only when
    someone changes the server (another HTTP error, a file that is not a registration file).
    The resolver retries only transient failures; a fetch for a delivery may wait for the
    server.
    """

    def __init__(self, message: str, *, permanent: bool = False, transient: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.transient = transient


# -- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """A parsed registration file."""

    document: dict[str, Any]
    services: list[dict[str, Any]]  # entries as written: name, endpoint, version, ...
    mcp_endpoint: str | None
    a2a_endpoint: str | None
    # The whole MCP / A2A entries: the spec names only name, endpoint and version, so any
    # further hint a file gives (authentication, headers, transport) is read from here.
    mcp_service: dict[str, Any] | None
    a2a_service: dict[str, Any] | None
    active: bool | None  # the file's `active` flag, None when absent or not a boolean


def parse_registration(raw: bytes) -> Registration:
    """Reads a registration file. Raises RegistrationError naming what is wrong."""
    document = _load_json_object(raw)
    services = _services(document)
    mcp = find_service(services, "MCP")
    a2a = find_service(services, "A2A")
    active = document.get("active")
    return Registration(
        document=document,
        services=services,
        mcp_endpoint=mcp["endpoint"] if mcp else None,
        a2a_endpoint=a2a["endpoint"] if a2a else None,
        mcp_service=mcp,
        a2a_service=a2a,
        active=active if isinstance(active, bool) else None,
    )


def find_service(services: Sequence[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The first service called `name` (any case) whose endpoint is an http(s) URL: an MCP
    server or an A2A agent card can only be reached through one."""
    for service in services:
        name_given = service.get("name")
        endpoint = service.get("endpoint")
        if (
            isinstance(name_given, str)
            and name_given.strip().lower() == name.lower()
            and isinstance(endpoint, str)
            and _is_http_url(endpoint)
        ):
            return service
    return None


def _load_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise RegistrationError("the registration file is empty")
    try:
        text = raw.decode("utf-8-sig")  # a byte-order mark is harmless, so allowed
    except UnicodeDecodeError as error:
        raise RegistrationError(
            f"the registration file is not UTF-8 text (invalid byte at offset {error.start})"
        ) from None
    try:
        document = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise RegistrationError(
            f"the registration file is not valid JSON: {error.msg}"
            f" (line {error.lineno}, column {error.colno})"
        ) from None
    except RecursionError:
        raise RegistrationError(
            "the registration file is not valid JSON: nested too deeply"
        ) from None
    except ValueError as error:  # NaN / Infinity, out-of-range numbers, huge integers
        raise RegistrationError(f"the registration file is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise RegistrationError(
            f"the registration file must be a JSON object, not {_json_type(document)}"
        )
    _check_storable(document)
    return document


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: PostgreSQL's jsonb has no infinity
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# PostgreSQL text and jsonb cannot hold NUL, nor lone UTF-16 surrogates (JSON escapes of them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _check_storable(document: dict[str, Any]) -> None:
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > MAX_DOCUMENT_DEPTH:
            raise RegistrationError(
                f"the registration file nests deeper than {MAX_DOCUMENT_DEPTH} levels"
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if _UNSTORABLE.search(key):
                    raise _unstorable()
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str) and _UNSTORABLE.search(value):
            raise _unstorable()


def _unstorable() -> RegistrationError:
    return RegistrationError(
        "the registration file contains a NUL character or an unpaired surrogate escape"
    )


def _services(document: dict[str, Any]) -> list[dict[str, Any]]:
    # `endpoints` is the key of earlier drafts of the spec, still found in older files.
    key = "services" if "services" in document else "endpoints"
    entries = document.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise RegistrationError(f"`{key}` must be an array, not {_json_type(entries)}")
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict):
            raise RegistrationError(f"{where} must be an object, not {_json_type(entry)}")
        for field in ("name", "endpoint"):
            if field not in entry:
                raise RegistrationError(f"{where} has no `{field}`")
            if not isinstance(entry[field], str):
                raise RegistrationError(
                    f"{where}.{field} must be a string, not {_json_type(entry[field])}"
                )
    return entries


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text.strip())
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


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
        raise RegistrationError(f"not a data: URI: {_short(uri)}", permanent=True)
    header, comma, payload = uri[len("data:") :].partition(",")
    if not comma:
        raise RegistrationError("the data: URI has no ',' before its data", permanent=True)
    data = unquote_to_bytes(payload)
    if header.rsplit(";", 1)[-1].strip().lower() != "base64":
        return data
    compact = re.sub(rb"\s+", b"", data).rstrip(b"=").translate(_BASE64_URLSAFE)
    if len(compact) % 4 == 1:  # no base64 text has this length, padded or not
        raise RegistrationError("the data: URI's base64 data is truncated", permanent=True)
    try:
        return base64.b64decode(compact + b"=" * (-len(compact) % 4), validate=True)
    except binascii.Error as error:
        raise RegistrationError(
            f"the data: URI's data is not valid base64: {error}", permanent=True
        ) from None


def ipfs_to_http(uri: str, gateway: str) -> str:
    """The gateway URL of an IPFS URI: `ipfs://CID/path` -> `{gateway}CID/path`.

    Also accepts the older `ipfs://ipfs/CID` and `ipfs:CID`. The content identifier must be
    alphanumeric, so nothing in the URI can change which server the gateway URL names.
    """
    if uri_scheme(uri) != "ipfs":
        raise RegistrationError(f"not an ipfs:// URI: {_short(uri)}", permanent=True)
    rest = uri[len("ipfs:") :].lstrip("/")
    if rest[:5].lower() == "ipfs/":
        rest = rest[5:]
    match = _CID.match(rest)
    remainder = rest[match.end() :] if match else ""
    if match is None or (remainder and remainder[0] not in "/?#"):
        raise RegistrationError(
            f"the ipfs URI has no valid content identifier: {_short(uri)}", permanent=True
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
        raise RegistrationError(
            f"the IPFS gateway must be an http(s) URL, not {gateway!r}", transient=True
        )
    return gateway if gateway.endswith("/") else gateway + "/"


def _short(text: str, limit: int = 160) -> str:
    """Long URIs (on-chain data: URIs run to kilobytes) cut for messages and logs."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


# -- fetching ----------------------------------------------------------------------------


def new_http_client() -> httpx.AsyncClient:
    """A client for fetching registration files: proxies from the environment are ignored
    (they would bypass the address checks), redirects are followed by hand."""
    return httpx.AsyncClient(
        trust_env=False,
        follow_redirects=False,
        headers={"User-Agent": "erc8004-backend registration resolver"},
    )


async def fetch_registration(
    uri: str,
    *,
    client: httpx.AsyncClient,
    gateway: str,
    max_bytes: int,
    timeout: float,
    allow_private: bool,
    allowed: Sequence[IPNetwork] = (),
) -> bytes:
    """The bytes of the registration file behind `uri`, at most `max_bytes`, within
    `timeout` seconds for everything (resolution, redirects, body).

    `allow_private` lifts the address checks (tests, devnets); addresses in `allowed`
    networks pass them. URLs under the configured gateway are the operator's choice and skip
    them too; hops leaving it are checked.
    """
    uri = uri.strip()
    if not uri:
        raise RegistrationError("the agent URI is empty", permanent=True)
    scheme = uri_scheme(uri)
    if scheme == "data":
        body = decode_data_uri(uri)
        if len(body) > max_bytes:
            raise RegistrationError(
                f"the data: URI holds {len(body)} bytes, more than the limit of {max_bytes}",
                permanent=True,
            )
        return body
    if scheme == "ipfs":
        url = ipfs_to_http(uri, gateway)
    elif scheme in ("http", "https"):
        url = uri
    elif scheme is None:
        raise RegistrationError(f"the agent URI has no scheme: {_short(uri)}", permanent=True)
    else:
        raise RegistrationError(
            f"unsupported URI scheme {scheme!r} (supported: {', '.join(SUPPORTED_SCHEMES)})",
            permanent=True,
        )
    fetch = _HttpFetch(
        client=client,
        max_bytes=max_bytes,
        timeout=timeout,
        allow_private=allow_private,
        allowed=allowed,
        trusted_prefix=_trusted_prefix(gateway),
    )
    try:
        async with asyncio.timeout(timeout):
            return await fetch.get(_http_url(url, permanent=True))
    except TimeoutError:
        raise RegistrationError(
            f"no complete answer from {_short(url)} within {timeout:g} s", transient=True
        ) from None
    except httpx.HTTPError as error:  # the connection failed, or the server broke the protocol
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise RegistrationError(
            f"fetching {_short(url)} failed: {reason}", transient=True
        ) from None


def _trusted_prefix(gateway: str) -> str | None:
    """The gateway as httpx normalises URLs, to compare hops with; None if misconfigured."""
    try:
        return str(_http_url(gateway_base(gateway), permanent=False))
    except RegistrationError:
        return None


def _http_url(text: str, *, permanent: bool) -> httpx.URL:
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as error:
        raise RegistrationError(
            f"invalid URL {_short(text)}: {error}", permanent=permanent
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise RegistrationError(f"not an http(s) URL: {_short(text)}", permanent=permanent)
    return url


@dataclass(frozen=True)
class _HttpFetch:
    client: httpx.AsyncClient
    max_bytes: int
    timeout: float
    allow_private: bool
    allowed: Sequence[IPNetwork]
    trusted_prefix: str | None

    async def get(self, url: httpx.URL) -> bytes:
        for _hop in range(MAX_REDIRECTS + 1):
            request = await self._request(url)
            response = await self.client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code in _REDIRECT_STATUSES:
                    url = self._redirect_target(url, response)
                    continue
                if not response.is_success:
                    raise RegistrationError(
                        f"HTTP {response.status_code} from {_short(str(url))}",
                        transient=retryable_status(response.status_code),
                    )
                return await self._read_body(response, url)
            finally:
                await response.aclose()
        raise RegistrationError(f"more than {MAX_REDIRECTS} redirects")

    async def _request(self, url: httpx.URL) -> httpx.Request:
        # identity: a compressed body's size says little about what it expands to.
        headers = {"Accept": "application/json, */*;q=0.5", "Accept-Encoding": "identity"}
        extensions: dict[str, Any] = {}
        target = url
        trusted = self.trusted_prefix is not None and str(url).startswith(self.trusted_prefix)
        if not (self.allow_private or trusted):
            host = url.raw_host.decode("ascii")
            port = url.port or (443 if url.scheme == "https" else 80)
            try:
                addresses = await check_public_host(host, port, allowed=self.allowed)
            except UnresolvedHostError as error:
                raise RegistrationError(
                    f"cannot fetch {_short(str(url))}: {error}", transient=True
                ) from None
            except OutboundAddressError as error:
                raise RegistrationError(
                    f"refused to fetch {_short(str(url))}: {error}"
                    " (ERC8004_ALLOW_PRIVATE_URLS=true allows private addresses,"
                    " ERC8004_ALLOWED_NETWORKS chosen networks)",
                    permanent=True,  # until the operator changes the settings
                ) from None
            target, pin_headers, extensions = pin_to_address(url, addresses[0])
            headers.update(pin_headers)
        return self.client.build_request(
            "GET", target, headers=headers, timeout=self.timeout, extensions=extensions
        )

    @staticmethod
    def _redirect_target(url: httpx.URL, response: httpx.Response) -> httpx.URL:
        location = response.headers.get("Location")
        if not location:
            raise RegistrationError(
                f"HTTP {response.status_code} redirect from {_short(str(url))} has no Location"
            )
        try:
            joined = str(url.join(location))  # relative to the hop's own URL
        except (httpx.InvalidURL, ValueError) as error:
            raise RegistrationError(
                f"invalid redirect Location {_short(location)}: {error}"
            ) from None
        return _http_url(joined, permanent=False)

    async def _read_body(self, response: httpx.Response, url: httpx.URL) -> bytes:
        limit = self.max_bytes
        declared = response.headers.get("Content-Length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise RegistrationError(
                f"{_short(str(url))} sends {int(declared)} bytes, more than the limit of {limit}"
            )
        decoder = _body_decoder(response.headers.get("Content-Encoding", ""))
        body = bytearray()
        try:
            # Raw chunks, decompressed here with an output bound: httpx would inflate a
            # whole chunk at once, however far it expands.
            async for chunk in response.aiter_raw():
                body += decoder.decompress(chunk, limit + 1 - len(body)) if decoder else chunk
                if len(body) > limit:
                    break
            else:
                if decoder is not None:
                    body += decoder.flush()
        except zlib.error as error:
            raise RegistrationError(f"{_short(str(url))} sent a corrupt body: {error}") from None
        if len(body) > limit:
            raise RegistrationError(
                f"{_short(str(url))} sends more than the limit of {limit} bytes"
            )
        return bytes(body)


def _body_decoder(content_encoding: str) -> zlib._Decompress | None:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise RegistrationError(f"unsupported Content-Encoding {encoding!r} (identity was asked for)")


# -- storage -----------------------------------------------------------------------------


async def enqueue_registrations(
    conn: psycopg.AsyncConnection, chain_id: int, items: Sequence[tuple[int, str]]
) -> None:
    """Queue (agent_id, uri) pairs for fetching, in the caller's transaction: a new pending
    row each, or an existing one set back to pending so its file is read again."""
    if not items:
        return
    await conn.execute(
        QUERIES["enqueue"],
        {
            "chain_id": chain_id,
            "agent_ids": [Decimal(agent_id) for agent_id, _ in items],  # uint256: numeric
            "uris": [uri for _, uri in items],
        },
    )


@dataclass(frozen=True)
class StoredRegistration:
    """An agent's current URI and what was read from it."""

    chain_id: int
    agent_id: int
    agent_uri: str
    status: RegistrationStatus | None  # None: this URI was never queued
    document: dict[str, Any] | None  # the last file read from this URI, if any
    services: list[dict[str, Any]]
    mcp_endpoint: str | None
    a2a_endpoint: str | None
    error: str | None  # of the latest attempt
    attempts: int
    fetched_at: datetime | None

    @property
    def mcp_service(self) -> dict[str, Any] | None:
        return find_service(self.services, "MCP")

    @property
    def a2a_service(self) -> dict[str, Any] | None:
        return find_service(self.services, "A2A")


async def current_registration(
    conn: psycopg.AsyncConnection, chain_id: int, agent_id: int
) -> StoredRegistration | None:
    """The agent's registration by its latest Registered / URIUpdated event; None when the
    agent has no such event."""
    cursor = await conn.execute(
        QUERIES["current_registration"], {"chain_id": chain_id, "agent_id": Decimal(agent_id)}
    )
    row = await cursor.fetchone()
    if row is None:
        return None
    uri, status, document, services, mcp, a2a, error, attempts, fetched_at = row
    return StoredRegistration(
        chain_id=chain_id,
        agent_id=agent_id,
        agent_uri=uri,
        status=status,
        document=document,
        services=services or [],
        mcp_endpoint=mcp,
        a2a_endpoint=a2a,
        error=error,
        attempts=attempts or 0,
        fetched_at=fetched_at,
    )


# -- the resolver ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    chain_id: int
    agent_id: Decimal
    uri_digest: str
    agent_uri: str
    attempts: int
    claimed_at: datetime  # the row's updated_at after the claim: its version


@dataclass(frozen=True)
class _Outcome:
    claim: _Claim
    registration: Registration | None
    error: str = ""
    final: bool = False  # no retry: the row fails at once


class RegistrationResolver:
    """Fetches queued registration files and stores what they say.

    Many resolvers can share the queue: rows are claimed with FOR UPDATE SKIP LOCKED as
    leases, and a result is stored only if its row was not queued again meanwhile.
    """

    def __init__(
        self,
        conn: psycopg.AsyncConnection,
        *,
        settings: Settings,
        client: httpx.AsyncClient | None = None,
        max_attempts: int = 5,
        retry_delay: timedelta = timedelta(seconds=30),
        max_retry_delay: timedelta = timedelta(hours=1),
        batch_size: int = 16,
        concurrency: int = 8,
        idle_sleep: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._conn = conn
        self._owns_client = client is None
        self._client = client or new_http_client()
        self._gateway = settings.ipfs_gateway
        self._max_bytes = settings.registration_max_bytes
        self._timeout = settings.registration_fetch_timeout
        self._allow_private = settings.allow_private_urls
        self._allowed_networks = settings.allowed_ip_networks
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._batch_size = batch_size
        self._fetch_slots = asyncio.Semaphore(concurrency)
        self._idle_sleep = idle_sleep
        # A claim outlives the slowest batch (every fetch waiting for a slot, then timing
        # out), so no other resolver takes a row that is still being fetched.
        rounds = -(-batch_size // concurrency)
        self._lease = timedelta(seconds=rounds * self._timeout + 60)
        self._repeated_failures = RepeatedFailures(FAILURE_LOG_PERIOD, clock)

    async def run(self, stop: asyncio.Event) -> None:
        """Resolve until `stop` is set. A lost database connection is raised (the caller
        reconnects); any other failure is logged and tried again after a pause."""
        try:
            while not stop.is_set():
                try:
                    handled = await self.run_once()
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except Exception:
                    log.exception("registrations.batch_failed")
                    handled = 0
                if handled < self._batch_size:  # the queue is drained for now
                    await wait_or_stop(stop, self._idle_sleep)
        finally:
            for report in self._repeated_failures.flush():
                _log_repeated_failures(report)
            await self.aclose()

    async def run_once(self) -> int:
        """Claim one batch of due rows, fetch them concurrently, store the outcomes.
        Returns how many rows were handled (0: nothing was due)."""
        for report in self._repeated_failures.due():
            _log_repeated_failures(report)
        claims = await self._claim()
        if not claims:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(claim) for claim in claims))
        await self._store(outcomes)
        return len(claims)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _claim(self) -> list[_Claim]:
        async with self._conn.transaction():
            cursor = await self._conn.execute(
                QUERIES["claim_due"], {"limit": self._batch_size, "lease": self._lease}
            )
            rows = await cursor.fetchall()
        return [_Claim(*row) for row in rows]

    async def _attempt(self, claim: _Claim) -> _Outcome:
        async with self._fetch_slots:
            try:
                raw = await fetch_registration(
                    claim.agent_uri,
                    client=self._client,
                    gateway=self._gateway,
                    max_bytes=self._max_bytes,
                    timeout=self._timeout,
                    allow_private=self._allow_private,
                    allowed=self._allowed_networks,
                )
                registration = parse_registration(raw)
            except RegistrationError as error:
                # Only a retry of a transient failure may give another answer soon; the
                # rest waits for an event that names the URI again.
                self._log_failure(claim, str(error), final=not error.transient)
                return _Outcome(claim, None, str(error), final=not error.transient)
            except Exception as error:  # a bug must not lose the batch's other results
                log.exception("registration.unexpected_error", **self._log_fields(claim))
                return _Outcome(claim, None, f"unexpected error: {type(error).__name__}: {error}")
        log.info(
            "registration.fetched",
            **self._log_fields(claim),
            mcp_endpoint=registration.mcp_endpoint,
            a2a_endpoint=registration.a2a_endpoint,
        )
        return _Outcome(claim, registration)

    async def _store(self, outcomes: Sequence[_Outcome]) -> None:
        fetched = [(o.claim, o.registration) for o in outcomes if o.registration is not None]
        failed = [outcome for outcome in outcomes if outcome.registration is None]
        async with self._conn.transaction():
            if fetched:
                await self._conn.execute(
                    QUERIES["store_fetched"],
                    {
                        **_row_keys([claim for claim, _ in fetched]),
                        "documents": [_json(found.document) for _, found in fetched],
                        "services": [_json(found.services) for _, found in fetched],
                        "mcp_endpoints": [found.mcp_endpoint for _, found in fetched],
                        "a2a_endpoints": [found.a2a_endpoint for _, found in fetched],
                    },
                )
            if failed:
                await self._conn.execute(
                    QUERIES["store_failed"],
                    {
                        **_row_keys([outcome.claim for outcome in failed]),
                        "errors": [_storable_text(outcome.error) for outcome in failed],
                        "final": [outcome.final for outcome in failed],
                        "max_attempts": self._max_attempts,
                        "retry_delay": self._retry_delay,
                        "max_retry_delay": self._max_retry_delay,
                    },
                )

    def _log_failure(self, claim: _Claim, error: str, *, final: bool) -> None:
        """A failure with a host (http, https, ipfs through the gateway) is told at once only
        if it is the host's first in a minute, else counted for the host's line a minute;
        others (data: URIs, refused schemes) are each the agent's own and told each."""
        gives_up = final or claim.attempts >= self._max_attempts
        event = "registration.failed" if gives_up else "registration.retry"
        fields = {**self._log_fields(claim), "attempts": claim.attempts, "error": error}
        host = fetched_host(claim.agent_uri, self._gateway)
        if host is None:
            log.info(event, **fields)
            return
        report = self._repeated_failures.failed(host, event, fields)
        if report is not None:
            log.info(event, host=host, **fields)

    @staticmethod
    def _log_fields(claim: _Claim) -> dict[str, Any]:
        return {
            "chain_id": claim.chain_id,
            "agent_id": int(claim.agent_id),
            "uri": _short(claim.agent_uri, 100),
        }


def fetched_host(uri: str, gateway: str) -> str | None:
    """The host a fetch of `uri` goes to first: its own (http, https) or the IPFS gateway's;
    None for a URI fetched from no host (data:) or not fetched at all."""
    scheme = uri_scheme(uri.strip())
    try:
        if scheme in ("http", "https"):
            return urlsplit(uri.strip()).hostname or None
        if scheme == "ipfs":
            return urlsplit(gateway).hostname or None
    except ValueError:
        return None
    return None


def _log_repeated_failures(report: FailureReport) -> None:
    """The line a minute of a host that keeps failing: how often, and the latest failure."""
    log.info(
        "registration.failures",
        host=report.key,
        failures=report.failures,
        given_up=report.counts.get("registration.failed", 0),
        seconds=round(report.seconds),
        **report.latest,
    )


def _row_keys(claims: Sequence[_Claim]) -> dict[str, list[Any]]:
    """The claimed rows' keys and versions, as the arrays the store queries unnest."""
    return {
        "chain_ids": [claim.chain_id for claim in claims],
        "agent_ids": [claim.agent_id for claim in claims],
        "uri_digests": [claim.uri_digest for claim in claims],
        "claimed_at": [claim.claimed_at for claim in claims],
    }


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _storable_text(text: str, limit: int = 1000) -> str:
    """An error message PostgreSQL can store: no NUL, valid UTF-8, bounded."""
    cleaned = text.replace("\x00", "\\0").encode("utf-8", "replace").decode("utf-8")
    return cleaned[:limit]
