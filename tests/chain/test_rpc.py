"""The RPC client against real HTTP servers: the flaky test server, and anvil."""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from erc8004_backend.chain.rpc import (
    ChainMismatchError,
    RangeTooLargeError,
    RpcClient,
    RpcError,
    RpcUnavailableError,
    StateUnavailableError,
    _redact,
)
from erc8004_backend.devnet import AnvilNode
from erc8004_backend.errors import Erc8004Error
from erc8004_backend.retry import RetryPolicy
from tests.support.flaky_rpc import (
    CloseConnection,
    Fault,
    FlakyRpcServer,
    Hang,
    HttpStatus,
    RpcFault,
    TooManyRequests,
    static_handler,
)
from tests.support.waiting import free_port

FAST = RetryPolicy(max_attempts=4, backoff_initial=0.01, backoff_max=0.05)
ADDRESS = "0x" + "ab" * 20
SECRET = "s3cr3tApiKey"


def chain(chain_id: int = 1, head: int = 16) -> dict[str, Any]:
    """Canned answers of a node on `chain_id` whose head is block `head`."""

    def block(params: list[Any]) -> Any:
        number = head if params[0] == "latest" else int(params[0], 16)
        if number > head:
            return None
        return {"number": hex(number), "hash": f"0x{number:064x}", "parentHash": "0x0",
                "timestamp": hex(1_700_000_000 + number)}  # fmt: skip

    return {
        "eth_chainId": hex(chain_id),
        "eth_blockNumber": hex(head),
        "eth_getLogs": [],
        "eth_getBlockByNumber": block,
    }


@pytest.fixture
async def node() -> AsyncIterator[FlakyRpcServer]:
    async with FlakyRpcServer(static_handler(chain())) as server:
        yield server


@pytest.fixture
async def backup() -> AsyncIterator[FlakyRpcServer]:
    async with FlakyRpcServer(static_handler(chain())) as server:
        yield server


def dead_url(path: str = "") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


async def test_a_redirect_is_not_followed(node: FlakyRpcServer, backup: FlakyRpcServer) -> None:
    # Followed, the POST would become a GET, and the endpoint's headers would go elsewhere.
    node.fail_always(HttpStatus(307, "", headers={"Location": backup.url}))
    async with RpcClient([node.url], retry=FAST, headers={"x-api-key": SECRET}) as client:
        with pytest.raises(RpcUnavailableError, match="HTTP 307"):
            await client.block_number()
    assert backup.http_requests == 0


