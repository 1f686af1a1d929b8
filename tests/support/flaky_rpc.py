"""A real JSON-RPC HTTP server on 127.0.0.1 that misbehaves on command.

It answers either itself, through a handler (`static_handler` builds one from a table), or by
forwarding every call to an upstream node such as anvil. Faults are scheduled per HTTP
request and counted down; every JSON-RPC call received is counted per method::

    async with FlakyRpcServer(upstream=anvil_url) as proxy:
        proxy.fail_next(2, HttpStatus(500))                  # the next two requests get a 500
        proxy.fail_next(1, TooManyRequests(retry_after=1))   # then one 429 with Retry-After: 1
        proxy.fail_always(RpcFault(-32005, "rate limited"), method="eth_getLogs")
        proxy.max_log_range = 1000                           # wider eth_getLogs: "more than 10000 results"
        client = RpcClient([proxy.url, anvil_url])
        ...
        assert proxy.calls["eth_blockNumber"] == 3

Faults:

- `HttpStatus(status, body, headers)`: that HTTP status with a body that is not JSON-RPC;
- `TooManyRequests(retry_after)`: HTTP 429 with a Retry-After header (None leaves it out);
- `RpcFault(code, message, data)`: HTTP 200 with a JSON-RPC error for each call (only the
  calls of the rule's method, if it names one); handlers may also return one for a call;
- `Hang(seconds)`: wait that long, then answer normally (a client's timeout fires first);
- `CloseConnection()`: read the request, then close the connection without answering.

Rules apply first come, first served: each request takes the oldest rule that matches it (by
`method`, which any call of a batch may match, and by the optional `when` predicate on one of
its calls) and still has requests left. The server accepts any path, so `proxy.url + "/v3/KEY"`
works for tests of URL redaction. It speaks HTTP/1.1 with keep-alive and Content-Length bodies
(no chunked requests). For a dead endpoint, use `tests.support.waiting.free_port()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import inspect
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

__all__ = [
    "LOG_RANGE_FAULT",
    "CloseConnection",
    "Fault",
    "FlakyRpcServer",
    "Handler",
    "Hang",
    "HttpStatus",
    "Predicate",
    "RpcFault",
    "TooManyRequests",
    "static_handler",
]


@dataclass(frozen=True)
class HttpStatus:
    """Answer the request with this HTTP status and a body that is not JSON-RPC."""

    status: int = 500
    body: str = "internal server error"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TooManyRequests:
    """Answer HTTP 429, with `Retry-After: <retry_after>` unless it is None."""

    retry_after: float | str | None = 1


@dataclass(frozen=True)
class RpcFault:
    """A JSON-RPC error answer (HTTP 200). The default is Infura's rate limit."""

    code: int = -32005
    message: str = "daily request count exceeded, request rate limited"
    data: Any = None

    def reply(self, id_: Any) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": id_, "error": error}


@dataclass(frozen=True)
class Hang:
    """Wait `seconds` before answering normally."""

    seconds: float


@dataclass(frozen=True)
class CloseConnection:
    """Close the connection after reading the request, without answering."""


Fault = HttpStatus | TooManyRequests | RpcFault | Hang | CloseConnection

# (method, params) -> result, or an RpcFault to answer with an error; may be a coroutine.
Handler = Callable[[str, list[Any]], Any]
# (method, params) -> whether a rule applies to the request holding this call.
Predicate = Callable[[str, list[Any]], bool]

LOG_RANGE_FAULT = RpcFault(-32005, "query returned more than 10000 results")


def static_handler(answers: Mapping[str, Any | Callable[[list[Any]], Any]]) -> Handler:
    """A handler answering from a table: method -> result, or method -> function of params.

    Methods not in the table get JSON-RPC error -32601, as from a real node.
    """

    def handle(method: str, params: list[Any]) -> Any:
        if method not in answers:
            return RpcFault(-32601, f"the method {method} does not exist/is not available")
        answer = answers[method]
        return answer(params) if callable(answer) else answer

    return handle


