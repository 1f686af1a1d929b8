"""The devnet registry contracts: compiled artifacts, selectors, calldata and event topics.

The artifacts are built from `contracts/*.sol` by `npm run build:contracts` and committed in
`artifacts/` beside this module, so running the devnet needs no compiler.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from erc8004_backend.errors import Erc8004Error

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
IDENTITY = "IdentityRegistry"
REPUTATION = "ReputationRegistry"
VALIDATION = "ValidationRegistry"
CONTRACT_NAMES = (IDENTITY, REPUTATION, VALIDATION)

# The earlier testnet ABI's feedback event shares the name NewFeedback with v1; counts and
# reports call it this, so the two versions stay apart.
LEGACY_NEW_FEEDBACK = "NewFeedback(v0)"
LEGACY_NEW_FEEDBACK_SIGNATURE = "NewFeedback(uint256,address,uint8,bytes32,bytes32,string,bytes32)"

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class ArtifactError(Erc8004Error):
    """A contract artifact is missing or malformed, or a call does not fit its ABI."""


def keccak_hex(data: bytes) -> str:
    return "0x" + keccak(data).hex()


def function_selector(signature: str) -> bytes:
    """The 4-byte selector of a canonical signature such as `register(string)`."""
    return keccak(signature.encode())[:4]


def event_topic(signature: str) -> str:
    """topic0 of a canonical event signature, as logs carry it (0x + 64 hex digits)."""
    return keccak_hex(signature.encode())


def canonical_type(param: Mapping[str, Any]) -> str:
    """An ABI parameter's canonical type: tuples spelled out, `tuple[]` -> `(...)[]`."""
    type_: str = param["type"]
    if type_.startswith("tuple"):
        inner = ",".join(canonical_type(component) for component in param["components"])
        return f"({inner}){type_[len('tuple') :]}"
    return type_


def abi_signature(entry: Mapping[str, Any]) -> str:
    return f"{entry['name']}({','.join(canonical_type(p) for p in entry.get('inputs', []))})"


@dataclass(frozen=True)
class Function:
    name: str
    signature: str
    selector: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def encode(self, *args: Any) -> str:
        """Calldata for a call with positional arguments, as a 0x-prefixed hex string."""
        if len(args) != len(self.inputs):
            raise ArtifactError(
                f"{self.signature} takes {len(self.inputs)} arguments, got {len(args)}"
            )
        return "0x" + (self.selector + abi_encode(list(self.inputs), list(args))).hex()

    def decode_output(self, data: str) -> tuple[Any, ...]:
        return tuple(abi_decode(list(self.outputs), bytes.fromhex(data.removeprefix("0x"))))


