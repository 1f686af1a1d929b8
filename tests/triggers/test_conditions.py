"""Parsing and evaluating field conditions: every operator, every kind of field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from erc8004_backend.agents.lenses import Lens
from erc8004_backend.triggers.conditions import (
    ConditionError,
    EmaThreshold,
    FieldCondition,
    RateLimit,
    ReputationThreshold,
    ValidationThreshold,
    evaluate_field_condition,
    parse_condition,
    parse_conditions,
)

ALICE = "0x1111111111111111111111111111111111111111"
HASH = "0x" + "ab" * 32


def condition(field: str, operator: str, value: str = "", kind: str = "field") -> FieldCondition:
    parsed = parse_condition(1, {"condition_type": kind, "field": field, "operator": operator,
                                 "value": value})  # fmt: skip
    assert isinstance(parsed, FieldCondition)
    return parsed


def holds(field: str, operator: str, value: str, actual: Any) -> bool:
    return evaluate_field_condition(condition(field, operator, value), {field: actual})


@pytest.mark.parametrize(
    ("operator", "value", "actual", "expected"),
    [
        ("=", "42", Decimal(42), True), ("=", "42", 43, False), ("=", "42.0", 42, True),
        ("!=", "42", 43, True), ("!=", "42", 42, False),
        ("<", "60", Decimal("59.99"), True), ("<", "60", 60, False),
        ("<=", "60", 60, True), ("<=", "60", Decimal("60.01"), False),
        (">", "-1.5", Decimal("-1.49"), True), (">", "-1.5", Decimal("-1.5"), False),
        (">=", "0", 0, True), (">=", "0", -1, False),
        ("IN", "[1, 2, \"3\"]", 3, True), ("IN", "[1, 2]", 4, False),
        ("NOT IN", "[1, 2]", 4, True), ("NOT IN", "[1, 2]", 2, False),
        # uint256 agent ids compare exactly, beyond float precision
        ("=", str(2**256 - 1), 2**256 - 1, True), ("=", str(2**256 - 1), 2**256 - 2, False),
    ],
)  # fmt: skip
def test_numbers_compare_exactly(operator: str, value: str, actual: Any, expected: bool) -> None:
    assert holds("agent_id", operator, value, actual) is expected


@pytest.mark.parametrize(
    ("field", "operator", "value", "actual", "expected"),
    [
        ("client_address", "=", ALICE.upper().replace("0X", "0x"), ALICE, True),
        ("client_address", "!=", ALICE, ALICE.replace("1", "2"), True),
        ("validator_address", "IN", f'["{ALICE.upper().replace("0X", "0x")}"]', ALICE, True),
        ("validator_address", "NOT IN", f'["{ALICE}"]', ALICE, False),
        ("owner", "STARTS_WITH", "0x11", ALICE, True),
        ("file_hash", "=", HASH.upper().replace("0X", "0x"), HASH, True),
        ("metadata_value", "=", "0xABCD", "0xabcd", True),
        ("metadata_value", "CONTAINS", "CD", "0xabcd", True),
        ("tag1", "=", "refund", "refund", True), ("tag1", "=", "refund", "Refund", False),
        ("tag1", "CONTAINS", "fun", "refund", True), ("tag1", "STARTS_WITH", "ref", "refund", True),
        ("tag1", "STARTS_WITH", "fun", "refund", False),
        ("tag1", "IN", '["refund", "spam"]', "spam", True),
        ("event_type", "=", "Registered", "Registered", True),
        ("timestamp", ">", "2026-01-01T00:00:00Z", datetime(2026, 2, 1, tzinfo=UTC), True),
        ("timestamp", "<", "1767225600", datetime(2026, 2, 1, tzinfo=UTC), False),
    ],
)  # fmt: skip
def test_addresses_and_hashes_ignore_case_text_does_not(
    field: str, operator: str, value: str, actual: Any, expected: bool
) -> None:
    assert holds(field, operator, value, actual) is expected


def test_null_handling() -> None:
    assert holds("file_uri", "IS NULL", "", None)
    assert not holds("file_uri", "IS NULL", "", "ipfs://x")
    assert holds("file_uri", "IS NOT NULL", "", "ipfs://x")
    assert not holds("file_uri", "IS NOT NULL", "", None)
    # The registries store "" for a feedback without a file: no file was named.
    assert not holds("file_uri", "IS NOT NULL", "", "")
    assert holds("file_uri", "IS NULL", "", "")
    # A missing value meets only the negative comparisons.
    assert holds("score", "!=", "5", None)
    assert holds("score", "NOT IN", "[5]", None)
    for operator, value in (("=", "5"), ("<", "5"), (">", "5"), ("IN", "[5]")):
        assert not holds("score", operator, value, None)
    assert not holds("tag1", "CONTAINS", "x", None)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"condition_type": "score_threshold", "field": "score", "operator": "LIKE", "value": "1"},
         "condition 1 (score_threshold): unknown operator 'LIKE'"),
        ({"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "sixty"},
         "condition 1 (score_threshold): 'sixty' is not a number"),
        ({"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "NaN"},
         "is not a finite number"),
        ({"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=",
          "value": "1e10000000000"}, "is out of range (at most 80 digits before or after"),
        ({"condition_type": "score_threshold", "field": "score", "operator": "<",
          "value": "1e-81"}, "is out of range"),
        ({"condition_type": "score_threshold", "field": "score", "operator": "<",
          "value": "1." + "0" * 200}, "has more than 160 digits"),
        ({"condition_type": "field", "field": "agent_id", "operator": "IN",
          "value": '[1, 1e99]'}, "'1e+99' is out of range"),
        ({"condition_type": "score_threshold", "field": "colour", "operator": "=", "value": "1"},
         "unknown field 'colour'"),
        ({"condition_type": "agent_id_equals", "field": "score", "operator": "=", "value": "1"},
         "field must be agent_id, not 'score'"),
        ({"condition_type": "favourite", "field": "score", "operator": "=", "value": "1"},
         "condition 1 (favourite): unknown condition type"),
        ({"condition_type": "validator_whitelist", "field": "validator_address", "operator": "IN",
          "value": '["0x12"]'}, "'0x12' is not an address"),
        ({"condition_type": "validator_whitelist", "field": "validator_address", "operator": "IN",
          "value": "0x1111111111111111111111111111111111111111"}, "needs a non-empty JSON array"),
        ({"condition_type": "tag_equals", "field": "tag1", "operator": "<", "value": "a"},
         "tag1 is text, which < cannot order"),
        ({"condition_type": "field", "field": "score", "operator": "CONTAINS", "value": "1"},
         "CONTAINS needs a text field"),
        ({"condition_type": "field", "field": "file_hash", "operator": "=", "value": "0xab"},
         "is not a 32-byte hash"),
        ({"condition_type": "field", "field": "timestamp", "operator": ">", "value": "yesterday"},
         "is not a time"),
        ({"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "70"},
         "ema_threshold needs config.alpha or config.window_size"),
        ({"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "70",
          "config": {"alpha": 1.5}}, "alpha must be greater than 0 and at most 1"),
        ({"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "70",
          "config": {"window_size": 0}}, "window_size must be a whole number of at least 1"),
        ({"condition_type": "ema_threshold", "field": "tag1", "operator": "<", "value": "70",
          "config": {"window_size": 3}}, "'tag1' is not a numeric event field"),
        ({"condition_type": "ema_threshold", "field": "score", "operator": "IN", "value": "[1]",
          "config": {"window_size": 3}}, "operator IN does not compare numbers"),
        ({"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
          "config": {}}, "rate_limit needs config.time_window"),
        ({"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
          "config": {"time_window": "1 week"}}, "is not a duration"),
        ({"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
          "config": {"time_window": "1h", "scope": "galaxy"}}, "unknown scope 'galaxy'"),
        # More digits than Python turns into an int (4,300): refused, not a ValueError.
        ({"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
          "config": {"time_window": "9" * 5000 + "s"}}, "is not a duration"),
        ({"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
          "config": {"time_window": "367d"}}, "time_window may be at most 366 days"),
    ],
)  # fmt: skip
def test_invalid_conditions_name_the_condition_and_the_problem(
    row: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_conditions([row])
    assert message in str(caught.value)
    assert len(str(caught.value)) < 300  # names the value, does not repeat all of it


def test_positions_count_from_one_and_stateful_conditions_are_separated() -> None:
    parsed = parse_conditions([
        {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
        {"condition_type": "ema_threshold", "field": "score", "operator": "<", "value": "70",
         "config": {"window_size": 10}},
        {"condition_type": "rate_limit", "field": "feedback_count", "operator": ">", "value": "10",
         "config": {"time_window": "1h", "reset_on_trigger": True}},
    ])  # fmt: skip
    assert [c.position for c in parsed.fields] == [1]
    ema, rate = parsed.stateful
    assert isinstance(ema, EmaThreshold)
    assert ema.alpha == pytest.approx(2 / 11)
    assert ema.scope == "agent"
    assert isinstance(rate, RateLimit)
    assert (rate.window_seconds, rate.reset_on_trigger, rate.value) == (3600, True, Decimal(10))
    with pytest.raises(ConditionError, match=r"^condition 2 \(score_threshold\)"):
        parse_conditions([
            {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "1"},
            {"condition_type": "score_threshold", "field": "score", "operator": "<", "value": "x"},
        ])  # fmt: skip


# -- summary conditions ------------------------------------------------------------------------

BOB = "0x2222222222222222222222222222222222222222"


def summary_row(kind: str = "reputation_threshold", **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "condition_type": kind,
        "field": "reputation" if kind == "reputation_threshold" else "validation",
        "operator": "<",
        "value": "50",
        "config": {"clients": [ALICE]} if kind == "reputation_threshold" else {},
    }
    return {**row, **changes}


def test_summary_conditions_parse_into_their_own_group() -> None:
    parsed = parse_conditions([
        {"condition_type": "agent_id_equals", "field": "agent_id", "operator": "=", "value": "42"},
        summary_row(config={"clients": [ALICE.upper().replace("0X", "0x"), BOB, ALICE],
                            "tag1": "quality"}),
        summary_row(config={"lens": {"vote": "latest", "half_life": "30d"}}, operator=">="),
        summary_row(config={"lens_name": "auditors"}, saved_lens={"allowlist": [BOB]}),
        summary_row("validation_threshold", value="80.5",
                    config={"validators": [BOB, BOB.upper().replace("0X", "0x")], "tag": "zk"}),
    ])  # fmt: skip
    assert [c.position for c in parsed.fields] == [1]
    assert parsed.stateful == ()
    spec, inline, saved, validation = parsed.summaries
    # Lower case, a client listed twice kept twice (getSummary counts it twice).
    assert spec == ReputationThreshold(2, "<", Decimal(50), (ALICE, BOB, ALICE), "quality")
    assert isinstance(inline, ReputationThreshold)
    assert inline.lens == Lens(vote="latest", half_life="30d")
    assert isinstance(saved, ReputationThreshold)
    assert (saved.lens, saved.lens_name) == (Lens(allowlist=[BOB]), "auditors")
    # Validators are a set in the validation summary.
    assert validation == ValidationThreshold(5, "<", Decimal("80.5"), (BOB,), "zk")


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        (summary_row(operator="="), "operator", "= is not a threshold; use one of <, <=, >, >="),
        (summary_row(field="score"), "field", "must be 'reputation'"),
        (summary_row("validation_threshold", field="reputation"), "field", "must be 'validation'"),
        (summary_row(value="fifty"), "value", "'fifty' is not a number"),
        (summary_row(config={}), "config", "give one of config.clients"),
        (summary_row(config={"clients": [ALICE], "lens": {}}), "config",
         "not config.clients and config.lens; give one of"),
        (summary_row(config={"clients": []}), "config.clients", "non-empty list of addresses"),
        (summary_row(config={"clients": ALICE}), "config.clients", "non-empty list of addresses"),
        (summary_row(config={"clients": [ALICE, "0x12"]}), "config.clients[1]",
         "is not an address"),
        (summary_row(config={"clients": [ALICE] * 1001}), "config.clients", "at most 1000"),
        (summary_row(config={"clients": [ALICE], "tag1": 5}), "config.tag1", "must be a text"),
        (summary_row(config={"clients": [ALICE], "scope": "client"}), "config.scope",
         "unknown key; use clients, tag1, tag2, lens, lens_name"),
        (summary_row(config={"lens": {}, "tag2": "x"}), "config.tag2",
         "goes with config.clients; a lens has its own tag2"),
        (summary_row(config={"lens": {"half_life": "soon"}}), "config.lens.half_life",
         "must be a duration"),
        (summary_row(config={"lens": {"vote": "most"}}), "config.lens.vote", "'each'"),
        (summary_row(config={"lens_name": "auditors"}), "config.lens_name",
         "you have no saved lens named 'auditors'"),
        (summary_row(config={"lens_name": ""}), "config.lens_name",
         "must be the name of one of your saved lenses"),
        (summary_row("validation_threshold", config={"validators": "any"}), "config.validators",
         "must be a list of addresses"),
        (summary_row("validation_threshold", config={"validators": [BOB], "tag": ["a"]}),
         "config.tag", "must be a text"),
    ],
)  # fmt: skip
def test_summary_condition_problems_name_the_place_in_the_condition(
    row: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_conditions([row])
    assert caught.value.field == field
    assert str(caught.value).startswith(f"condition 1 ({row['condition_type']}): {field}: ")
    assert message in str(caught.value)