@dataclass
class _Rule:
    fault: Fault
    remaining: int | None  # requests left; None: forever
    method: str | None
    when: Predicate | None

    def matches(self, calls: list[tuple[str, list[Any]]]) -> bool:
        return any(
            (self.method is None or method == self.method)
            and (self.when is None or self.when(method, params))
            for method, params in calls
        )


@dataclass
class _Request:
    verb: str
    headers: dict[str, str]
    body: bytes


class FlakyRpcServer:
    """A JSON-RPC server on a free port of 127.0.0.1; use as `async with`.

    Give exactly one of `handler` (answers each call itself) or `upstream` (a node's URL to
    forward each call to). Attributes a test may read or set while it runs:

    - `url`: `http://127.0.0.1:<port>`, served inside the `async with`;
    - `calls`: JSON-RPC calls received per method (a batch counts each call; faulted requests
      count too); `http_requests`: HTTP requests received; `faults_served`: requests that got
      a scheduled fault (log-range errors not included); `reset_counts()` zeroes them;
    - `max_log_range`: when set, an eth_getLogs call spanning more blocks than this (both
      bounds hex numbers or "earliest") gets `log_range_fault` instead of an answer;
    - `reverse_batches`: answer batches in reverse order, as nodes may;
    - `max_batch`: a batch of more calls than this is answered with one error object,
      `batch_refusal` if set, else as erigon words it ("batch limit N exceeded"); 0
      refuses every batch.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        upstream: str | None = None,
        max_log_range: int | None = None,
        reverse_batches: bool = False,
        max_batch: int | None = None,
    ) -> None:
        if (handler is None) == (upstream is None):
            raise ValueError("give a FlakyRpcServer either a handler or an upstream URL")
        self.handler = handler
        self.upstream = upstream
        self.max_log_range = max_log_range
        self.log_range_fault = LOG_RANGE_FAULT
        self.reverse_batches = reverse_batches
        self.max_batch = max_batch
        self.batch_refusal: RpcFault | None = None
        self.batch_sizes: list[int] = []  # calls per batch received (plain requests: none)
        self.calls: Counter[str] = Counter()
        self.http_requests = 0
        self.faults_served = 0
        self._rules: list[_Rule] = []
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._upstream_http: httpx.AsyncClient | None = None
        self._port = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> FlakyRpcServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.upstream is not None:
            self._upstream_http = httpx.AsyncClient(timeout=30.0)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop open connections (hanging ones included)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        if self._upstream_http is not None:
            await self._upstream_http.aclose()
            self._upstream_http = None

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`; any path works. Kept after stop() for assertions."""
        if not self._port:
            raise RuntimeError("the FlakyRpcServer has not been started")
        return f"http://127.0.0.1:{self._port}"

    # -- the schedule -------------------------------------------------------------------------

    def fail_next(
        self, count: int, fault: Fault, *, method: str | None = None, when: Predicate | None = None
    ) -> None:
        """The next `count` requests that match (by method and `when`) get `fault`."""
        if count > 0:
            self._rules.append(_Rule(fault, count, method, when))

    def fail_always(
        self, fault: Fault, *, method: str | None = None, when: Predicate | None = None
    ) -> None:
        """Every matching request gets `fault` until `clear_faults()`."""
        self._rules.append(_Rule(fault, None, method, when))

    def clear_faults(self) -> None:
        self._rules.clear()

    def reset_counts(self) -> None:
        self.calls.clear()
        self.http_requests = 0
        self.faults_served = 0

    def _take_rule(self, calls: list[tuple[str, list[Any]]]) -> _Rule | None:
        for rule in self._rules:
            if rule.matches(calls):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining == 0:
                        self._rules.remove(rule)
                self.faults_served += 1
                return rule
        return None

    # -- HTTP ---------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while (request := await _read_request(reader)) is not None:
                response = await self._respond(request)
                if response is None:
                    break  # CloseConnection
                writer.write(response)
                await writer.drain()
                if request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client went away, or sent something that is not HTTP
        except asyncio.CancelledError:
            pass  # stop(): end quietly, as asyncio logs connection tasks that end cancelled
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()

    async def _respond(self, request: _Request) -> bytes | None:
        self.http_requests += 1
        if request.verb != "POST":
            return _http(405, b"only POST", "text/plain")
        try:
            payload = json.loads(request.body)
        except ValueError:
            error = RpcFault(-32700, "parse error").reply(None)
            return _http(200, json.dumps(error).encode(), "application/json")
        items = payload if isinstance(payload, list) else [payload]
        calls = [_call_of(item) for item in items]
        self.calls.update(method for method, _ in calls)
        if isinstance(payload, list):
            self.batch_sizes.append(len(items))
            if self.max_batch is not None and len(items) > self.max_batch:
                message = (f"batch limit {self.max_batch} exceeded: {len(items)} requests given"
                           if self.max_batch else "batch requests are not supported")  # fmt: skip
                error = (self.batch_refusal or RpcFault(-32000, message)).reply(None)
                return _http(200, json.dumps(error).encode(), "application/json")

        rule = self._take_rule(calls)
        fault = rule.fault if rule is not None else None
        match fault:
            case CloseConnection():
                return None
            case HttpStatus(status=status, body=body, headers=headers):
                return _http(status, body.encode(), "text/plain", headers)
            case TooManyRequests(retry_after=retry_after):
                extra = {} if retry_after is None else {"Retry-After": str(retry_after)}
                return _http(429, b"Too Many Requests", "text/plain", extra)
            case Hang(seconds=seconds):
                await asyncio.sleep(seconds)

        async def answer(item: Any, call: tuple[str, list[Any]]) -> dict[str, Any]:
            id_ = item.get("id") if isinstance(item, dict) else None
            if isinstance(fault, RpcFault) and rule is not None and rule.matches([call]):
                return fault.reply(id_)
            if self._log_range_exceeded(*call):
                return self.log_range_fault.reply(id_)
            return await self._answer(id_, item, call)

        try:
            replies = await asyncio.gather(
                *(answer(i, c) for i, c in zip(items, calls, strict=True))
            )
        except (httpx.HTTPError, ValueError) as error:  # upstream down, or not JSON
            return _http(502, f"upstream failed: {error!r}".encode(), "text/plain")
        if self.reverse_batches:
            replies.reverse()
        reply = replies if isinstance(payload, list) else replies[0]
        return _http(200, json.dumps(reply).encode(), "application/json")

    async def _answer(self, id_: Any, item: Any, call: tuple[str, list[Any]]) -> dict[str, Any]:
        if self._upstream_http is not None and self.upstream is not None:
            response = await self._upstream_http.post(self.upstream, json=item)
            reply: dict[str, Any] = response.json()
            return reply
        assert self.handler is not None
        try:
            result = self.handler(*call)
            if inspect.isawaitable(result):
                result = await result
        except Exception as error:  # a bug in the test's handler: tell the client
            return RpcFault(-32603, f"handler failed: {error!r}").reply(id_)
        if isinstance(result, RpcFault):
            return result.reply(id_)
        return {"jsonrpc": "2.0", "id": id_, "result": result}

    def _log_range_exceeded(self, method: str, params: list[Any]) -> bool:
        if self.max_log_range is None or method != "eth_getLogs" or not params:
            return False
        query = params[0] if isinstance(params[0], dict) else {}
        low, high = _block(query.get("fromBlock")), _block(query.get("toBlock"))
        return low is not None and high is not None and high - low + 1 > self.max_log_range


def _call_of(item: Any) -> tuple[str, list[Any]]:
    if not isinstance(item, dict):
        return ("", [])
    params = item.get("params")
    return (str(item.get("method", "")), params if isinstance(params, list) else [])


def _block(tag: Any) -> int | None:
    if tag == "earliest":
        return 0
    if isinstance(tag, str) and tag.startswith("0x"):
        with contextlib.suppress(ValueError):
            return int(tag, 16)
    return None


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    line = await reader.readline()
    if not line.strip():
        return None
    verb = line.decode("latin-1").split(" ", 1)[0]
    headers: dict[str, str] = {}
    while (header := await reader.readline()).strip():
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise ValueError("chunked requests are not supported")
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return _Request(verb, headers, body)


def _http(
    status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
