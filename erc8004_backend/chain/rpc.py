"""An Ethereum JSON-RPC client over HTTP with several endpoints, failover and backoff.

Failures are sorted into three kinds, because each needs a different answer:

- transient (connection errors, timeouts, HTTP 5xx): try the next endpoint, then back off;
- rate limits (HTTP 429, JSON-RPC -32005 without a result-size message): back off, honouring
  Retry-After, and try the next endpoint;
- answers (any other JSON-RPC error): raised at once as `RpcError`. A node saying that a log
  query is too large raises `RangeTooLargeError`, so the indexer can shrink its range.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from erc8004_backend.errors import Erc8004Error

log = structlog.get_logger(__name__)

JsonParams = list[Any]

# What nodes say when an eth_getLogs query spans too much: geth, erigon, Alchemy, Infura,
# QuickNode, Ankr and public gateways each word it differently.
_RANGE_TOO_LARGE = re.compile(
    r"more than \d+ results|too many (results|logs|blocks)|response size|block range"
    r"|range (is )?too (large|wide|big)|exceed(s|ed)? (the )?(max|maximum|limit)|query timeout"
    r"|log response size exceeded|limit exceeded.*results|try with this block range",
    re.IGNORECASE,
)
_RATE_LIMIT_CODES = {-32005, -32029, 429}


class RpcError(Erc8004Error):
    """The node answered a request with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method} failed: {message} (JSON-RPC error {code})")
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data


class RangeTooLargeError(RpcError):
    """An eth_getLogs query returned, or would return, more than the node allows."""


class RpcUnavailableError(Erc8004Error):
    """Every endpoint failed for as many attempts as the client allows."""


