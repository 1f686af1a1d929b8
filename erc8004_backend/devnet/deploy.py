"""Deploy the devnet registries, and send transactions from the node's unlocked accounts.

`Transactor` sends many transactions without waiting for each: it numbers them with nonces it
tracks itself, submits them in JSON-RPC batches, then waits for all receipts and raises
`TransactionFailedError` if any reverted. Gas is always given explicitly, so nothing is
estimated (and a transaction that depends on an earlier one still pending is not refused).
One that anvil's pool holds back although its nonce is due is sent again (see
STUCK_AFTER_SECONDS).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from erc8004_backend.chain.config import ChainConfig
from erc8004_backend.chain.rpc import RpcClient, RpcError
from erc8004_backend.devnet.contracts import (
    IDENTITY,
    REPUTATION,
    VALIDATION,
    contract_address,
    decode_revert,
    load_artifact,
)
from erc8004_backend.errors import Erc8004Error

log = structlog.get_logger(__name__)

DEPLOY_GAS = 10_000_000
# anvil's pool can keep a transaction queued for good although its nonce is its sender's next:
# one that arrives while the block with the sender's previous transaction is being mined
# (automine, a busy machine) waits for that transaction, which the pool no longer holds. One
# still unmined this long into the wait for its receipt, its nonce due, is sent again.
STUCK_AFTER_SECONDS = 1.0


class TransactionFailedError(Erc8004Error):
    """A transaction could not be sent, or it was mined and reverted."""


@dataclass(frozen=True)
class TxRequest:
    """A transaction to send from an unlocked account; `to=None` creates a contract."""

    sender: str
    to: str | None
    data: str
    gas: int
    label: str


class Transactor:
    """Sends transactions from unlocked accounts, many at a time, and checks their receipts."""

    def __init__(
        self,
        rpc: RpcClient,
        *,
        receipt_timeout: float = 300.0,
        max_request_bytes: int = 1_500_000,
        max_request_calls: int = 100,
    ) -> None:
        self.rpc = rpc
        self.receipt_timeout = receipt_timeout
        self.max_request_bytes = max_request_bytes
        self.max_request_calls = max_request_calls
        self._nonces: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._sent: dict[str, dict[str, Any]] = {}  # hash -> transaction, until its receipt

    async def send(self, request: TxRequest) -> dict[str, Any]:
        (receipt,) = await self.send_all([request])
        return receipt

    async def send_all(self, requests: Sequence[TxRequest]) -> list[dict[str, Any]]:
        """Send all, then wait for all receipts (in the order of `requests`).

        Transactions of one sender are mined in the order given; those of different senders
        in any order. Raises TransactionFailedError naming the first one that reverted.
        """
        if not requests:
            return []
        async with self._lock:
            hashes = await self._submit(requests)
        return await self._check(requests, await self.wait_for_receipts(hashes))

    async def send_in_blocks(self, blocks: Sequence[Sequence[TxRequest]]) -> list[dict[str, Any]]:
        """Like `send_all`, but on a node that mines each transaction at once (automine),
        each group of transactions is mined in one block of its own: fewer, fuller blocks.

        anvil's work per block grows with the size of the state, so with a large state many
        transactions are much faster in a few blocks. The groups' gas must fit in a block.
        On a node that mines on an interval, the blocks are the node's.
        """
        requests = [request for block in blocks for request in block]
        if (len(blocks) <= 1 and len(requests) <= 1) or not await self._automine():
            return await self.send_all(requests)
        hashes: list[str] = []
        async with self._lock:
            await self.rpc.call("evm_setAutomine", [False])
            try:
                for block in blocks:
                    if block:
                        hashes += await self._submit(block)
                        await self.rpc.call("evm_mine")
                for _ in range(100):  # whatever did not fit in its block
                    status = await self.rpc.call("txpool_status")
                    if int(status.get("pending", "0x0"), 16) == 0:
                        break
                    await self.rpc.call("evm_mine")
            finally:
                await self.rpc.call("evm_setAutomine", [True])
        return await self._check(requests, await self.wait_for_receipts(hashes))

    async def _automine(self) -> bool:
        try:
            return bool(await self.rpc.call("anvil_getAutomine"))
        except RpcError:  # not anvil
            return False

    async def _check(
        self, requests: Sequence[TxRequest], receipts: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        for request, receipt in zip(requests, receipts, strict=True):
            if receipt.get("status") != "0x1":
                reason = await self._revert_reason(request, receipt)
                raise TransactionFailedError(
                    f"transaction {request.label} ({receipt.get('transactionHash')}) reverted"
                    f" in block {int(receipt['blockNumber'], 16)}: {reason}"
                )
        return receipts

    async def _submit(self, requests: Sequence[TxRequest]) -> list[str]:
        calls: list[tuple[str, list[Any]]] = []
        for request in requests:
            nonce = await self._next_nonce(request.sender)
            tx: dict[str, Any] = {
                "from": request.sender,
                "data": request.data,
                "gas": hex(request.gas),
                "nonce": hex(nonce),
            }
            if request.to is not None:
                tx["to"] = request.to
            calls.append(("eth_sendTransaction", [tx]))
        hashes: list[str] = []
        start = 0
        while start < len(calls):
            end, size = start, 0
            while end < len(calls) and end - start < self.max_request_calls:
                size += len(calls[end][1][0]["data"])
                if size > self.max_request_bytes and end > start:
                    break
                end += 1
            try:
                results = await self.rpc.batch(calls[start:end])
            except RpcError as error:
                self._nonces.clear()  # some may have been accepted: ask the node again
                raise TransactionFailedError(
                    f"cannot send {requests[start].label} (or one of the"
                    f" {end - start - 1} sent with it): {error.rpc_message}"
                ) from error
            for (_, (tx,)), result in zip(calls[start:end], results, strict=True):
                self._sent[str(result)] = tx
                hashes.append(str(result))
            start = end
        return hashes

    def forget_nonces(self) -> None:
        """Ask the node for each sender's nonce again (after evm_revert, anvil_reset, ...)."""
        self._nonces.clear()

    async def _next_nonce(self, sender: str) -> int:
        key = sender.lower()
        if key not in self._nonces:
            count = await self.rpc.call("eth_getTransactionCount", [sender, "pending"])
            self._nonces[key] = int(count, 16)
        nonce = self._nonces[key]
        self._nonces[key] = nonce + 1
        return nonce

    async def wait_for_receipts(self, hashes: Sequence[str]) -> list[dict[str, Any]]:
        """The receipts of `hashes`, in their order, once all are mined. A transaction sent
        here that anvil's pool holds back (see STUCK_AFTER_SECONDS) is sent again, and its
        receipt may then have the new hash."""
        receipts: dict[str, dict[str, Any]] = {}
        sent_as = {h: [h] for h in hashes}  # every hash each one was sent under, latest last
        started = time.monotonic()
        deadline, next_check = started + self.receipt_timeout, started + STUCK_AFTER_SECONDS
        delay = 0.002
        try:
            while True:
                # Under any of its hashes: the first one may be mined after all.
                pending = [(h, sent) for h in sent_as if h not in receipts for sent in sent_as[h]]
                for start in range(0, len(pending), 20):
                    chunk = pending[start : start + 20]
                    replies = await self.rpc.batch(
                        [("eth_getTransactionReceipt", [sent]) for _, sent in chunk]
                    )
                    for (tx_hash, _), receipt in zip(chunk, replies, strict=True):
                        if isinstance(receipt, dict):
                            receipts[tx_hash] = receipt
                if len(receipts) == len(sent_as):
                    return [receipts[h] for h in hashes]
                now = time.monotonic()
                if now > deadline:
                    missing = next(h for h in hashes if h not in receipts)
                    raise TransactionFailedError(
                        f"{len(sent_as) - len(receipts)} transactions were not mined within"
                        f" {self.receipt_timeout:g} s (the first: {missing})"
                    )
                if now >= next_check:
                    await self._send_held_back_again([h for h in sent_as if h not in receipts],
                                                     sent_as)  # fmt: skip
                    next_check = time.monotonic() + STUCK_AFTER_SECONDS
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.1)
        finally:
            for tx_hash in hashes:
                self._sent.pop(tx_hash, None)

    async def _send_held_back_again(
        self, missing: Sequence[str], sent_as: dict[str, list[str]]
    ) -> None:
        """Send again those of `missing` (sent here, unmined) whose nonce is their sender's
        next one: the node should have mined them. `sent_as` gets each one's new hash."""
        waiting = [(tx_hash, self._sent[tx_hash]) for tx_hash in missing if tx_hash in self._sent]
        senders = sorted({tx["from"] for _, tx in waiting})
        if not senders:
            return
        counts = await self.rpc.batch(
            [("eth_getTransactionCount", [sender, "latest"]) for sender in senders]
        )
        due = {sender: int(count, 16) for sender, count in zip(senders, counts, strict=True)}
        for tx_hash, tx in waiting:
            if int(tx["nonce"], 16) != due[tx["from"]]:
                continue  # an earlier one of its sender's is not mined yet
            # The pool keeps the one it holds back (anvil_dropTransaction leaves it) and
            # refuses the same transaction again: this one offers twice its fees.
            held = await self.rpc.call("eth_getTransactionByHash", [sent_as[tx_hash][-1]])
            again = {**tx, **_doubled_fees(held)} if isinstance(held, dict) else tx
            try:
                sent_as[tx_hash].append(str(await self.rpc.call("eth_sendTransaction", [again])))
            except RpcError as error:  # mined meanwhile after all: its receipt will come
                log.info("devnet.transaction_not_sent_again", transaction=tx_hash,
                         error=error.rpc_message)  # fmt: skip
                continue
            log.warning("devnet.transaction_sent_again", transaction=tx_hash,
                        now=sent_as[tx_hash][-1], nonce=int(tx["nonce"], 16))  # fmt: skip

    async def _revert_reason(self, request: TxRequest, receipt: dict[str, Any]) -> str:
        """Replays the call on the parent block's state: the reason, most likely."""
        if request.to is None:
            return "the deployment failed"
        parent = hex(max(int(receipt["blockNumber"], 16) - 1, 0))
        call = {
            "from": request.sender,
            "to": request.to,
            "data": request.data,
            "gas": hex(request.gas),
        }
        try:
            await self.rpc.call("eth_call", [call, parent])
        except RpcError as error:
            return decode_revert(error.data) or error.rpc_message
        used = int(receipt.get("gasUsed", "0x0"), 16)
        if used >= request.gas:
            return f"out of gas ({request.gas} given)"
        return "unknown reason (the replay on the parent block succeeds)"


