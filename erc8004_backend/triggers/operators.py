"""The operators of field conditions, as one table: the field kinds each applies to, how it
reads a condition's text value, and how it tests an event's value against it.

Parsing (conditions.py, which the API's checks call), the API's schema (the operator enum)
and evaluation all read this table, so a new operator is one entry here and one example in
tests/triggers/test_operators.py (a test fails while an operator has none).
"""

from __future__ import annotations

import json
import operator as python
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from erc8004_backend.triggers.fields import FieldKind

# Makes the error that names the condition (and where in it) from a message.
Problem = Callable[[str], Exception]
# (the operator's name, the field's kind, the condition's value as stored: text, the field's
# name, problem) -> the value `test` compares with.
ValueParser = Callable[[str, FieldKind, str, str, Problem], Any]

ALL_KINDS = frozenset(FieldKind)
ORDERED_KINDS = frozenset({FieldKind.NUMBER, FieldKind.TIME})
HEX_OR_TEXT_KINDS = ALL_KINDS - {FieldKind.NUMBER}  # every kind but numbers has a text form

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HASH = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")


@dataclass(frozen=True)
class Operator:
    name: str
    kinds: frozenset[FieldKind]  # the kinds of field it applies to
    parse: ValueParser
    # (the event's value, made comparable for its kind by `comparable`; the parsed value).
    # Never called for a field the event does not have: `if_missing` answers for that.
    test: Callable[[Any, Any], bool]
    if_missing: bool
    # Why a field of another kind cannot use it; {operator}, {field} and {kind} are filled in.
    wrong_kind: str = ""
    # Compares one value with one other: the stateful conditions (an average, a count) may
    # use it. One that is also limited to ordered kinds orders, and a summary can cross it.
    compares: bool = False


def parse_value(kind: FieldKind, value: str, field_name: str, problem: Problem) -> Any:
    """A condition's text value as a value of the field's kind."""
    if kind is FieldKind.NUMBER:
        return parse_number(value, problem)
    if kind is FieldKind.ADDRESS:
        if not _ADDRESS.match(value.strip()):
            raise problem(f"{value!r} is not an address (0x and 40 hex digits) for {field_name}")
        return value.strip().lower()
    if kind is FieldKind.HASH:
        if not _HASH.match(value.strip()):
            raise problem(
                f"{value!r} is not a 32-byte hash (0x and 64 hex digits) for {field_name}"
            )
        return value.strip().lower()
    if kind is FieldKind.BYTES:
        if not _HEX.match(value.strip()):
            raise problem(f"{value!r} is not 0x-hex bytes for {field_name}")
        return value.strip().lower()
    if kind is FieldKind.TIME:
        return _parse_time(value, problem)
    return value


# Every number a field holds fits in 80 digits either side of the point (uint256 has 78):
# a condition's number beyond is refused, as its size is the user's to choose, and every
# event's comparison, payload and template would carry it.
MAX_NUMBER_DIGITS = 80


