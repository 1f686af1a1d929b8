"""The event fields that conditions compare and templates show, each with its kind.

The kind decides how a condition's text value is parsed and how it compares: numbers
exactly (Decimal), addresses and hashes case-insensitively, text as it is.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any


class FieldKind(enum.Enum):
    NUMBER = "number"
    ADDRESS = "address"
    HASH = "hash"  # 32-byte hex
    BYTES = "bytes"  # any-length hex
    TEXT = "text"
    TIME = "time"


_N, _A, _H, _B, _T = (
    FieldKind.NUMBER,
    FieldKind.ADDRESS,
    FieldKind.HASH,
    FieldKind.BYTES,
    FieldKind.TEXT,
)

FIELDS: dict[str, FieldKind] = {
    # common
    "chain_id": _N, "registry": _T, "event_type": _T, "block_number": _N, "block_hash": _H,
    "transaction_hash": _H, "log_index": _N, "timestamp": FieldKind.TIME, "agent_id": _N,
    # identity
    "owner": _A, "token_uri": _T, "metadata_key": _T, "metadata_value": _B,
    "from_address": _A, "to_address": _A, "updated_by": _A,
    # reputation
    "client_address": _A, "feedback_index": _N, "value": _N, "value_decimals": _N, "score": _N,
    "tag1": _T, "tag2": _T, "endpoint": _T, "file_uri": _T, "file_hash": _H, "responder": _A,
    "response_uri": _T, "response_hash": _H,
    # validation
    "validator_address": _A, "request_hash": _H, "request_uri": _T, "response": _N, "tag": _T,
}  # fmt: skip

# Values the engine computes, for templates only. The summaries are the agent's, just before
# and just after the event, from its summary conditions (empty: nothing counted).
SUMMARY_FIELDS = frozenset({
    "reputation_before", "reputation_after", "reputation_count",
    "validation_before", "validation_after", "validation_count",
})  # fmt: skip
# From change conditions (triggers/changes.py): the owner, agentWallet or URI just before and
# just after the event; for a URI, the registration files' difference (empty, with
# registration_pending "true", while either file is not stored yet).
CHANGE_ADDRESS_FIELDS = frozenset({"old_owner", "new_owner", "old_wallet", "new_wallet"})
CHANGE_TEXT_FIELDS = frozenset({
    "old_uri", "new_uri", "registration_pending", "services_added", "services_removed",
    "services_changed", "active_before", "active_after", "x402_before", "x402_after",
    "mcp_endpoint_before", "mcp_endpoint_after",
})  # fmt: skip
CHANGE_FIELDS = CHANGE_ADDRESS_FIELDS | CHANGE_TEXT_FIELDS
# From a silence (triggers/silence.py): when the silent period began (its last matching event,
# or the trigger's start) and the condition's duration in seconds. A silence's `timestamp` is
# when it fell due, its `event_type` "silence".
SILENCE_FIELDS = frozenset({"silent_since", "silence_seconds"})
COMPUTED_FIELDS = (
    frozenset({"ema_score", "count", "trigger_name", "trigger_id"})
    | SUMMARY_FIELDS
    | CHANGE_FIELDS
    | SILENCE_FIELDS
)
# Links to the event on its chain's block explorer, for templates only: the worker adds
# them (see explorer_links) from the chains it knows.
LINK_FIELDS = frozenset({"transaction_url", "block_url", "address_url"})
# "true" in a retraction (a job saying a reorg removed the event it was about), else "false".
RETRACTED_FIELD = "retracted"
# "true" in a replay's job (history asked for: triggers/replay.py), else "false".
REPLAY_FIELD = "replay"
# Everything a template can name, with its kind (which filters apply to it).
TEMPLATE_FIELDS: dict[str, FieldKind] = {
    **FIELDS,
    **dict.fromkeys(SUMMARY_FIELDS | {"ema_score", "count"}, _N),
    **dict.fromkeys(
        {"trigger_name", "trigger_id", RETRACTED_FIELD, REPLAY_FIELD} | LINK_FIELDS, _T
    ),
    **dict.fromkeys(CHANGE_ADDRESS_FIELDS, _A),
    **dict.fromkeys(CHANGE_TEXT_FIELDS, _T),
    "silent_since": FieldKind.TIME,
    "silence_seconds": _N,
}
# The account an event is about, besides its agent, that `{{address_url}}` links to: the
# first of these the event has. Feedback and revocations: the client; a response to
# feedback: the responder; validations: the validator; a new URI: who set it; a
# registration or a transfer: the (new) owner. MetadataSet names none.
EVENT_ACCOUNT_FIELDS = ("responder", "client_address", "validator_address", "updated_by", "owner")


# The fields that are a column of `events` by the same name (all but `timestamp`), in order.
_ROW_FIELDS = tuple(name for name in FIELDS if name != "timestamp")


def event_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a stored event (a row of `events`, by column name) as conditions and
    templates see them: `timestamp` is the block time, bytes are 0x-hex."""
    fields = {name: row.get(name) for name in _ROW_FIELDS}
    fields["timestamp"] = row.get("block_time")
    if isinstance(fields["metadata_value"], bytes | memoryview):
        fields["metadata_value"] = "0x" + bytes(fields["metadata_value"]).hex()
    return fields


def fields_to_match(row: Mapping[str, Any]) -> dict[str, Any]:
    """What conditions read of a stored event: event_fields' values under the same names,
    with the row's other columns besides (which no condition names); cheaper to make than
    event_fields, for the events that match nothing."""
    fields = dict(row)
    fields["timestamp"] = row.get("block_time")
    metadata = fields.get("metadata_value")
    if isinstance(metadata, bytes | memoryview):
        fields["metadata_value"] = "0x" + bytes(metadata).hex()
    return fields


def explorer_links(event: Mapping[str, Any], explorer_url: str | None) -> dict[str, str | None]:
    """The event's transaction, block and account (EVENT_ACCOUNT_FIELDS) on a block explorer
    (`explorer_url`: https, no trailing slash, as chain configs hold it), with the paths
    wallets use (EIP-3085: /tx/, /block/, /address/); None without an explorer or a value,
    which templates render empty."""
    transaction, block = event.get("transaction_hash"), event.get("block_number")
    account = next((event[name] for name in EVENT_ACCOUNT_FIELDS if event.get(name)), None)
    if not explorer_url:
        return dict.fromkeys(("transaction_url", "block_url", "address_url"))
    return {
        "transaction_url": f"{explorer_url}/tx/{transaction}" if transaction else None,
        "block_url": f"{explorer_url}/block/{format_value(block)}" if block is not None else None,
        "address_url": f"{explorer_url}/address/{account}" if account else None,
    }


def format_value(value: Any) -> str:
    """A field's value as text in a message: numbers without exponent, times in ISO 8601."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
