"""An Ethereum JSON-RPC client over HTTP with several endpoints, failover and backoff.

Failures are sorted into three kinds, because each needs a different answer:

- transient (connection errors, timeouts, HTTP 5xx, replies that are not JSON-RPC): the
  endpoint cools down for a backoff delay and the next endpoint is tried;
- rate limits (HTTP 429, JSON-RPC -32005 and kin): the same, but the endpoint cools down for
  at least the server's Retry-After;
- answers (any other JSON-RPC error): raised at once as `RpcError`. A node saying that a log
  query is too large raises `RangeTooLargeError`, so the indexer can shrink its range. A
  node without the state of an old block (not an archive node) raises
  `StateUnavailableError`; `get_code` first asks the other endpoints, which may keep it.

The client waits only when every endpoint is cooling down, so a dead or throttled endpoint
costs one failed attempt while a healthy one is available.

Batches hold at most `MAX_BATCH` calls. An endpoint that refuses a batch as too large
(erigon and nethermind take 100 by default, besu 50 in some versions, public gateways fewer
or none) has its own limit halved, down to plain requests one by one, and the batch goes
again; the other endpoints keep theirs.

Endpoint URLs often carry an API key, so only `scheme://host:port` ever reaches a log line or
an error message.

The transport is aiohttp: a small request (the indexer polls the head with one, about every
`poll_interval` seconds) costs it a fifth of the CPU httpx takes.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from yarl import URL

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.retry import RetryPolicy, parse_retry_after

log = structlog.get_logger(__name__)

JsonParams = list[Any]

# What nodes say when an eth_getLogs query spans too much: geth, erigon, Alchemy, Infura,
# QuickNode, Ankr and public gateways each word it differently.
# Not "block range extends beyond current head block" nor "invalid block range params"
# (geth, reth, an endpoint a block behind its peers): retried as they are.
_RANGE_TOO_LARGE = re.compile(
    r"more than \d+ results|too many (results|logs|blocks)|response size"
    r"|(max|maximum) block range|block range (is )?(too|exceed|limit)"
    r"|range (is )?too (large|wide|big)|exceed(s|ed)? (the )?(max|maximum|limit)|query timeout"
    r"|log response size exceeded|limit exceeded.*results|try with this block range",
    re.IGNORECASE,
)
# What nodes say when asked for the state of a block they no longer keep (geth, erigon, reth,
# nethermind, besu, Infura, public gateways): they are not archive nodes.
_STATE_UNAVAILABLE = re.compile(
    r"missing trie node|header not found|historical state|archive|pruned|pruning"
    r"|state (is )?(not available|unavailable|not found)|(no|world) state"
    r"|state (at|for) block|unknown block|block not found",
    re.IGNORECASE,
)
# What nodes say when a batch holds more calls than they take, or when they take none:
# "batch limit 100 exceeded" (erigon), "Number of requests exceeds max batch size" (besu,
# with the rate limit's code -32005), "batch too large", "Exceeded maximum batch size",
# "batch requests are not supported".
_BATCH_REFUSED = re.compile(r"batch", re.IGNORECASE)
MAX_BATCH = 100
_RATE_LIMIT_CODES = {-32005, -32029, -32090, 429}
_RATE_LIMIT_WORDS = re.compile(
    r"rate.?limit|too many requests|request limit|capacity|quota", re.IGNORECASE
)


def checked_logs(logs: list[Any], from_block: int, to_block: int) -> list[dict[str, Any]]:
    """An eth_getLogs reply's logs, each once: a log served twice (some nodes have) is kept
    once, as storing it twice would fail the batch for good. A log outside the range asked
    for, without its position, or twice with different contents is an RpcError (retried,
    perhaps of another endpoint), never stored."""
    kept: dict[tuple[str, int], dict[str, Any]] = {}
    for entry in logs:
        try:
            number = int(entry["blockNumber"], 16)
            key = (entry["blockHash"].lower(), int(entry["logIndex"], 16))
        except (KeyError, TypeError, ValueError, AttributeError):
            problem = "a log without its block number, block hash or log index"
            raise RpcError("eth_getLogs", -32603, problem) from None
        if not from_block <= number <= to_block:
            raise RpcError("eth_getLogs", -32603, f"a log of block {number}, outside the"
                           f" blocks {from_block}-{to_block} asked for")  # fmt: skip
        if (seen := kept.setdefault(key, entry)) is not entry and seen != entry:
            raise RpcError("eth_getLogs", -32603, f"two different logs at log index {key[1]}"
                           f" of block {number}")  # fmt: skip
    return list(kept.values())


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


class StateUnavailableError(RpcError):
    """The node does not keep the state of the block asked about: it is not an archive node."""


class _BatchRefusedError(RpcError):
    """A node refused a batch for its size (or any batch): `batch` sends it in halves."""


class RpcUnavailableError(Erc8004Error):
    """Every endpoint failed for as many attempts as the client allows."""


class ChainMismatchError(Erc8004Error):
    """An endpoint serves a different chain than the configuration says."""


class _RetryableError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class _Endpoint:
    url: str
    label: str  # the URL without path, query or credentials: safe to log
    proxy: str | None  # as the environment names it (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)
    failures: int = 0  # consecutive failed attempts
    not_before: float = 0.0  # time.monotonic() before which it is not tried again
    verified: bool = False  # its chain id matched the expected one
    batch_limit: int = MAX_BATCH  # calls per batch; lowered when it refuses more


class RpcClient:
    """JSON-RPC over HTTP to one chain through any of several endpoints.

    The client sticks to the endpoint that last worked and moves to the next one on a
    transient failure or a rate limit, so a healthy primary carries the load. After
    `check_chain_id`, an endpoint that could not be checked then is checked before its first
    use, so no request is ever answered by an endpoint of another chain.
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
        self._endpoints = [_Endpoint(url, _checked_label(url), _environment_proxy(url))
                           for url in self.urls]  # fmt: skip
        self.retry = retry or RetryPolicy()
        self._current = 0
        # The endpoint that last answered for an old block's state (an archive node).
        self._state_endpoint: int | None = None
        self._expected_chain_id: int | None = None
        self._ids = itertools.count(1)
        # Between two reads of a reply, not for the whole of it: a range of logs may take
        # longer to arrive than to start. `connect` includes waiting for a free connection.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=min(timeout, 5.0), sock_read=timeout
        )
        self._headers = {"content-type": "application/json", **(headers or {})}
        self._session: aiohttp.ClientSession | None = None  # made in the loop that uses it

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers=self._headers,
                connector=aiohttp.TCPConnector(limit=16),
                # Not trust_env: it reads the environment and ~/.netrc again for every
                # request, in a thread. Each endpoint's proxy is read once instead.
                trust_env=False,
            )
        return self._session

    @property
    def current_url(self) -> str:
        return self.urls[self._current]

    @property
    def batch_limit(self) -> int:
        """Calls per batch to the endpoint in use."""
        return self._endpoints[self._current].batch_limit

    # -- the two primitives -------------------------------------------------------------------

    async def call(self, method: str, params: JsonParams | None = None) -> Any:
        request = {
            "jsonrpc": "2.0",
            "id": next(self._ids),
            "method": method,
            "params": params or [],
        }
        reply = await self._send(request, method)
        if not isinstance(reply, dict):
            raise RpcError(method, -32603, f"unexpected reply of type {type(reply).__name__}")
        return _result(method, reply)

    async def batch(self, calls: Sequence[tuple[str, JsonParams]]) -> list[Any]:
        """Several calls in as few HTTP requests as the node takes (`batch_limit` calls
        each); results in the order of the calls."""
        results: list[Any] = []
        start = 0
        while start < len(calls):
            chunk = calls[start : start + self.batch_limit]
            try:
                results += await self._batch_once(chunk)
            except _BatchRefusedError as refused:
                # The endpoint that refused it is the one that answered. Never up again:
                # another fetch may have lowered its limit further meanwhile.
                endpoint = self._endpoints[self._current]
                endpoint.batch_limit = min(endpoint.batch_limit, max(1, len(chunk) // 2))
                log.warning(
                    "rpc.batch_limit_lowered", endpoint=endpoint.label,
                    batch_limit=endpoint.batch_limit, error=refused.rpc_message,
                )  # fmt: skip
                continue
            start += len(chunk)
        return results

    async def _batch_once(self, calls: Sequence[tuple[str, JsonParams]]) -> list[Any]:
        if len(calls) == 1:  # a plain request: some nodes take no batch at all
            return [await self.call(*calls[0])]
        ids = [next(self._ids) for _ in calls]
        requests = [
            {"jsonrpc": "2.0", "id": id_, "method": method, "params": params}
            for id_, (method, params) in zip(ids, calls, strict=True)
        ]
        label = f"batch of {len(calls)} {calls[0][0]}"
        reply = await self._send(requests, label)
        if isinstance(reply, dict):  # some nodes answer a whole batch with one error
            try:
                _result(label, reply)
            except RpcError as error:
                if _is_batch_refusal(error.rpc_message):
                    raise _BatchRefusedError(label, error.code, error.rpc_message) from None
                raise
            raise RpcError(label, -32603, "a batch was answered with a single object")
        by_id = {item.get("id"): item for item in reply if isinstance(item, dict)}
        results = []
        for i, (id_, (method, _)) in enumerate(zip(ids, calls, strict=True)):
            item = by_id.get(id_)
            if item is None:
                raise RpcError(method, -32603, f"the batch reply lacks the answer to call {i}")
            results.append(_result(method, item))
        return results

    # -- typed helpers ------------------------------------------------------------------------

    async def chain_id(self) -> int:
        return _quantity("eth_chainId", await self.call("eth_chainId"))

    async def check_chain_id(self, expected: int) -> None:
        """Refuse endpoints that serve another chain; each is asked itself, without failover.

        Raises `ChainMismatchError` naming the endpoint. One that cannot be asked now is only
        logged, and asked before the client first sends it a request.
        """
        self._expected_chain_id = expected
        for endpoint in self._endpoints:
            endpoint.verified = False
        for endpoint in self._endpoints:
            try:
                await self._verify(endpoint)
            except _RetryableError as failure:
                log.warning("rpc.chain_id_unchecked", url=endpoint.label, error=failure.reason)

    async def block_number(self) -> int:
        return _quantity("eth_blockNumber", await self.call("eth_blockNumber"))

    async def head_and_header(self, number: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The head's header and block `number`'s header (None when the node has no such
        block), in one request: an indexer at the head needs both at every poll, and the
        head's header again when it fetches the head's logs."""
        head, header = await self.batch(
            [("eth_getBlockByNumber", ["latest", False]),
             ("eth_getBlockByNumber", [hex(number), False])]
        )  # fmt: skip
        if not isinstance(head, dict) or not all(
            isinstance(head.get(key), str) for key in ("hash", "parentHash", "timestamp")
        ):
            raise RpcError("eth_getBlockByNumber", -32603, "the latest block is not a header")
        for key in ("number", "timestamp"):
            _quantity("eth_getBlockByNumber", head.get(key))  # a number, or RpcError
        return head, header if isinstance(header, dict) else None

    async def get_logs(
        self, addresses: Sequence[str], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        query = {"address": list(addresses), "fromBlock": hex(from_block), "toBlock": hex(to_block)}
        logs = await self.call("eth_getLogs", [query])
        if not isinstance(logs, list):
            raise RpcError("eth_getLogs", -32603, "the reply is not a list of logs")
        return checked_logs(logs, from_block, to_block)

    async def get_code(self, address: str, block: int | str = "latest") -> str:
        """The contract code at `address` in `block` ("0x": none).

        Old blocks need an archive node: an endpoint without the block's state hands the
        request to the next endpoint not asked yet (waiting for it if it is cooling down after
        a rate limit); when none keeps it, StateUnavailableError. The endpoint that kept it is
        asked first next time, while every other request still goes where it went before.
        """
        params = [address, block if isinstance(block, str) else hex(block)]
        preferred = self._current
        if self._state_endpoint is not None:
            self._current = self._state_endpoint
        asked: set[int] = set()
        try:
            for _ in range(self.retry.max_attempts * len(self._endpoints)):
                try:
                    code = await self.call("eth_getCode", params)
                except StateUnavailableError:
                    asked.add(self._current)  # the endpoint that answered so
                    unasked = [i for i in range(len(self._endpoints)) if i not in asked]
                    if not unasked:
                        raise
                    self._current = min(unasked, key=lambda i: self._endpoints[i].not_before)
                    wait = self._endpoints[self._current].not_before - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    continue
                if not isinstance(code, str) or not code.startswith("0x"):
                    raise RpcError(
                        "eth_getCode", -32603, f"expected hex code, got {str(code)[:40]!r}"
                    )
                self._state_endpoint = self._current
                return code
            raise RpcUnavailableError(
                f"eth_getCode at block {params[1]}: the endpoints that may keep old state did"
                " not answer"
            )
        finally:
            self._current = preferred

    async def get_block_headers(self, numbers: Sequence[int]) -> list[dict[str, Any]]:
        """Blocks without transactions, batched; raises when a block does not exist (yet)."""
        replies = await self.batch([("eth_getBlockByNumber", [hex(n), False]) for n in numbers])
        for number, header in zip(numbers, replies, strict=True):
            if not isinstance(header, dict):
                raise RpcError("eth_getBlockByNumber", -32001, f"block {number} not found")
        return replies

    # -- transport ----------------------------------------------------------------------------

    async def _send(self, payload: Any, label: str) -> Any:
        last_reason = "no attempt made"
        for attempt in range(self.retry.max_attempts):
            index = self._choose()
            endpoint = self._endpoints[index]
            wait = endpoint.not_before - time.monotonic()
            if wait > 0:  # every endpoint is cooling down
                await asyncio.sleep(wait)
            try:
                if self._expected_chain_id is not None and not endpoint.verified:
                    await self._verify(endpoint)
                reply = await self._post(endpoint, payload)
            except _RetryableError as failure:
                last_reason = f"{endpoint.label}: {failure.reason}"
                log.warning(
                    "rpc.retry",
                    request=label,
                    attempt=attempt + 1,
                    max_attempts=self.retry.max_attempts,
                    error=last_reason,
                )
                endpoint.failures += 1
                delay = self.retry.delay(endpoint.failures - 1, failure.retry_after)
                endpoint.not_before = time.monotonic() + delay
                if self._current == index:
                    self._current = (index + 1) % len(self._endpoints)
                continue
            endpoint.failures = 0
            self._current = index
            return reply
        raise RpcUnavailableError(
            f"{label}: no endpoint answered after {self.retry.max_attempts} attempts"
            f" (last: {last_reason})"
        )

    def _choose(self) -> int:
        """The current endpoint, else the next one not cooling down, else the first to recover."""
        now = time.monotonic()
        count = len(self._endpoints)
        order = [(self._current + offset) % count for offset in range(count)]
        for index in order:
            if self._endpoints[index].not_before <= now:
                return index
        return min(order, key=lambda index: self._endpoints[index].not_before)

    async def _verify(self, endpoint: _Endpoint) -> None:
        """Ask one endpoint for its chain id; raises ChainMismatchError, or _RetryableError."""
        expected = self._expected_chain_id
        if expected is None:
            return
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": "eth_chainId", "params": []}
        reply = await self._post(endpoint, request)
        try:
            if not isinstance(reply, dict):
                raise RpcError("eth_chainId", -32603, "the reply is not an object")
            actual = _quantity("eth_chainId", _result("eth_chainId", reply))
        except RpcError as error:
            raise _RetryableError(f"cannot tell its chain id ({error.rpc_message})") from error
        if actual != expected:
            raise ChainMismatchError(
                f"{endpoint.label} serves chain {actual}, but the configuration says {expected}"
            )
        endpoint.verified = True

    async def _post(self, endpoint: _Endpoint, payload: Any) -> Any:
        try:
            # No redirects followed: a POST would become a GET, and the endpoint's headers
            # (API keys) would go to wherever it points.
            async with self._http().post(
                endpoint.url, data=orjson.dumps(payload), proxy=endpoint.proxy,
                allow_redirects=False,
            ) as response:  # fmt: skip
                status = response.status
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                content = await response.read()
        except aiohttp.ConnectionTimeoutError as error:
            raise _RetryableError("timed out connecting") from error
        except TimeoutError as error:
            raise _RetryableError("timed out waiting for the reply") from error
        except aiohttp.ClientError as error:
            detail = (str(error) or type(error).__name__).replace(endpoint.url, endpoint.label)
            raise _RetryableError(f"connection failed ({detail})") from error
        if status == 429:
            raise _RetryableError("rate limited (HTTP 429)", retry_after)
        if status >= 500:
            raise _RetryableError(f"HTTP {status}", retry_after)
        try:
            # orjson: a backfill parses megabytes of logs per second, three times faster.
            reply = orjson.loads(content)
        except orjson.JSONDecodeError as error:
            raise _RetryableError(f"HTTP {status}, the reply is not JSON") from error
        if not _is_jsonrpc_reply(reply):  # an HTML error page, a gateway's own JSON, ...
            raise _RetryableError(f"HTTP {status}, the reply is not JSON-RPC")
        methods = {
            item.get("id"): item.get("method")
            for item in (payload if isinstance(payload, list) else [payload])
        }
        for item in reply if isinstance(reply, list) else [reply]:
            fault = item.get("error")
            if isinstance(fault, dict) and _is_rate_limit(fault, methods.get(item.get("id"))):
                if isinstance(payload, list) and _is_batch_refusal(str(fault.get("message", ""))):
                    continue  # besu says -32005 too: `batch` sends it in halves
                raise _RetryableError(f"rate limited ({fault.get('message')})", retry_after)
        return reply


def _result(method: str, reply: dict[str, Any]) -> Any:
    error = reply.get("error")
    if error is None:
        if "result" not in reply:
            raise RpcError(method, -32603, "the reply has neither a result nor an error")
        return reply["result"]
    code, message, data = -32603, str(error), None
    if isinstance(error, dict):
        message = str(error.get("message", error))
        data = error.get("data")
        if isinstance(error.get("code"), int):
            code = error["code"]
    if method.endswith("eth_getLogs") and _RANGE_TOO_LARGE.search(message):
        raise RangeTooLargeError(method, code, message, data)
    if method == "eth_getCode" and _STATE_UNAVAILABLE.search(message):
        raise StateUnavailableError(method, code, message, data)
    raise RpcError(method, code, message, data)


def _is_jsonrpc_reply(reply: Any) -> bool:
    if isinstance(reply, list):
        return bool(reply) and all(_is_jsonrpc_reply(item) for item in reply)
    return isinstance(reply, dict) and ("result" in reply or "error" in reply)


def _is_rate_limit(error: dict[str, Any], method: Any) -> bool:
    message = str(error.get("message", ""))
    if method == "eth_getLogs" and _RANGE_TOO_LARGE.search(message):
        return False  # Infura's -32005 also means "too many results": that one is an answer
    code = error.get("code")
    return (isinstance(code, int) and code in _RATE_LIMIT_CODES) or bool(
        _RATE_LIMIT_WORDS.search(message)
    )


def _is_batch_refusal(message: str) -> bool:
    """A node refusing a batch for its size, not for the rate of requests."""
    return bool(_BATCH_REFUSED.search(message)) and not _RATE_LIMIT_WORDS.search(message)


def _quantity(method: str, value: Any) -> int:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise RpcError(method, -32603, f"expected a hex quantity, got {str(value)[:40]!r}")


def _redact(url: str | URL) -> str:
    """Endpoints often carry an API key in the path or query; show only scheme and host."""
    parsed = URL(url)
    host = parsed.host or ""
    host = f"[{host}]" if ":" in host else host
    port = parsed.explicit_port
    default = {"http": 80, "https": 443}.get(parsed.scheme)
    return f"{parsed.scheme}://{host}{f':{port}' if port and port != default else ''}"


def _environment_proxy(url: str) -> str | None:
    parsed = URL(url)
    if urllib.request.proxy_bypass(parsed.host or ""):
        return None
    return urllib.request.getproxies().get(parsed.scheme)


def _checked_label(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        raise Erc8004Error("an RPC endpoint URL is not a valid URL") from None  # may hold a key
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise Erc8004Error(f"the RPC endpoint {_redact(parsed)} is not an http(s) URL")
    return _redact(parsed)
