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
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import psycopg
import structlog

from erc8004_backend.config import Settings
from erc8004_backend.database.queries import load_queries
from erc8004_backend.indexer.repeated_failures import FailureReport, RepeatedFailures
from erc8004_backend.retry import wait_or_stop
from erc8004_backend.uri_fetch import (
    FetchError,
    fetch_uri,
    new_http_client,
    short_text,
    uri_scheme,
)

QUERIES = load_queries("erc8004_backend.indexer", "registration.sql")

log = structlog.get_logger(__name__)

# A host that keeps failing gets one log line a minute, with the count (see _log_failure).
FAILURE_LOG_PERIOD = 60.0

# Registration files are a few levels deep; a cap keeps hostile nesting cheap to reject.
MAX_DOCUMENT_DEPTH = 64

RegistrationStatus = Literal["pending", "fetched", "failed"]


class RegistrationError(FetchError):
    """A file fetched is not a registration file (see FetchError for `permanent` and
    `transient`: neither, here: the server's answer). The resolver retries only transient
    failures."""


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
        client: aiohttp.ClientSession | None = None,
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
        self._client = client or new_http_client("erc8004-backend registration resolver")
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
            await self._client.close()

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
                raw = await fetch_uri(
                    claim.agent_uri,
                    client=self._client,
                    gateway=self._gateway,
                    max_bytes=self._max_bytes,
                    timeout=self._timeout,
                    allow_private=self._allow_private,
                    allowed=self._allowed_networks,
                )
                registration = parse_registration(raw)
            except FetchError as error:
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
            "uri": short_text(claim.agent_uri, 100),
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