@dataclass(frozen=True)
class Event:
    name: str
    signature: str
    topic0: str
    names: tuple[str, ...]
    indexed: tuple[bool, ...]
    types: tuple[str, ...]

    def decode(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A log's values by parameter name; an indexed string or bytes stays its topic hash."""
        topics = list(entry["topics"][1:])
        body = abi_decode(
            [t for t, i in zip(self.types, self.indexed, strict=True) if not i],
            bytes.fromhex(str(entry["data"]).removeprefix("0x")),
        )
        values: dict[str, Any] = {}
        rest = iter(body)
        for name, type_, indexed in zip(self.names, self.types, self.indexed, strict=True):
            if not indexed:
                values[name] = next(rest)
            elif type_ in ("string", "bytes") or type_.endswith("]") or type_.startswith("("):
                values[name] = topics.pop(0)
            else:
                (values[name],) = abi_decode([type_], bytes.fromhex(topics.pop(0)[2:]))
        return values


@dataclass(frozen=True)
class Artifact:
    """One compiled contract, as `contracts/build.mjs` wrote it."""

    name: str
    abi: tuple[Mapping[str, Any], ...]
    bytecode: bytes
    compiler: str
    source_path: str
    source_sha256: str
    functions: Mapping[str, Function] = field(repr=False)  # by signature, and by unique name
    events: Mapping[str, Event] = field(repr=False)  # by topic0
    constructor_inputs: tuple[str, ...] = ()

    def function(self, name_or_signature: str) -> Function:
        try:
            return self.functions[name_or_signature]
        except KeyError:
            overloads = sorted(
                f.signature for f in self.functions.values() if f.name == name_or_signature
            )
            hint = f" (overloaded: use one of {', '.join(overloads)})" if overloads else ""
            raise ArtifactError(f"{self.name} has no function {name_or_signature}{hint}") from None

    def encode_call(self, name_or_signature: str, *args: Any) -> str:
        return self.function(name_or_signature).encode(*args)

    def deploy_data(self, *constructor_args: Any) -> str:
        """Init code with ABI-encoded constructor arguments appended, as hex."""
        if len(constructor_args) != len(self.constructor_inputs):
            raise ArtifactError(
                f"the {self.name} constructor takes {len(self.constructor_inputs)} arguments"
            )
        encoded = abi_encode(list(self.constructor_inputs), list(constructor_args))
        return "0x" + (self.bytecode + encoded).hex()

    def event(self, name_or_signature: str) -> Event:
        for event in self.events.values():
            if name_or_signature in (event.name, event.signature):
                return event
        raise ArtifactError(f"{self.name} has no event {name_or_signature}")


@cache
def load_artifact(name: str) -> Artifact:
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        abi = tuple(document["abi"])
        bytecode = bytes.fromhex(str(document["bytecode"]).removeprefix("0x"))
        compiler, source_path = str(document["compiler"]), str(document["sourcePath"])
        source_sha256 = str(document["sourceSha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(
            f"cannot read the contract artifact {path}: {error}"
            " (rebuild with `npm run build:contracts`)"
        ) from error
    functions: dict[str, Function] = {}
    names: dict[str, list[Function]] = {}
    events: dict[str, Event] = {}
    constructor: tuple[str, ...] = ()
    for entry in abi:
        kind = entry.get("type")
        if kind == "function":
            signature = abi_signature(entry)
            function = Function(
                name=entry["name"],
                signature=signature,
                selector=function_selector(signature),
                inputs=tuple(canonical_type(p) for p in entry.get("inputs", [])),
                outputs=tuple(canonical_type(p) for p in entry.get("outputs", [])),
            )
            functions[signature] = function
            names.setdefault(function.name, []).append(function)
        elif kind == "event":
            signature = abi_signature(entry)
            name = (
                LEGACY_NEW_FEEDBACK if signature == LEGACY_NEW_FEEDBACK_SIGNATURE else entry["name"]
            )
            topic0 = event_topic(signature)
            events[topic0] = Event(
                name=name,
                signature=signature,
                topic0=topic0,
                names=tuple(str(p["name"]) for p in entry["inputs"]),
                indexed=tuple(bool(p.get("indexed")) for p in entry["inputs"]),
                types=tuple(canonical_type(p) for p in entry["inputs"]),
            )
        elif kind == "constructor":
            constructor = tuple(canonical_type(p) for p in entry.get("inputs", []))
    for name, overloads in names.items():
        if len(overloads) == 1:
            functions.setdefault(name, overloads[0])
    return Artifact(
        name=_name_of(document, path),
        abi=abi,
        bytecode=bytecode,
        compiler=compiler,
        source_path=source_path,
        source_sha256=source_sha256,
        functions=functions,
        events=events,
        constructor_inputs=constructor,
    )


def _name_of(document: Mapping[str, Any], path: Path) -> str:
    name = document.get("contractName")
    if not isinstance(name, str) or name != path.stem:
        raise ArtifactError(f"{path} does not hold the artifact of {path.stem}")
    return name


def event_names() -> dict[str, str]:
    """topic0 -> event name over the three registries (the legacy feedback event included)."""
    return {
        topic: event.name
        for name in CONTRACT_NAMES
        for topic, event in load_artifact(name).events.items()
    }


def decode_revert(data: Any) -> str | None:
    """The reason of a revert from its return data (Error(string) or Panic(uint256))."""
    if not isinstance(data, str) or not data.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(data[2:])
        if raw[:4] == _ERROR_SELECTOR:
            (reason,) = abi_decode(["string"], raw[4:])
            return str(reason)
        if raw[:4] == _PANIC_SELECTOR:
            (code,) = abi_decode(["uint256"], raw[4:])
            return f"panic 0x{code:02x}"
    except ValueError:
        return None
    return None


def contract_address(deployer: str, nonce: int) -> str:
    """The address of the contract `deployer` creates with `nonce` (CREATE), lowercase."""
    sender = bytes.fromhex(deployer.removeprefix("0x"))
    if nonce == 0:
        encoded_nonce = b"\x80"
    elif nonce < 0x80:
        encoded_nonce = bytes([nonce])
    else:
        raw = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
        encoded_nonce = bytes([0x80 + len(raw)]) + raw
    payload = b"\x94" + sender + encoded_nonce
    return "0x" + keccak(bytes([0xC0 + len(payload)]) + payload)[12:].hex()


def word(data: bytes, index: int) -> int:
    """The `index`th 32-byte word of ABI data, as an unsigned integer."""
    return int.from_bytes(data[32 * index : 32 * index + 32], "big")


def dynamic_bytes(data: bytes, index: int) -> bytes:
    """The `bytes`/`string` whose head is the `index`th word of top-level ABI data."""
    offset = word(data, index)
    length = word(data, offset // 32)
    return data[offset + 32 : offset + 32 + length]


def topic_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()