def _doubled_fees(held: dict[str, Any]) -> dict[str, str]:
    """Fee fields twice those of `held`, as the node filled them in (EIP-1559 or legacy)."""
    if held.get("maxFeePerGas"):
        return {key: hex(2 * int(held[key], 16))
                for key in ("maxFeePerGas", "maxPriorityFeePerGas") if held.get(key)}  # fmt: skip
    if held.get("gasPrice"):
        return {"gasPrice": hex(2 * int(held["gasPrice"], 16))}
    return {}


@dataclass(frozen=True)
class DeployedRegistries:
    """Where the three registries live (lowercase addresses) and from which block."""

    chain_id: int
    deployer: str
    identity: str
    reputation: str
    validation: str
    block_number: int  # the block of the first deployment: index from here
    transaction_hashes: tuple[str, ...]

    @property
    def addresses(self) -> dict[str, str]:
        return {
            "identity": self.identity,
            "reputation": self.reputation,
            "validation": self.validation,
        }

    def chain_config(
        self, rpc_urls: Sequence[str], *, name: str = "devnet", **overrides: Any
    ) -> ChainConfig:
        """A chain entry for the indexer: enabled, no confirmations, from the deploy block."""
        fields: dict[str, Any] = {
            "name": name,
            "chain_id": self.chain_id,
            "enabled": True,
            "rpc_urls": list(rpc_urls),
            **self.addresses,
            "start_block": self.block_number,
            "confirmations": 0,
            "poll_interval": 0.5,
            "max_block_range": 100_000,
            "restartable": True,
        }
        fields.update(overrides)
        return ChainConfig(**fields)


