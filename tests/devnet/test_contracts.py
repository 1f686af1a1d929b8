"""The committed artifacts against their sources, and the events against the indexer's table."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from eth_abi.abi import encode as abi_encode

from erc8004_backend.chain.config import DEVNET
from erc8004_backend.chain.events import IGNORED_EVENTS, SPECS
from erc8004_backend.devnet.contracts import (
    ARTIFACTS_DIR,
    CONTRACT_NAMES,
    IDENTITY,
    LEGACY_NEW_FEEDBACK,
    REPUTATION,
    VALIDATION,
    ArtifactError,
    contract_address,
    decode_revert,
    function_selector,
    load_artifact,
)

ROOT = Path(__file__).resolve().parents[2]
ANVIL_DEPLOYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
REGISTRY_OF = {IDENTITY: "identity", REPUTATION: "reputation", VALIDATION: "validation"}


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_is_built_from_the_current_source(name: str) -> None:
    artifact = load_artifact(name)
    source = ROOT / artifact.source_path
    assert source == ROOT / "contracts" / f"{name}.sol"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert artifact.source_sha256 == digest, (
        f"{artifact.source_path} changed since its artifact was built: run npm run build:contracts"
    )
    assert artifact.compiler.startswith("solc 0.8.30")
    assert artifact.bytecode


def test_artifacts_are_the_only_files_in_their_directory() -> None:
    assert sorted(p.name for p in ARTIFACTS_DIR.iterdir()) == sorted(
        f"{name}.json" for name in CONTRACT_NAMES
    )


def test_package_json_has_the_build_script() -> None:
    scripts = json.loads((ROOT / "package.json").read_text())["scripts"]
    assert scripts["build:contracts"] == "node contracts/build.mjs"


def test_every_indexed_event_is_emitted_by_its_registry_with_the_same_abi() -> None:
    """Byte-for-byte the deployed events: same topic0, same indexed parameters. The interim
    feedback ABI (testnets, January 2026) is not in our contracts: tests emit it raw
    (tests/support/raw_logs.py)."""
    for spec in SPECS:
        if spec.version == "interim":
            continue
        name = next(n for n, registry in REGISTRY_OF.items() if registry == spec.registry)
        event = load_artifact(name).events.get(spec.topic0)
        assert event is not None, f"{name} does not emit {spec.signature}"
        assert event.indexed == tuple(p.indexed for p in spec.params), spec.signature
        assert event.names == tuple(p.name for p in spec.params), spec.signature
    legacy = load_artifact(REPUTATION).event(LEGACY_NEW_FEEDBACK)
    assert next(s for s in SPECS if s.version == "v0").topic0 == legacy.topic0


def test_registries_emit_nothing_the_indexer_does_not_know() -> None:
    known = {spec.topic0 for spec in SPECS} | set(IGNORED_EVENTS)
    for name in CONTRACT_NAMES:
        for topic0, event in load_artifact(name).events.items():
            assert topic0 in known, f"{name} emits {event.signature}, unknown to the indexer"


def test_devnet_addresses_are_the_first_three_creates_of_anvils_first_account() -> None:
    for nonce, registry in enumerate(("identity", "reputation", "validation")):
        assert contract_address(ANVIL_DEPLOYER, nonce) == DEVNET[registry].lower()
    # A well-known example (larger nonces are checked against anvil in test_deploy).
    assert contract_address("0x6ac7ea33f8831ea9dcc53393aaa88b25a785dbf0", 1) == (
        "0x343c43a37d37dff08ae8c4a11544c718abb4fcf8"
    )


def test_calldata_and_selectors() -> None:
    identity = load_artifact(IDENTITY)
    assert function_selector("transferFrom(address,address,uint256)").hex() == "23b872dd"
    assert identity.encode_call("ownerOf", 5) == "0x6352211e" + "00" * 31 + "05"
    feedback = load_artifact(REPUTATION).function("giveFeedbackBatch")
    assert feedback.inputs == ("(uint256,int128,uint8,string,string,string,string,bytes32)[]",)
    with pytest.raises(ArtifactError, match="overloaded"):
        identity.function("register")
    with pytest.raises(ArtifactError, match="takes 1 arguments"):
        identity.encode_call("ownerOf")


def test_revert_reasons() -> None:
    error = "0x08c379a0" + abi_encode(["string"], ["no such feedback"]).hex()
    assert decode_revert(error) == "no such feedback"
    assert decode_revert("0x4e487b71" + abi_encode(["uint256"], [0x11]).hex()) == "panic 0x11"
    assert decode_revert("0x") is None
    assert decode_revert(None) is None


# The read functions of the deployed registries (ERC-8004 v1, the reference implementation's
# ABI): signature -> outputs (name, type). An eth_call encoded with the deployed ABI reads our
# devnet contracts alike. The validation registry's getValidatorRequests is left out (see
# contracts/ValidationRegistry.sol), as are the proxies' upgrade and ownership functions.
DEPLOYED_READS = {
    REPUTATION: {
        "getClients(uint256)": (("", "address[]"),),
        "getIdentityRegistry()": (("", "address"),),
        "getLastIndex(uint256,address)": (("", "uint64"),),
        "getResponseCount(uint256,address,uint64,address[])": (("count", "uint64"),),
        "getSummary(uint256,address[],string,string)": (
            ("count", "uint64"),
            ("summaryValue", "int128"),
            ("summaryValueDecimals", "uint8"),
        ),
        "readAllFeedback(uint256,address[],string,string,bool)": (
            ("clients", "address[]"),
            ("feedbackIndexes", "uint64[]"),
            ("values", "int128[]"),
            ("valueDecimals", "uint8[]"),
            ("tag1s", "string[]"),
            ("tag2s", "string[]"),
            ("revokedStatuses", "bool[]"),
        ),
        "readFeedback(uint256,address,uint64)": (
            ("value", "int128"),
            ("valueDecimals", "uint8"),
            ("tag1", "string"),
            ("tag2", "string"),
            ("isRevoked", "bool"),
        ),
    },
    VALIDATION: {
        "getAgentValidations(uint256)": (("", "bytes32[]"),),
        "getIdentityRegistry()": (("", "address"),),
        "getSummary(uint256,address[],string)": (("count", "uint64"), ("avgResponse", "uint8")),
        "getValidationStatus(bytes32)": (
            ("validatorAddress", "address"),
            ("agentId", "uint256"),
            ("response", "uint8"),
            ("responseHash", "bytes32"),
            ("tag", "string"),
            ("lastUpdate", "uint256"),
        ),
    },
}


@pytest.mark.parametrize("name", [REPUTATION, VALIDATION])
def test_read_functions_have_the_deployed_abi(name: str) -> None:
    entries = {
        f"{e['name']}({','.join(p['type'] for p in e['inputs'])})": e
        for e in load_artifact(name).abi
        if e["type"] == "function"
    }
    for signature, outputs in DEPLOYED_READS[name].items():
        entry = entries.get(signature)
        assert entry is not None, f"{name} lacks {signature}"
        assert entry["stateMutability"] == "view", signature
        assert tuple((o["name"], o["type"]) for o in entry["outputs"]) == outputs, signature
