"""What every kind of activity shares: the node's accounts (and more clients), the one seeded
random stream, the chain state, the content, the contracts and the round sender; set up once,
on first use."""

from __future__ import annotations

import random
from collections.abc import Sequence

from eth_hash.auto import keccak

from erc8004_backend.chain.rpc import RpcClient, RpcError
from erc8004_backend.devnet.activity.content import Content
from erc8004_backend.devnet.activity.state import ChainState, Feedback
from erc8004_backend.devnet.activity.transactions import (
    Action,
    ActivityError,
    ActivityReport,
    Contracts,
    RoundSender,
)
from erc8004_backend.devnet.deploy import DeployedRegistries, Transactor

CLIENT_BALANCE = 10**21  # wei: gas for a lifetime of feedback


def client_addresses(count: int) -> list[str]:
    """`count` addresses that only give feedback (the same on every devnet)."""
    return ["0x" + keccak(f"devnet client {i}".encode())[12:].hex() for i in range(count)]


class ActivityContext:
    """The accounts that act, what they know of the chain, and how they act."""

    def __init__(
        self,
        rpc: RpcClient,
        registries: DeployedRegistries,
        *,
        seed: int,
        accounts: Sequence[str] | None,
        clients: int,
        endpoint_base: str,
        items_per_tx: int,
        events_per_block: int,
        transactor: Transactor,
    ) -> None:
        self.rpc = rpc
        self.registries = registries
        self.seed = seed
        self.items_per_tx = items_per_tx
        self.max_tx_gas = 30_000_000
        self.rng = random.Random(seed)  # noqa: S311 (reproducible test data, not secrets)
        self.state = ChainState()
        self.content = Content(
            self.rng,
            seed=seed,
            endpoint_base=endpoint_base,
            registries=registries,
            state=self.state,
        )
        self.contracts = Contracts(registries)
        self.sender = RoundSender(transactor, self.state, events_per_block)
        # Agents the random activity leaves alone (no feedback, revocation or response of their
        # feedback, validation request or response, or change of URI, metadata or owner): a
        # scripted scene's agents, whose story the script tells.
        self.hands_off: set[int] = set()
        self._accounts = [a.lower() for a in accounts] if accounts is not None else None
        # Clients beyond the accounts, which the node lets send transactions (impersonated):
        # many clients per agent, as on a real chain. They give and revoke feedback only.
        self.clients = client_addresses(clients)
        self._ready = False

    @property
    def accounts(self) -> list[str]:
        if self._accounts is None:
            raise ActivityError("the generator is not set up yet: await setup() first")
        return list(self._accounts)

    async def setup(self) -> None:
        """Read the accounts, the gas limit and the registries' state."""
        if self._accounts is None:
            accounts = await self.rpc.call("eth_accounts")
            if not isinstance(accounts, list) or len(accounts) < 2:
                raise ActivityError("the devnet needs at least two unlocked accounts")
            self._accounts = [str(a).lower() for a in accounts]
        await self._impersonate_clients()
        latest = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        self.sender.block_gas = int(latest["gasLimit"], 16) * 9 // 10
        self.max_tx_gas = min(self.sender.block_gas, 500_000_000)
        await self.resync()
        # Request hashes must be new on this chain, and the same for the same seed on a fresh
        # devnet: another generator's earlier requests make the difference.
        self.content.salt = keccak(f"{self.seed}:{len(self.state.request_list)}".encode())
        self._ready = True

    async def _impersonate_clients(self) -> None:
        if not self.clients:
            return
        calls: list[tuple[str, list[str]]] = []
        for client in self.clients:
            calls.append(("anvil_impersonateAccount", [client]))
            calls.append(("anvil_setBalance", [client, hex(CLIENT_BALANCE)]))
        try:
            for start in range(0, len(calls), 100):
                await self.rpc.batch(calls[start : start + 100])
        except RpcError as error:
            raise ActivityError(
                f"clients beyond the node's accounts need anvil (to impersonate them): {error}"
            ) from error

    async def ensure_ready(self) -> None:
        if not self._ready:
            await self.setup()

    async def resync(self) -> None:
        """Rebuild the chain state from the logs, and forget the nonces."""
        self.sender.transactor.forget_nonces()
        await self.state.load(self.rpc, self.registries)

    async def execute(self, actions: Sequence[Action]) -> ActivityReport:
        return await self.sender.execute(actions)

    def random_targets(self) -> list[int]:
        """The agents random actions may pick: all but the hands-off ones."""
        if not self.hands_off:
            return self.state.agent_ids
        return [agent_id for agent_id in self.state.agent_ids if agent_id not in self.hands_off]

    def client_for(self, agent_id: int) -> str:
        """A client other than the owner, as the specification wants."""
        owner = self.state.agents[agent_id].owner
        return self.rng.choice([a for a in self.accounts + self.clients if a != owner])

    def responder_for(self, feedback: Feedback) -> str:
        """Mostly the agent's owner (a refund, a reply); sometimes a third party (spam tags)."""
        if self.rng.random() < 0.7:
            return self.state.agents[feedback.agent_id].owner
        return self.rng.choice(self.accounts)
