"""Logic-less templates: placeholders only, unknown names render empty and are reported."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from erc8004_backend.triggers.fields import (
    EVENT_ACCOUNT_FIELDS,
    FIELDS,
    FieldKind,
    event_fields,
    explorer_links,
    format_value,
)
from erc8004_backend.triggers.templates import placeholders, render_template, unknown_placeholders

TEMPLATE = "Agent #{{agent_id}} received a low score: {{ score }}\nFrom: {{client_address}}"


def test_render_fills_fields_and_computed_values() -> None:
    values = {"agent_id": Decimal(42), "score": Decimal("45.50"), "client_address": "0xabc"}
    assert render_template(TEMPLATE, values) == (
        "Agent #42 received a low score: 45.5\nFrom: 0xabc"
    )
    assert (
        render_template("{{ema_score}} / {{count}}", {"ema_score": 61.2, "count": 11})
        == "61.2 / 11"
    )


def test_links_to_the_event_on_the_block_explorer() -> None:
    event = {"transaction_hash": "0x" + "ab" * 32, "block_number": 24339924}
    links = explorer_links(event, "https://etherscan.io")
    assert links == {"transaction_url": "https://etherscan.io/tx/0x" + "ab" * 32,
                     "block_url": "https://etherscan.io/block/24339924",
                     "address_url": None}  # fmt: skip
    message = "Feedback in {{transaction_url}} (block {{block_url}})"
    assert render_template(message, {**event, **links}) == (
        "Feedback in https://etherscan.io/tx/0x" + "ab" * 32
        + " (block https://etherscan.io/block/24339924)"
    )  # fmt: skip
    # Without an explorer (the devnet) or without the value, the links render empty.
    assert render_template(message, explorer_links(event, None)) == "Feedback in  (block )"
    assert explorer_links({}, "https://etherscan.io") == {
        "transaction_url": None,
        "block_url": None,
        "address_url": None,
    }
    assert unknown_placeholders(message) == []


CLIENT, RESPONDER, VALIDATOR = "0x" + "cc" * 20, "0x" + "dd" * 20, "0x" + "ee" * 20
OWNER, SETTER = "0x" + "0a" * 20, "0x" + "5e" * 20


@pytest.mark.parametrize(
    ("event", "account"),
    [
        ({"event_type": "NewFeedback", "client_address": CLIENT}, CLIENT),
        ({"event_type": "FeedbackRevoked", "client_address": CLIENT}, CLIENT),
        ({"event_type": "ResponseAppended", "client_address": CLIENT, "responder": RESPONDER},
         RESPONDER),
        ({"event_type": "ValidationRequest", "validator_address": VALIDATOR}, VALIDATOR),
        ({"event_type": "ValidationResponse", "validator_address": VALIDATOR}, VALIDATOR),
        ({"event_type": "Registered", "owner": OWNER}, OWNER),
        ({"event_type": "URIUpdated", "updated_by": SETTER}, SETTER),
        ({"event_type": "Transfer", "from_address": SETTER, "to_address": OWNER,
          "owner": OWNER}, OWNER),
        ({"event_type": "MetadataSet", "metadata_key": "agentWallet"}, None),
    ],
    ids=lambda value: value["event_type"] if isinstance(value, dict) else "",
)  # fmt: skip
def test_the_address_link_is_the_account_the_event_is_about(
    event: dict[str, str], account: str | None
) -> None:
    links = explorer_links(event, "https://basescan.org")
    assert links["address_url"] == (f"https://basescan.org/address/{account}" if account else None)
    assert explorer_links(event, None)["address_url"] is None


def test_the_address_link_of_every_event_names_an_account_it_has() -> None:
    """Each field address_url may use is an address field of the events."""
    assert all(FIELDS[name] is FieldKind.ADDRESS for name in EVENT_ACCOUNT_FIELDS)


def test_unknown_and_missing_placeholders_render_empty_and_unknown_ones_are_reported() -> None:
    assert render_template("[{{nope}}] [{{tag2}}]", {"tag2": None}) == "[] []"
    assert unknown_placeholders("{{agent_id}} {{nope}} {{nope}} {{ema_score}}") == ["nope"]
    assert placeholders("{{b}}{{a}}{{b}}") == ["b", "a"]


def test_values_are_never_evaluated_or_expanded_again() -> None:
    values = {"tag1": "{{agent_id}}", "agent_id": 1, "tag2": "__import__('os')"}
    assert render_template("{{tag1}} {{tag2}}", values) == "{{agent_id}} __import__('os')"


def test_escape_applies_to_values_not_to_the_template() -> None:
    escaped = render_template(
        "*{{tag1}}*", {"tag1": "a_b*"}, escape=lambda t: t.replace("_", r"\_").replace("*", r"\*")
    )
    assert escaped == r"*a\_b\**"


@given(
    st.dictionaries(st.sampled_from(["tag1", "tag2", "score"]), st.text(), max_size=3), st.text()
)
def test_text_without_placeholders_passes_through(values: dict[str, str], text: str) -> None:
    if "{{" not in text:
        assert render_template(text, values) == text


def test_formats() -> None:
    assert format_value(Decimal("1E+2")) == "100"
    assert format_value(Decimal("-123.4500")) == "-123.45"
    assert format_value(datetime(2026, 1, 2, tzinfo=UTC)) == "2026-01-02T00:00:00+00:00"
    assert format_value(b"\x01\xff") == "0x01ff"
    fields = event_fields({"agent_id": Decimal(0), "metadata_value": b"\x12",
                           "block_time": datetime(2026, 1, 1, tzinfo=UTC)})  # fmt: skip
    assert fields["agent_id"] == 0
    assert fields["metadata_value"] == "0x12"
    assert fields["timestamp"] == datetime(2026, 1, 1, tzinfo=UTC)
