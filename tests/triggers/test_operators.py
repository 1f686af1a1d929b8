"""The operator table: every operator has examples here (a new one is an entry in
operators.py and a line in EXAMPLES), refuses the kinds of field it does not apply to, and
is documented."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from erc8004_backend.triggers.conditions import (
    ConditionError,
    FieldCondition,
    evaluate_field_condition,
    parse_condition,
)
from erc8004_backend.triggers.fields import FIELDS, FieldKind
from erc8004_backend.triggers.operators import COMPARISONS, OPERATORS, THRESHOLD_OPERATORS

ROOT = Path(__file__).resolve().parents[2]
ALICE = "0x1111111111111111111111111111111111111111"
MIXED_CASE = "0xABCDEF" + "ab" * 17
# A field of each kind, for the kinds an operator refuses.
FIELD_OF_KIND = {
    FieldKind.NUMBER: "score", FieldKind.ADDRESS: "client_address", FieldKind.HASH: "file_hash",
    FieldKind.BYTES: "metadata_value", FieldKind.TEXT: "tag1", FieldKind.TIME: "timestamp",
}  # fmt: skip
MISSING = object()

# operator -> (field, the condition's value, the event's value or MISSING, whether it holds)
EXAMPLES: dict[str, list[tuple[str, str, Any, bool]]] = {
    "=": [("score", "45.0", Decimal(45), True), ("client_address", MIXED_CASE, MIXED_CASE.lower(),
          True), ("tag1", "a", "A", False), ("score", "1", MISSING, False)],
    "!=": [("score", "45", Decimal(46), True), ("tag1", "a", "a", False),
           ("score", "1", MISSING, True)],
    "<": [("score", "60", Decimal("59.99"), True), ("score", "60", 60, False),
          ("timestamp", "2026-01-01T00:00:00Z", datetime(2025, 12, 31, tzinfo=UTC), True),
          ("score", "60", MISSING, False)],
    "<=": [("score", "60", 60, True), ("score", "60", Decimal("60.01"), False)],
    ">": [("score", "-1.5", Decimal("-1.49"), True), ("timestamp", "1767225600",
          datetime(2026, 1, 1, tzinfo=UTC), False)],
    ">=": [("agent_id", str(2**256 - 1), 2**256 - 1, True), ("score", "0", -1, False)],
    "IN": [("tag1", '["a", "b"]', "b", True), ("agent_id", '[1, "2"]', 3, False),
           ("agent_id", "[1]", MISSING, False)],
    "NOT IN": [("tag1", '["a", "b"]', "c", True), ("tag1", '["a"]', "a", False),
               ("tag1", '["a"]', MISSING, True)],
    "CONTAINS": [("tag1", "fun", "refund", True), ("metadata_value", "CD", "0xabcd", True),
                 ("tag1", "Fun", "refund", False), ("tag1", "x", MISSING, False)],
    "STARTS_WITH": [("owner", "0x11", ALICE, True), ("tag1", "fun", "refund", False)],
    "IS NULL": [("file_uri", "", MISSING, True), ("file_uri", "", "", True),
                ("file_uri", "", "ipfs://x", False)],
    "IS NOT NULL": [("file_uri", "", "ipfs://x", True), ("file_uri", "", "", False),
                    ("file_uri", "", MISSING, False)],
}  # fmt: skip


def condition(field: str, operator: str, value: str) -> FieldCondition:
    parsed = parse_condition(1, {"condition_type": "field", "field": field,
                                 "operator": operator, "value": value})  # fmt: skip
    assert isinstance(parsed, FieldCondition)
    return parsed


def test_every_operator_has_examples() -> None:
    assert set(EXAMPLES) == set(OPERATORS)


@pytest.mark.parametrize(
    ("operator", "field", "value", "actual", "expected"),
    [(operator, *example) for operator, examples in EXAMPLES.items() for example in examples],
)
def test_each_operator_tests_an_event_value(
    operator: str, field: str, value: str, actual: Any, expected: bool
) -> None:
    fields = {} if actual is MISSING else {field: actual}
    assert evaluate_field_condition(condition(field, operator, value), fields) is expected


@pytest.mark.parametrize("operator", list(OPERATORS))
def test_an_operator_refuses_the_kinds_of_field_it_does_not_apply_to(operator: str) -> None:
    entry = OPERATORS[operator]
    for kind, field in FIELD_OF_KIND.items():
        assert FIELDS[field] is kind
        if kind in entry.kinds:
            continue
        with pytest.raises(ConditionError) as caught:
            condition(field, operator, "1")
        assert str(caught.value).startswith("condition 1 (field): ")
        assert field in str(caught.value)
        assert operator in str(caught.value)


def test_what_stateful_and_summary_conditions_may_compare_with() -> None:
    assert COMPARISONS == ("=", "!=", "<", "<=", ">", ">=")
    assert THRESHOLD_OPERATORS == ("<", "<=", ">", ">=")


def test_every_operator_is_documented() -> None:
    reference = (ROOT / "docs" / "triggers.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for operator in OPERATORS:
        assert f"`{operator}`" in reference, operator
        assert f"`{operator}`" in readme, operator