async def deploy_registries(
    rpc: RpcClient, *, deployer: str | None = None, transactor: Transactor | None = None
) -> DeployedRegistries:
    """Deploy identity, reputation and validation, in this order, from `deployer` (default:
    the node's first account). From a fresh anvil that is nonces 0, 1 and 2, so the addresses
    are `chain.config.DEVNET`'s."""
    started = time.perf_counter()
    chain_id = await rpc.chain_id()
    if deployer is None:
        accounts = await rpc.call("eth_accounts")
        if not isinstance(accounts, list) or not accounts:
            raise Erc8004Error("the node has no unlocked account to deploy from")
        deployer = str(accounts[0])
    deployer = deployer.lower()
    sender = transactor or Transactor(rpc)
    nonce = int(await rpc.call("eth_getTransactionCount", [deployer, "pending"]), 16)
    identity = contract_address(deployer, nonce)
    requests = [
        TxRequest(
            deployer, None, load_artifact(IDENTITY).deploy_data(), DEPLOY_GAS, f"deploy {IDENTITY}"
        ),
        TxRequest(
            deployer,
            None,
            load_artifact(REPUTATION).deploy_data(identity),
            DEPLOY_GAS,
            f"deploy {REPUTATION}",
        ),
        TxRequest(
            deployer,
            None,
            load_artifact(VALIDATION).deploy_data(identity),
            DEPLOY_GAS,
            f"deploy {VALIDATION}",
        ),
    ]
    receipts = await sender.send_all(requests)
    addresses = [str(receipt.get("contractAddress") or "").lower() for receipt in receipts]
    expected = [contract_address(deployer, nonce + i) for i in range(3)]
    if addresses != expected:
        raise Erc8004Error(f"the registries were deployed at {addresses}, not {expected}")
    registries = DeployedRegistries(
        chain_id=chain_id,
        deployer=deployer,
        identity=addresses[0],
        reputation=addresses[1],
        validation=addresses[2],
        block_number=min(int(receipt["blockNumber"], 16) for receipt in receipts),
        transaction_hashes=tuple(str(receipt["transactionHash"]) for receipt in receipts),
    )
    log.info(
        "devnet.deployed",
        chain_id=chain_id,
        block=registries.block_number,
        seconds=round(time.perf_counter() - started, 3),
        **registries.addresses,
    )
    return registries
