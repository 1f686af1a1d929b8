"""The topic0 table worked out ahead (events.KNOWN_TOPICS) is keccak256 of each signature,
and covers every event the indexer decodes or skips, so that it never loads a hasher."""

from __future__ import annotations

from eth_hash.auto import keccak

from erc8004_backend.chain.events import IGNORED_EVENTS, KNOWN_TOPICS, SPECS, topic0


def test_each_known_topic_is_the_keccak256_of_its_signature() -> None:
    for signature, topic in KNOWN_TOPICS.items():
        assert topic == "0x" + keccak(signature.encode()).hex(), signature


def test_every_decoded_and_skipped_event_is_in_the_table() -> None:
    decoded = {spec.signature for spec in SPECS}
    skipped = {topic for topic in IGNORED_EVENTS}
    assert decoded <= KNOWN_TOPICS.keys()
    assert skipped <= set(KNOWN_TOPICS.values())
    assert len(KNOWN_TOPICS) == len(SPECS) + len(IGNORED_EVENTS)


def test_a_signature_missing_from_the_table_is_hashed() -> None:
    signature = "Paused(address)"
    assert signature not in KNOWN_TOPICS
    assert topic0(signature) == "0x" + keccak(signature.encode()).hex()