def parse_number(value: str, problem: Problem) -> Decimal:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        raise problem(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise problem(f"{value!r} is not a finite number")
    if number and not -MAX_NUMBER_DIGITS <= number.adjusted() < MAX_NUMBER_DIGITS:
        raise problem(f"{_short(value)} is out of range (at most {MAX_NUMBER_DIGITS} digits"
                      " before or after the point)")  # fmt: skip
    if len(number.as_tuple().digits) > 2 * MAX_NUMBER_DIGITS:
        raise problem(f"{_short(value)} has more than {2 * MAX_NUMBER_DIGITS} digits")
    return number


def _short(value: str) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "...'"


def _parse_time(value: str, problem: Problem) -> datetime:
    text = value.strip()
    try:
        if re.fullmatch(r"\d+", text):
            return datetime.fromtimestamp(int(text), UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise problem(f"{value!r} is not a time (ISO 8601 or Unix seconds)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse_one(name: str, kind: FieldKind, value: str, field_name: str, problem: Problem) -> Any:
    return parse_value(kind, value, field_name, problem)


def _parse_list(name: str, kind: FieldKind, value: str, field_name: str, problem: Problem) -> Any:
    try:
        items = json.loads(value)
    except ValueError:
        items = None
    if not isinstance(items, list) or not items:
        raise problem(f'{name} needs a non-empty JSON array, e.g. ["a", "b"]')
    # A set: IN and NOT IN are checked for every event, and a list may hold a thousand items.
    return frozenset(parse_value(kind, str(item), field_name, problem) for item in items)


def _parse_fragment(
    name: str, kind: FieldKind, value: str, field_name: str, problem: Problem
) -> Any:
    # Addresses, hashes and hex compare in lower case; text as it is written.
    return value if kind is FieldKind.TEXT else value.lower()


def _no_value(name: str, kind: FieldKind, value: str, field_name: str, problem: Problem) -> Any:
    return None


_CANNOT_ORDER = "{field} is {kind}, which {operator} cannot order"
_NEEDS_TEXT = "{operator} needs a text field; {field} is a {kind}"


def _contains(actual: Any, expected: Any) -> bool:
    return str(expected) in str(actual)


def _starts_with(actual: Any, expected: Any) -> bool:
    return str(actual).startswith(str(expected))


def _is_in(actual: Any, expected: Any) -> bool:
    return actual in expected


def _is_not_in(actual: Any, expected: Any) -> bool:
    return actual not in expected


# The registries store "" for an optional URI or tag that was not given: for IS [NOT] NULL an
# empty text is missing too (`file_uri_exists` means a file was named).
def _is_empty(actual: Any, expected: Any) -> bool:
    return bool(actual == "")


def _is_not_empty(actual: Any, expected: Any) -> bool:
    return bool(actual != "")


# A missing value meets only IS NULL, != and NOT IN.
OPERATORS: dict[str, Operator] = {
    entry.name: entry
    for entry in (
        Operator("=", ALL_KINDS, _parse_one, python.eq, False, compares=True),
        Operator("!=", ALL_KINDS, _parse_one, python.ne, True, compares=True),
        Operator("<", ORDERED_KINDS, _parse_one, python.lt, False, _CANNOT_ORDER, True),
        Operator("<=", ORDERED_KINDS, _parse_one, python.le, False, _CANNOT_ORDER, True),
        Operator(">", ORDERED_KINDS, _parse_one, python.gt, False, _CANNOT_ORDER, True),
        Operator(">=", ORDERED_KINDS, _parse_one, python.ge, False, _CANNOT_ORDER, True),
        Operator("IN", ALL_KINDS, _parse_list, _is_in, False),
        Operator("NOT IN", ALL_KINDS, _parse_list, _is_not_in, True),
        Operator("CONTAINS", HEX_OR_TEXT_KINDS, _parse_fragment, _contains, False, _NEEDS_TEXT),
        Operator(
            "STARTS_WITH", HEX_OR_TEXT_KINDS, _parse_fragment, _starts_with, False, _NEEDS_TEXT
        ),
        Operator("IS NULL", ALL_KINDS, _no_value, _is_empty, True),
        Operator("IS NOT NULL", ALL_KINDS, _no_value, _is_not_empty, False),
    )
}
# What a stateful condition may compare its number with, and what a summary can cross.
COMPARISONS = tuple(name for name, entry in OPERATORS.items() if entry.compares)
THRESHOLD_OPERATORS = tuple(
    name for name, entry in OPERATORS.items() if entry.compares and entry.kinds <= ORDERED_KINDS
)


def comparable(kind: FieldKind, value: Any) -> Any:
    """An event's value (not None) as the parsed values of its kind are: numbers exact,
    addresses, hashes and hex in lower case."""
    if kind is FieldKind.NUMBER:
        return value if isinstance(value, Decimal) else Decimal(value)
    if kind in (FieldKind.ADDRESS, FieldKind.HASH, FieldKind.BYTES):
        return str(value).lower()
    return value


def compare(actual: Any, operator: str, expected: Any) -> bool:
    """`actual operator expected` for one of COMPARISONS (a stateful condition's number, a
    summary)."""
    return bool(OPERATORS[operator].test(actual, expected))
