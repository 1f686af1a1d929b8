"""What the generated activity says: registration files and URIs, metadata, feedback values
and tags, file URIs, validation requests and responses, drawn from one seeded random stream.

The values are realistic rather than uniform: mostly 0-100 scores and common tags, with the
edge cases an indexer must survive mixed in (negative and int128-extreme values, every number
of decimals from 0 to 18, empty, long and unicode strings, binary metadata).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from typing import Any

from eth_hash.auto import keccak

from erc8004_backend.devnet.activity.state import Agent, ChainState, ValidationRequest
from erc8004_backend.devnet.deploy import DeployedRegistries

ZERO_HASH = b"\x00" * 32
INT128_MIN, INT128_MAX = -(2**127), 2**127 - 1
REGISTRATION_TYPE = "https://eips.ethereum.org/EIPS/eip-8004#registration-v1"

# giveFeedback's arguments: agentId, value, valueDecimals, tag1, tag2, endpoint, feedbackURI,
# feedbackHash.
FeedbackArgs = tuple[int, int, int, str, str, str, str, bytes]
# validationResponse's: requestHash, response, responseURI, responseHash, tag.
ValidationResponseArgs = tuple[bytes, int, str, bytes, str]

TAGS1 = [
    "starred",
    "reachable",
    "uptime",
    "successRate",
    "responseTime",
    "revenues",
    "tradingYield",
    "refund",
    "",
    "qualité",
    "信頼性",
    "🚀 rápido",
]
TAGS2 = ["", "", "day", "week", "month", "mcp", "a2a", "api", "ünïcødé", "✓"]
VALIDATION_TAGS = [
    "",
    "soft-finality",
    "hard-finality",
    "zkml",
    "tee",
    "re-execution",
    "vérifié ✓",
]
METADATA_KEYS = [
    "name",
    "description",
    "version",
    "mcp.tools",
    "a2a.skills",
    "x402",
    "category",
    "ключ",
    "🔑",
]
_ADJECTIVES = [
    "Swift",
    "Quiet",
    "Bright",
    "Lucid",
    "Nimble",
    "Stellar",
    "Candid",
    "Ünïque",
    "静かな",
    "Bold",
]
_NOUNS = [
    "Oracle",
    "Scout",
    "Ledger",
    "Courier",
    "Analyst",
    "Sentinel",
    "Broker",
    "Agent",
    "エージェント",
    "Weaver",
]
_LONG_TEXT = "Ünïcødé ✓ データ 🚀 agir ß Ωμέγα — "


class Content:
    """Realistic values, drawn from `rng` (shared with the planners: one stream per seed)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        seed: int,
        endpoint_base: str,
        registries: DeployedRegistries,
        state: ChainState,
    ) -> None:
        self.rng = rng
        self.seed = seed
        self.endpoint_base = endpoint_base.rstrip("/")
        self.registries = registries
        self.state = state
        # Request hashes must be new on this chain, and the same for the same seed on a fresh
        # devnet: set on setup, from the seed and the requests already on the chain.
        self.salt = b""
        self._counter = 0

    def next_number(self) -> int:
        """A number no earlier value of this generator used (file names, request hashes)."""
        self._counter += 1
        return self._counter

    def registration_uri(
        self, *, agent_id: int | None = None, slug: str | None = None, short: bool = False
    ) -> str:
        """A URI for a new agent (`agent_id` None: its slug is remembered until it is
        registered) or an existing one: a `data:` registration file, https or ipfs."""
        slug = slug or f"agent-{self.seed}-{self.next_number()}"
        roll = self.rng.random()
        if roll < (0.1 if short else 0.5):
            document = self.registration_file(slug, agent_id)
            encoded = base64.b64encode(
                json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
            ).decode()
            uri = f"data:application/json;base64,{encoded}"
        elif roll < (0.8 if short else 0.88):
            uri = f"{self.endpoint_base}/{slug}/agent.json"
        else:
            uri = f"ipfs://bafkrei{keccak(slug.encode()).hex()[:52]}"
        if agent_id is None:
            self.state.pending_slugs[uri] = slug
        return uri

    def registration_file(self, slug: str, agent_id: int | None) -> dict[str, Any]:
        base = f"{self.endpoint_base}/{slug}"
        services: list[dict[str, str]] = []
        roll = self.rng.random()
        if roll < 0.85:
            services.append({"name": "MCP", "endpoint": f"{base}/mcp", "version": "2025-06-18"})
        if roll > 0.2:
            services.append(
                {
                    "name": "A2A",
                    "endpoint": f"{base}/.well-known/agent-card.json",
                    "version": "0.3.0",
                }
            )
        if self.rng.random() < 0.2:
            services.append({"name": "web", "endpoint": f"{base}/"})
        name = f"{self.rng.choice(_ADJECTIVES)} {self.rng.choice(_NOUNS)} {slug.rsplit('-', 1)[-1]}"
        document: dict[str, Any] = {
            "type": REGISTRATION_TYPE,
            "name": name,
            "description": f"{name}: a devnet agent that answers questions about {slug}.",
            "image": f"{base}/avatar.png",
            "services": services,
            "x402Support": self.rng.random() < 0.3,
            "active": self.rng.random() < 0.95,
            "supportedTrust": self.rng.sample(
                ["reputation", "validation", "crypto-economic", "tee-attestation"], 2
            ),
        }
        if agent_id is not None:
            identity = self.registries.identity
            document["registrations"] = [
                {
                    "agentId": agent_id,
                    "agentRegistry": f"eip155:{self.registries.chain_id}:{identity}",
                }
            ]
        return document

    def metadata_value(self, key: str) -> bytes:
        roll = self.rng.random()
        if roll < 0.5:
            return f"{key} value {self.rng.randint(0, 10_000)} ✓".encode()
        if roll < 0.7:
            return self.rng.randint(0, 2**64).to_bytes(32, "big")
        if roll < 0.9:
            return self.rng.randbytes(self.rng.randint(1, 64))
        return b""

    def text(self, choices: Sequence[str]) -> str:
        if self.rng.random() < 0.02:  # a long unicode string now and then
            return (_LONG_TEXT * 10)[: self.rng.randint(60, 300)]
        return self.rng.choice(choices)

    def feedback_args(self, agent: Agent) -> FeedbackArgs:
        rng = self.rng
        roll = rng.random()
        tag2 = self.text(TAGS2)
        if roll < 0.45:  # a 0-100 score, now and then without a tag
            tag1 = "starred" if rng.random() < 0.9 else ""
            value, decimals = round(rng.triangular(0, 100, 85)), 0
        elif roll < 0.55:
            tag1, value, decimals = "uptime", rng.randint(9000, 10000), 2
            tag2 = rng.choice(["day", "week", "month"])
        elif roll < 0.63:
            tag1, decimals = "successRate", rng.randint(0, 1)
            value = rng.randint(0, 100 * 10**decimals)
        elif roll < 0.70:
            tag1, value, decimals = "responseTime", rng.randint(20, 5000), 0
        elif roll < 0.78:
            tag1, decimals = "tradingYield", rng.randint(1, 4)
            value = rng.randint(-50 * 10**decimals, 150 * 10**decimals)
        elif roll < 0.83:  # in cents, in a 6-decimal stablecoin, or in wei
            tag1, decimals = "revenues", rng.choice([2, 6, 18])
            value = rng.randint(0, 10 ** (10 + decimals))
        elif roll < 0.88:
            tag1, value, decimals = "refund", rng.choice([-1, 0, 1, -100]), 0
        elif roll < 0.93:
            tag1, value, decimals = "reachable", rng.randint(0, 1), 0
        elif roll < 0.97:  # -100 to 100 with any number of decimals
            tag1, decimals = self.text(TAGS1), rng.randint(0, 18)
            value = rng.randint(-100 * 10**decimals, 100 * 10**decimals)
        else:
            tag1 = rng.choice(["", self.text(TAGS1), "x" * 40])
            value = rng.choice([INT128_MIN, INT128_MAX, 0, -1, 1, INT128_MIN + 1])
            decimals = rng.randint(0, 18)
        endpoint = (
            f"{self.endpoint_base}/{agent.slug}/mcp" if agent.slug and rng.random() < 0.7 else ""
        )
        feedback_uri, feedback_hash = self.document_uri("feedback")
        return agent.agent_id, value, decimals, tag1, tag2, endpoint, feedback_uri, feedback_hash

    def document_uri(self, kind: str) -> tuple[str, bytes]:
        """A file URI and its hash: https with a keccak256, ipfs without, or nothing."""
        roll = self.rng.random()
        number = self.next_number()
        if roll < 0.45:
            uri = f"https://{kind}.devnet.example/{self.seed}/{number}.json"
            return uri, keccak(uri.encode())
        if roll < 0.8:
            return f"ipfs://bafkrei{keccak(f'{kind}{number}'.encode()).hex()[:52]}", ZERO_HASH
        return "", ZERO_HASH

    def validation_request(self, agent: Agent, accounts: Sequence[str]) -> tuple[str, str, bytes]:
        """A validator for the agent (any account but its owner), a request URI and a new
        request hash."""
        validator = self.rng.choice([a for a in accounts if a != agent.owner])
        number = self.next_number()
        request_hash = keccak(self.salt + number.to_bytes(8, "big"))
        uri = f"https://validation.devnet.example/{self.seed}/requests/{number}.json"
        if self.rng.random() < 0.3:
            uri = f"ipfs://bafkrei{request_hash.hex()[:52]}"
        return validator, uri, request_hash

    def scripted_request_hash(self) -> bytes:
        """A new request hash for a scripted request (apart from the random ones')."""
        return keccak(self.salt + b"scripted" + self.next_number().to_bytes(8, "big"))

    def validation_response_args(self, request: ValidationRequest) -> ValidationResponseArgs:
        roll = self.rng.random()
        response = 100 if roll < 0.5 else 0 if roll < 0.65 else self.rng.randint(1, 99)
        uri, digest = self.document_uri("validation")
        return request.request_hash, response, uri, digest, self.text(VALIDATION_TAGS)