class ChainMismatchError(Erc8004Error):
    """An endpoint serves a different chain than the configuration says."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_initial: float = 0.2
    backoff_max: float = 10.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2**attempt)
        delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 (jitter, not crypto)
        return max(delay, min(retry_after or 0.0, self.backoff_max * 6))


class RpcClient:
    """JSON-RPC over HTTP to one chain through any of several endpoints.

    The client sticks to the endpoint that last worked and moves to the next one on a
    transient failure or a rate limit, so a healthy primary carries the load.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not urls:
            raise Erc8004Error("an RPC client needs at least one endpoint URL")
        self.urls = list(urls)
        self.retry = retry or RetryPolicy()
        self._current = 0
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"content-type": "application/json", **(headers or {})},
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
        )

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def current_url(self) -> str:
        return self.urls[self._current]

    # -- the two primitives -------------------------------------------------------------------

    async def call(self, method: str, params: JsonParams | None = None) -> Any:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        reply = await self._send(request, method)
        if not isinstance(reply, dict):
            raise RpcError(method, -32603, f"unexpected reply of type {type(reply).__name__}")
        return _result(method, reply)

    async def batch(self, calls: Sequence[tuple[str, JsonParams]]) -> list[Any]:
        """Several calls in one HTTP request; results in the order of the calls."""
        if not calls:
            return []
        first_id = next(self._ids)
        self._ids = itertools.count(first_id + len(calls))
        requests = [
            {"jsonrpc": "2.0", "id": first_id + i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        label = f"batch of {len(calls)} {calls[0][0]}"
        reply = await self._send(requests, label)
        if isinstance(reply, dict):  # some nodes answer a whole batch with one error
            _result(label, reply)
            raise RpcError(label, -32603, "a batch was answered with a single object")
        by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
        results = []
        for i, (method, _) in enumerate(calls):
            item = by_id.get(first_id + i)
            if item is None:
                raise RpcError(method, -32603, f"the batch reply lacks the answer to call {i}")
            results.append(_result(method, item))
        return results

    # -- typed helpers ------------------------------------------------------------------------

    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId"), 16)

    async def check_chain_id(self, expected: int) -> None:
        """Refuse to index from endpoints that serve another chain (checked on every one)."""
        for index, url in enumerate(self.urls):
            self._current = index
            try:
                actual = await self.chain_id()
            except (RpcUnavailableError, RpcError) as error:
                log.warning("rpc.chain_id_unchecked", url=_redact(url), error=str(error))
                continue
            if actual != expected:
                raise ChainMismatchError(
                    f"{_redact(url)} serves chain {actual}, but the configuration says {expected}"
                )
        self._current = 0

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)

    async def get_logs(
        self, addresses: Sequence[str], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        query = {"address": list(addresses), "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        logs = await self.call("eth_getLogs", [query])
        if not isinstance(logs, list):
            raise RpcError("eth_getLogs", -32603, "the reply is not a list of logs")
        return logs

    async def get_block_headers(self, numbers: Sequence[int]) -> list[dict[str, Any]]:
        """Blocks without transactions, batched; raises when a block does not exist (yet)."""
        headers: list[dict[str, Any]] = []
        for start in range(0, len(numbers), 100):
            chunk = numbers[start : start + 100]
            replies = await self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])
            for number, header in zip(chunk, replies, strict=True):
                if header is None:
                    raise RpcError("eth_getBlockByNumber", -32001, f"block {number} not found")
                headers.append(header)
        return headers

    # -- transport ----------------------------------------------------------------------------

    async def _send(self, payload: Any, label: str) -> Any:
        last_reason = "no attempt made"
        for attempt in range(self.retry.max_attempts):
            url = self.urls[self._current]
            try:
                return await self._post(url, payload)
            except _Retryable as failure:
                last_reason = f"{_redact(url)}: {failure.reason}"
                log.warning("rpc.retry", request=label, attempt=attempt + 1, error=last_reason)
                self._current = (self._current + 1) % len(self.urls)
                # Back off once every endpoint has had its turn, or at once on a rate limit.
                if self._current == 0 or failure.retry_after is not None:
                    await asyncio.sleep(self.retry.delay(attempt, failure.retry_after))
        raise RpcUnavailableError(
            f"{label}: no endpoint answered after {self.retry.max_attempts} attempts"
            f" (last: {last_reason})"
        )

    async def _post(self, url: str, payload: Any) -> Any:
        try:
            response = await self._http.post(url, json=payload)
        except httpx.TimeoutException as error:
            raise _Retryable(f"timed out ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise _Retryable(f"connection failed ({error or type(error).__name__})") from error
        if response.status_code == 429:
            raise _Retryable("rate limited (HTTP 429)", _retry_after(response))
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}")
        try:
            reply = response.json()
        except ValueError as error:
            if response.status_code >= 400:
                raise _Retryable(f"HTTP {response.status_code}") from error
            raise _Retryable("the reply is not JSON") from error
        for item in reply if isinstance(reply, list) else [reply]:
            error = item.get("error") if isinstance(item, dict) else None
            if isinstance(error, dict) and _is_rate_limit(error):
                raise _Retryable(f"rate limited ({error.get('message')})", _retry_after(response))
        return reply


def _result(method: str, reply: dict[str, Any]) -> Any:
    error = reply.get("error")
    if error is None:
        return reply.get("result")
    code = int(error.get("code", -32603)) if isinstance(error, dict) else -32603
    message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    data = error.get("data") if isinstance(error, dict) else None
    if method.endswith("eth_getLogs") and _RANGE_TOO_LARGE.search(message):
        raise RangeTooLargeError(method, code, message, data)
    raise RpcError(method, code, message, data)


def _is_rate_limit(error: dict[str, Any]) -> bool:
    message = str(error.get("message", ""))
    if _RANGE_TOO_LARGE.search(message):
        return False  # Infura's -32005 also means "too many results": that one is an answer
    return error.get("code") in _RATE_LIMIT_CODES or "rate limit" in message.lower()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else 1.0
    except ValueError:
        return 1.0


def _redact(url: str) -> str:
    """Endpoints often carry an API key in the path or query; show only scheme and host."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}{f':{parsed.port}' if parsed.port else ''}"