async def test_a_proxy_the_environment_names_carries_the_requests(
    node: FlakyRpcServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `node` stands in for the proxy: it answers whatever the request's target.
    monkeypatch.setenv("HTTP_PROXY", node.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with RpcClient([dead_url()], retry=FAST) as client:
        assert await client.block_number() == 16
    assert node.calls == {"eth_blockNumber": 1}
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with RpcClient([dead_url()], retry=FAST) as client:
        with pytest.raises(RpcUnavailableError, match="connection failed"):
            await client.block_number()
    assert node.calls == {"eth_blockNumber": 1}


# -- failover and retries ---------------------------------------------------------------------


async def test_fails_over_from_a_refused_endpoint(node: FlakyRpcServer) -> None:
    async with RpcClient([dead_url(), node.url], retry=FAST) as client:
        started = time.monotonic()
        assert await client.block_number() == 16
        assert await client.block_number() == 16
        assert time.monotonic() - started < 1.0  # no waiting while an endpoint is healthy
        assert client.current_url == node.url
    assert node.calls["eth_blockNumber"] == 2


async def test_fails_over_from_a_500_and_sticks_to_the_healthy_endpoint(
    node: FlakyRpcServer, backup: FlakyRpcServer
) -> None:
    node.fail_always(HttpStatus(500))
    async with RpcClient([node.url, backup.url], retry=FAST) as client:
        assert await client.chain_id() == 1
        assert await client.chain_id() == 1
    assert node.http_requests == 1
    assert backup.calls["eth_chainId"] == 2


@pytest.mark.parametrize(
    "fault",
    [
        HttpStatus(500),
        HttpStatus(503, headers={"Retry-After": "0"}),
        HttpStatus(200, "<html>502 Bad Gateway</html>"),  # not JSON
        HttpStatus(401, '{"message": "invalid project id"}'),  # JSON, but not JSON-RPC
        CloseConnection(),
        RpcFault(),  # -32005 rate limit
        RpcFault(429, "Too Many Requests"),
        RpcFault(-32000, "Your app has exceeded its compute units per second capacity"),
    ],
    ids=repr,
)
async def test_a_single_endpoint_is_retried_until_it_answers(
    node: FlakyRpcServer, fault: Fault
) -> None:
    node.fail_next(2, fault)
    async with RpcClient([node.url], retry=FAST) as client:
        assert await client.block_number() == 16
    assert node.http_requests == 3


async def test_429_retry_after_is_honoured(node: FlakyRpcServer) -> None:
    node.fail_next(1, TooManyRequests(retry_after=1))
    async with RpcClient([node.url], retry=FAST) as client:
        started = time.monotonic()
        assert await client.block_number() == 16
        waited = time.monotonic() - started
    assert 0.95 <= waited < 2.0
    assert node.http_requests == 2


async def test_429_fails_over_without_waiting_and_the_endpoint_cools_down(
    node: FlakyRpcServer, backup: FlakyRpcServer
) -> None:
    node.fail_next(1, TooManyRequests(retry_after=30))
    async with RpcClient([node.url, backup.url], retry=FAST) as client:
        started = time.monotonic()
        assert await client.block_number() == 16
        assert await client.block_number() == 16
        assert time.monotonic() - started < 1.0
    assert node.http_requests == 1
    assert backup.http_requests == 2


async def test_a_rate_limited_batch_is_retried_whole(node: FlakyRpcServer) -> None:
    node.fail_next(1, RpcFault(), method="eth_blockNumber")
    async with RpcClient([node.url], retry=FAST) as client:
        assert await client.batch([("eth_chainId", []), ("eth_blockNumber", [])]) == ["0x1", "0x10"]
    assert node.http_requests == 2
    assert node.calls == {"eth_chainId": 2, "eth_blockNumber": 2}


async def test_timeouts_are_retried_then_reported(node: FlakyRpcServer) -> None:
    node.fail_always(Hang(10))
    policy = RetryPolicy(max_attempts=3, backoff_initial=0.01, backoff_max=0.02)
    async with RpcClient([node.url + f"/v3/{SECRET}"], timeout=0.2, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(RpcUnavailableError) as raised:
            await client.block_number()
        assert time.monotonic() - started < 2.0
    message = str(raised.value)
    assert "eth_blockNumber: no endpoint answered after 3 attempts" in message
    assert f"(last: {node.url}: timed out waiting for the reply)" in message
    assert SECRET not in message
    assert node.http_requests == 3


async def test_a_hang_shorter_than_the_timeout_is_waited_out(node: FlakyRpcServer) -> None:
    node.fail_next(1, Hang(0.1))
    async with RpcClient([node.url], timeout=2.0, retry=FAST) as client:
        assert await client.block_number() == 16
    assert node.http_requests == 1


# -- answers ------------------------------------------------------------------------------------


async def test_too_many_results_raises_range_too_large_without_retrying() -> None:
    async with (
        FlakyRpcServer(static_handler(chain()), max_log_range=100) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        with pytest.raises(RangeTooLargeError) as raised:
            await client.get_logs([ADDRESS], 0, 100)
        assert raised.value.code == -32005
        assert "more than 10000 results" in raised.value.rpc_message
        assert node.http_requests == 1
        assert await client.get_logs([ADDRESS], 0, 99) == []


def log_at(block: int, index: int, data: str = "0x") -> dict[str, Any]:
    return {"address": ADDRESS, "topics": [], "data": data, "blockNumber": hex(block),
            "blockHash": f"0x{block:064x}", "logIndex": hex(index),
            "transactionHash": "0x" + "11" * 32, "transactionIndex": "0x0", "removed": False}  # fmt: skip


async def test_a_log_served_twice_is_kept_once() -> None:
    """Some nodes (erigon) have answered a log twice: stored twice it would fail its batch's
    COPY, for good, and stop every chain of the process."""
    twice = [log_at(5, 0), log_at(5, 1), log_at(5, 0)]
    async with (
        FlakyRpcServer(static_handler({**chain(), "eth_getLogs": twice})) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        assert await client.get_logs([ADDRESS], 0, 10) == [log_at(5, 0), log_at(5, 1)]


@pytest.mark.parametrize(
    ("logs", "problem"),
    [([log_at(11, 0)], "a log of block 11, outside the blocks 0-10 asked for"),
     ([{**log_at(5, 0), "blockNumber": None}], "a log without its block number"),
     ([log_at(5, 0), log_at(5, 0, data="0x01")], "two different logs at log index 0 of block 5")],
)  # fmt: skip
async def test_a_reply_no_node_should_give_is_an_rpc_error(
    logs: list[dict[str, Any]], problem: str
) -> None:
    async with (
        FlakyRpcServer(static_handler({**chain(), "eth_getLogs": logs})) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        with pytest.raises(RpcError, match=re.escape(problem)):
            await client.get_logs([ADDRESS], 0, 10)


@pytest.mark.parametrize(
    ("fault", "method"),
    [
        (RpcFault(-32000, "execution reverted"), "eth_call"),
        (RpcFault(-32602, "invalid argument 0: hex string without 0x prefix"), "eth_getLogs"),
        (RpcFault(-32000, "block range is too large"), "eth_blockNumber"),  # not eth_getLogs
    ],
    ids=repr,
)
async def test_other_rpc_errors_are_raised_at_once(
    node: FlakyRpcServer, fault: RpcFault, method: str
) -> None:
    node.fail_always(fault)
    async with RpcClient([node.url], retry=FAST) as client:
        with pytest.raises(RpcError) as raised:
            await client.call(method, [])
    assert type(raised.value) is RpcError
    assert (raised.value.code, raised.value.rpc_message) == (fault.code, fault.message)
    assert node.http_requests == 1


@pytest.mark.parametrize(
    ("message", "too_large"),
    [("query returned more than 10000 results", True),
     ("exceed maximum block range: 5000", True),
     ("block range is too wide", True),
     ("Log response size exceeded. You can make eth_getLogs requests with up to a 2K block"
      " range", True),
     ("block range extends beyond current head block", False),
     ("invalid block range params", False)],
)  # fmt: skip
async def test_which_get_logs_errors_say_the_range_is_too_large(
    node: FlakyRpcServer, message: str, too_large: bool
) -> None:
    """A range too large is narrowed; a range past an endpoint's head (one a block behind
    its peers) is an error retried as it is, not a reason to ask for less."""
    node.fail_always(RpcFault(-32000, message))
    async with RpcClient([node.url], retry=FAST) as client:
        with pytest.raises(RpcError) as raised:
            await client.get_logs([ADDRESS], 0, 10)
    assert isinstance(raised.value, RangeTooLargeError) is too_large


async def test_an_unknown_method_is_an_answer(node: FlakyRpcServer, backup: FlakyRpcServer) -> None:
    async with RpcClient([node.url, backup.url], retry=FAST) as client:
        with pytest.raises(RpcError, match="-32601"):
            await client.call("eth_nonsense")
    assert (node.http_requests, backup.http_requests) == (1, 0)


def code_at(deployed: int) -> dict[str, Any]:
    """A node whose contract at ADDRESS was deployed at block `deployed`."""

    def get_code(params: list[Any]) -> str:
        block = 16 if params[1] == "latest" else int(params[1], 16)
        return "0x6080" if block >= deployed else "0x"

    return {**chain(), "eth_getCode": get_code}


async def test_get_code_asks_for_the_state_of_a_block() -> None:
    async with (
        FlakyRpcServer(static_handler(code_at(5))) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        assert await client.get_code(ADDRESS) == "0x6080"  # latest
        assert await client.get_code(ADDRESS, 5) == "0x6080"
        assert await client.get_code(ADDRESS, 4) == "0x"
    assert node.calls["eth_getCode"] == 3


# What nodes that keep no old state answer (geth, erigon, reth, nethermind, besu, Infura,
# gateways): the answer of an endpoint, not a failure of it.
STATE_UNAVAILABLE = [
    RpcFault(-32000, "missing trie node 1f2e3d4c5b6a79880000000000000000 (path ) <nil>"),
    RpcFault(-32000, "header not found"),
    RpcFault(-32000, "historical state not available in path scheme yet"),
    RpcFault(-32000, "state at block #4 is pruned"),
    RpcFault(-32000, "No state available for block 0x4"),
    RpcFault(-32000, "World state unavailable for block 4"),
    RpcFault(-32002, "project ID does not have access to archive state"),
    RpcFault(-32000, "required historical state unavailable (reexec=128)"),
]


@pytest.mark.parametrize("fault", STATE_UNAVAILABLE, ids=repr)
async def test_old_state_a_node_does_not_keep_raises_state_unavailable_at_once(
    fault: RpcFault,
) -> None:
    async with (
        FlakyRpcServer(static_handler(code_at(5))) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        node.fail_always(fault, method="eth_getCode")
        with pytest.raises(StateUnavailableError) as raised:
            await client.get_code(ADDRESS, 4)
    assert raised.value.rpc_message == fault.message
    assert node.http_requests == 1  # an answer: not retried, not a reason to wait


async def test_old_state_is_asked_of_each_endpoint_until_one_keeps_it() -> None:
    async with (
        FlakyRpcServer(static_handler(code_at(5))) as pruned,
        FlakyRpcServer(static_handler(code_at(5))) as archive,
    ):
        pruned.fail_always(STATE_UNAVAILABLE[0], method="eth_getCode")
        async with RpcClient([pruned.url, archive.url], retry=FAST) as client:
            started = time.monotonic()
            assert await client.get_code(ADDRESS, 5) == "0x6080"
            assert await client.get_code(ADDRESS, 4) == "0x"
            assert time.monotonic() - started < 1.0  # the pruned endpoint is not cooling down
            assert await client.block_number() == 16
        assert pruned.calls["eth_getCode"] == 1  # then the client sticks to the archive
        assert archive.calls["eth_getCode"] == 2
        # Other errors are the node's answer as before: no other endpoint is asked.
        archive.fail_always(RpcFault(-32602, "invalid argument 1"), method="eth_getCode")
        async with RpcClient([archive.url, pruned.url], retry=FAST) as client:
            with pytest.raises(RpcError, match="invalid argument 1"):
                await client.get_code(ADDRESS, 4)
        assert pruned.calls["eth_getCode"] == 1
        # None keeps it: the last endpoint's answer.
        archive.clear_faults()
        archive.fail_always(STATE_UNAVAILABLE[1], method="eth_getCode")
        async with RpcClient([pruned.url, archive.url], retry=FAST) as client:
            with pytest.raises(StateUnavailableError, match="header not found"):
                await client.get_code(ADDRESS, 4)
        assert (pruned.calls["eth_getCode"], archive.calls["eth_getCode"]) == (2, 4)


async def test_an_archive_endpoint_rate_limited_for_a_moment_is_waited_for_not_given_up() -> None:
    async with (
        FlakyRpcServer(static_handler(code_at(5))) as archive,
        FlakyRpcServer(static_handler(code_at(5))) as pruned,
    ):
        pruned.fail_always(STATE_UNAVAILABLE[0], method="eth_getCode")
        archive.fail_next(1, RpcFault(), method="eth_getCode")  # one 429, then answers
        async with RpcClient([archive.url, pruned.url], retry=FAST) as client:
            assert await client.get_code(ADDRESS, 4) == "0x"
            assert await client.get_code(ADDRESS, 5) == "0x6080"
            # The search leaves the client where it was: other requests go to the first
            # endpoint, the historic state to the one that keeps it.
            assert client.current_url == archive.url
        assert archive.calls["eth_getCode"] == 3
        assert pruned.calls["eth_getCode"] == 1


async def test_the_search_sticks_to_the_archive_but_other_requests_to_the_preferred() -> None:
    async with (
        FlakyRpcServer(static_handler(code_at(5))) as pruned,
        FlakyRpcServer(static_handler(code_at(5))) as archive,
    ):
        pruned.fail_always(STATE_UNAVAILABLE[0], method="eth_getCode")
        async with RpcClient([pruned.url, archive.url], retry=FAST) as client:
            for block in (4, 5, 6):
                await client.get_code(ADDRESS, block)
            assert await client.block_number() == 16
        assert (pruned.calls["eth_getCode"], archive.calls["eth_getCode"]) == (1, 3)
        assert pruned.calls["eth_blockNumber"] == 1  # the user's first endpoint, as before


async def test_a_rate_limited_get_code_is_retried() -> None:
    async with FlakyRpcServer(static_handler(code_at(5))) as limited:
        limited.fail_next(2, RpcFault(), method="eth_getCode")
        async with RpcClient([limited.url], retry=FAST) as client:
            assert await client.get_code(ADDRESS, 7) == "0x6080"
        assert limited.calls["eth_getCode"] == 3


async def test_batch_results_come_in_call_order() -> None:
    async with (
        FlakyRpcServer(static_handler(chain()), reverse_batches=True) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        results = await client.batch([("eth_blockNumber", []), ("eth_chainId", [])])
        assert results == ["0x10", "0x1"]
        headers = await client.get_block_headers(list(range(1, 8)))
        assert [h["number"] for h in headers] == [hex(n) for n in range(1, 8)]


async def test_a_node_that_takes_smaller_batches_gets_them_halved() -> None:
    """A node that takes 30 calls a batch (erigon, nethermind and besu have such limits)
    refuses the first batch; the client halves its batches until they pass, and keeps them
    so, one refusal in all."""
    async with (
        FlakyRpcServer(static_handler(chain(head=300)), max_batch=30) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        with capture_logs() as logs:
            headers = await client.get_block_headers(list(range(1, 121)))
            again = await client.get_block_headers(list(range(121, 181)))
    assert [int(h["number"], 16) for h in headers + again] == list(range(1, 181))
    assert client.batch_limit == 25
    assert node.batch_sizes[:3] == [100, 50, 25]  # refused, refused, answered
    assert max(node.batch_sizes[3:]) == 25
    assert [entry["batch_limit"] for entry in logs
            if entry["event"] == "rpc.batch_limit_lowered"] == [50, 25]  # fmt: skip


async def test_besus_refusal_of_a_large_batch_is_no_rate_limit() -> None:
    """besu answers a batch over its limit with the rate limit's code, -32005."""
    async with FlakyRpcServer(static_handler(chain(head=100)), max_batch=10) as node:
        node.batch_refusal = RpcFault(-32005, "Number of requests exceeds max batch size")
        async with RpcClient([node.url], retry=FAST) as client:
            headers = await client.get_block_headers(list(range(1, 41)))
            assert [int(h["number"], 16) for h in headers] == list(range(1, 41))
            assert client.batch_limit == 10
            # A rate limit that speaks of batches is still a rate limit: retried as it was.
            node.batch_refusal = RpcFault(-32005, "batch rate limit exceeded")
            node.max_batch = 3
            with pytest.raises(RpcUnavailableError, match="rate limited"):
                await client.get_block_headers([1, 2, 3, 4, 5, 6])
            assert client.batch_limit == 10


async def test_each_endpoint_keeps_its_own_batch_limit() -> None:
    """A fallback gateway that takes 5 calls a batch does not leave the primary node, once
    back to it, with batches of 5."""
    async with (
        FlakyRpcServer(static_handler(chain(head=100))) as primary,
        FlakyRpcServer(static_handler(chain(head=100)), max_batch=5) as fallback,
        RpcClient([primary.url, fallback.url], retry=FAST) as client,
    ):
        primary.fail_next(1, HttpStatus(500))
        first = await client.get_block_headers(list(range(1, 41)))
        assert (client.current_url, client.batch_limit) == (fallback.url, 5)
        fallback.fail_always(HttpStatus(500))
        again = await client.get_block_headers(list(range(41, 81)))
        assert (client.current_url, client.batch_limit) == (primary.url, 100)
    assert [int(h["number"], 16) for h in first + again] == list(range(1, 81))
    # Its first batch failed (HTTP 500); back to it, a batch sized for the fallback fails
    # over to it, then the rest goes at once.
    assert primary.batch_sizes == [40, 5, 35]


async def test_a_node_that_takes_no_batch_is_asked_one_call_at_a_time() -> None:
    async with (
        FlakyRpcServer(static_handler(chain()), max_batch=0) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        headers = await client.get_block_headers([3, 4, 5])
        head, tip = await client.head_and_header(5)
    assert [int(h["number"], 16) for h in headers] == [3, 4, 5]
    assert tip is not None
    assert (int(head["number"], 16), int(tip["number"], 16)) == (16, 5)
    assert client.batch_limit == 1
    assert node.batch_sizes == [3]  # refused: then plain requests only
    assert node.calls["eth_getBlockByNumber"] == 3 + 3 + 2


async def test_a_batch_answered_with_another_single_error_raises_it(node: FlakyRpcServer) -> None:
    """Only a refusal that speaks of batches lowers the limit; any other error a node answers
    a whole batch with is its answer."""
    single = '{"jsonrpc": "2.0", "id": null, "error": {"code": -32603, "message": "internal"}}'
    node.fail_next(1, HttpStatus(200, single))
    async with RpcClient([node.url], retry=FAST) as client:
        with pytest.raises(RpcError, match="internal"):
            await client.get_block_headers([1, 2])
        assert client.batch_limit == 100


async def test_an_error_inside_a_batch_raises(node: FlakyRpcServer) -> None:
    node.fail_next(1, RpcFault(-32000, "header not found"), when=lambda _, p: p[0] == "0x3")
    async with RpcClient([node.url], retry=FAST) as client:
        with pytest.raises(RpcError, match="header not found") as raised:
            await client.get_block_headers([1, 2, 3, 4])
        assert raised.value.method == "eth_getBlockByNumber"
        with pytest.raises(RpcError, match="block 17 not found"):  # past the head: null
            await client.get_block_headers([15, 16, 17])
    assert node.http_requests == 2


async def test_malformed_answers_raise() -> None:
    answers = {"eth_chainId": None, "eth_blockNumber": "16", "eth_getLogs": {"not": "a list"}}
    async with (
        FlakyRpcServer(static_handler(answers)) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        for call in (client.chain_id(), client.block_number(), client.get_logs([], 0, 1)):
            with pytest.raises(RpcError):
                await call
        assert node.http_requests == 3


@pytest.mark.parametrize(
    "latest",
    [None, "0x10", {"number": "0x10", "hash": "0x1"}, {"number": "16", "hash": "0x1",
     "parentHash": "0x0", "timestamp": "0x1"},
     {"number": "0x10", "hash": "0x1", "parentHash": "0x0", "timestamp": "soon"}],
)  # fmt: skip
async def test_a_latest_block_that_is_no_header_raises(latest: Any) -> None:
    """The indexer's poll (head_and_header): the head's header is read, so whatever the node
    gives that is not one is an RpcError (retried by the indexer), not a crash."""

    def block(params: list[Any]) -> Any:
        return latest if params[0] == "latest" else {"number": params[0], "hash": "0x2"}

    async with (
        FlakyRpcServer(static_handler({"eth_getBlockByNumber": block})) as node,
        RpcClient([node.url], retry=FAST) as client,
    ):
        with pytest.raises(RpcError):
            await client.head_and_header(3)


async def test_the_poll_gives_the_latest_header_and_the_one_asked_for(node: FlakyRpcServer) -> None:
    async with RpcClient([node.url], retry=FAST) as client:
        latest, header = await client.head_and_header(3)
        assert latest["number"] == "0x10"
        assert header is not None
        assert header["number"] == "0x3"
        _, missing = await client.head_and_header(17)  # past the head: None
    assert missing is None
    assert node.http_requests == 2


# -- chain id and secrets ---------------------------------------------------------------------


async def test_check_chain_id_names_the_endpoint_without_its_key(node: FlakyRpcServer) -> None:
    async with (
        FlakyRpcServer(static_handler(chain(chain_id=8453))) as other,
        RpcClient([node.url, other.url + f"/v3/{SECRET}?key={SECRET}"]) as client,
    ):
        with pytest.raises(ChainMismatchError) as raised:
            await client.check_chain_id(1)
    assert str(raised.value) == f"{other.url} serves chain 8453, but the configuration says 1"
    assert (node.calls["eth_chainId"], other.calls["eth_chainId"]) == (1, 1)


async def test_an_endpoint_down_at_check_time_is_checked_before_use(
    node: FlakyRpcServer, backup: FlakyRpcServer
) -> None:
    async with FlakyRpcServer(static_handler(chain(chain_id=2))) as other:
        other.fail_next(1, CloseConnection())
        async with RpcClient([other.url, node.url], retry=FAST) as client:
            await client.check_chain_id(1)  # `other` cannot be asked: only logged
            with pytest.raises(ChainMismatchError, match="serves chain 2"):
                await client.block_number()
        assert other.calls == {"eth_chainId": 2}

    backup.fail_next(1, HttpStatus(502))
    async with RpcClient([backup.url, node.url], retry=FAST) as client:
        await client.check_chain_id(1)
        assert await client.block_number() == 16  # `backup` is checked, then used
        assert client.current_url == backup.url
    assert backup.calls == {"eth_chainId": 2, "eth_blockNumber": 1}


async def test_api_keys_appear_in_no_log_and_no_error(
    node: FlakyRpcServer, backup: FlakyRpcServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    node.fail_always(HttpStatus(500))
    urls = [dead_url(f"/{SECRET}"), node.url + f"/v2/{SECRET}", f"{backup.url}/?apikey={SECRET}"]
    with capture_logs() as events:
        async with RpcClient(urls, retry=FAST) as client:
            await client.check_chain_id(1)
            assert await client.block_number() == 16
            backup.fail_always(HttpStatus(500))
            with pytest.raises(RpcUnavailableError) as raised:
                await client.block_number()
    assert SECRET not in str(raised.value)
    assert events, "the client logged no warnings"
    assert all(SECRET not in repr(event) for event in events)
    assert SECRET not in caplog.text  # nor in any library's log


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=st.sampled_from(["127.0.0.1", "node.example", "[::1]", "rpc.ankr.com"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    user=st.sampled_from(["", "user:pw@", "key@"]),
    path=st.sampled_from(["/", "/v3/", "/rpc/", "/eth?apikey=", "?key="]),
    key=st.text("abcdefXYZ0123456789-_", min_size=8, max_size=40),
)
def test_redaction_keeps_scheme_host_and_port_only(
    scheme: str, host: str, port: int | None, user: str, path: str, key: str
) -> None:
    netloc = f"{host}:{port}" if port is not None else host
    user = user.replace("pw", key).replace("key", key)
    redacted = _redact(f"{scheme}://{user}{netloc}{path}{key}#{key}")
    assert redacted == f"{scheme}://{host}" + (
        f":{port}" if port is not None and port != {"http": 80, "https": 443}[scheme] else ""
    )


@pytest.mark.parametrize(
    "url", ["", "ws://node.example/ws", "node.example:8545", "https://", "http:///rpc"]
)
def test_bad_endpoint_urls_are_refused(url: str) -> None:
    with pytest.raises(Erc8004Error):
        RpcClient(["http://127.0.0.1:8545", url])


@given(attempt=st.integers(0, 10_000), retry_after=st.one_of(st.none(), st.floats(0, 1e6)))
def test_backoff_stays_within_its_bounds(attempt: int, retry_after: float | None) -> None:
    policy = RetryPolicy(backoff_initial=0.2, backoff_max=10.0, retry_after_max=60.0)
    delay = policy.delay(attempt, retry_after)
    assert min(0.1 * 2 ** min(attempt, 10), 5.0) <= delay <= max(10.0, min(retry_after or 0, 60))
    assert delay >= min(retry_after or 0.0, 60.0)


# -- against anvil ------------------------------------------------------------------------------


async def test_against_anvil(anvil_node: AnvilNode) -> None:
    async with RpcClient([anvil_node.url], retry=FAST) as client:
        await client.check_chain_id(31337)
        assert await client.chain_id() == 31337
        await client.call("anvil_mine", ["0x3"])
        head = await client.block_number()
        assert head >= 3
        headers = await client.get_block_headers(range(head + 1))
        assert [int(h["number"], 16) for h in headers] == list(range(head + 1))
        assert all(h["parentHash"] == p["hash"] for p, h in itertools.pairwise(headers))
        assert await client.get_logs([ADDRESS], 0, head) == []
        with pytest.raises(RpcError, match=f"block {head + 1} not found"):
            await client.get_block_headers([head + 1])


async def test_a_flaky_proxy_in_front_of_anvil(anvil_node: AnvilNode) -> None:
    anvil_url = anvil_node.url
    async with FlakyRpcServer(upstream=anvil_url, max_log_range=2) as proxy:
        async with RpcClient([proxy.url], retry=FAST) as client:
            proxy.fail_next(1, HttpStatus(500))
            proxy.fail_next(1, TooManyRequests(retry_after=0))
            assert await client.block_number() >= 0
            assert proxy.http_requests == 3
            await client.check_chain_id(31337)
            assert await client.get_logs([ADDRESS], 0, 1) == []
            with pytest.raises(RangeTooLargeError):
                await client.get_logs([ADDRESS], 0, 2)

        proxy.fail_always(CloseConnection())
        async with RpcClient([proxy.url, anvil_url], retry=FAST) as client:
            await client.check_chain_id(31337)
            assert await client.block_number() >= 0
            assert client.current_url == anvil_url
