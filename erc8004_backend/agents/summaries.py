"""The ERC-8004 spec's summaries, computed exactly as the reference contracts compute them.

The reference implementation, deployed on mainnets, answers three aggregate reads; these pure
functions give the same numbers from plain records, digit for digit:

- `reputation_summary`: ReputationRegistry.getSummary(agentId, clientAddresses, tag1, tag2)
- `read_all_feedback`: ReputationRegistry.readAllFeedback(agentId, clientAddresses, tag1, tag2,
  includeRevoked)
- `validation_summary`: ValidationRegistry.getSummary(agentId, validatorAddresses, tag)

`summary_of_totals` gives getSummary's result from running totals, for callers that keep
them as feedback comes and goes (the trigger engine's reputation_threshold).

Each takes one agent's records. An empty tag filter matches any tag; a non-empty one matches
equal strings only (the contracts compare the bytes' keccak256). Addresses are compared as
given: pass them spelled as the read model stores them.

Integer arithmetic only: Solidity's signed division truncates toward zero where Python's `//`
floors, and its int256 -> int128 conversion drops the high bits instead of failing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

INT128_MIN = -(2**127)
INT128_MAX = 2**127 - 1
# The contracts refuse feedback with more decimals (the summary scales each value to 18).
MAX_VALUE_DECIMALS = 18
UINT8_MAX = 255


@dataclass(frozen=True)
class Feedback:
    """One feedback to one agent, as the reputation registry stores it.

    `index` is the client's feedback index for this agent (1, 2, ...); the number is
    `value` / 10^`value_decimals`.
    """

    client: str
    index: int
    value: int
    value_decimals: int
    tag1: str = ""
    tag2: str = ""
    revoked: bool = False

    def __post_init__(self) -> None:
        if self.index < 1:
            raise ValueError(f"feedback index {self.index}: indexes start at 1")
        if not INT128_MIN <= self.value <= INT128_MAX:
            raise ValueError(f"feedback value {self.value} is out of the int128 range")
        if not 0 <= self.value_decimals <= MAX_VALUE_DECIMALS:
            raise ValueError(
                f"feedback valueDecimals {self.value_decimals}: the registry takes 0 to"
                f" {MAX_VALUE_DECIMALS}"
            )


@dataclass(frozen=True)
class Validation:
    """One validation request of one agent, with its latest response (None: no response yet)
    and that response's tag."""

    validator: str
    response: int | None = None
    tag: str = ""

    def __post_init__(self) -> None:
        if self.response is not None and not 0 <= self.response <= UINT8_MAX:
            raise ValueError(f"validation response {self.response} is not a uint8")


class ReputationSummary(NamedTuple):
    """getSummary's (count, summaryValue, summaryValueDecimals)."""

    counted: int  # (not `count`: a tuple's method)
    value: int
    decimals: int


class ValidationSummary(NamedTuple):
    """The validation getSummary's (count, avgResponse)."""

    counted: int
    average: int


def reputation_summary(
    feedback: Iterable[Feedback], clients: Sequence[str], tag1: str = "", tag2: str = ""
) -> ReputationSummary:
    """getSummary over one agent's `feedback`: the non-revoked feedback of the listed
    `clients` (a client listed twice counts twice, as in the contract) whose tags match.

    Each value is scaled to 18 decimals; their sum is divided by the count, then by
    10^(18 - m), both truncating toward zero, where m is the most frequent valueDecimals
    among the counted feedback (the smallest on a tie); the result is m decimals, cut to
    int128 as Solidity's conversion does. No such feedback: (0, 0, 0).

    Raises ValueError when `clients` is empty: the contract reverts ("clientAddresses
    required"), since a summary over every client is open to Sybil feedback.
    """
    if not clients:
        raise ValueError(
            "clientAddresses required: the summary is over the feedback of listed clients"
            " (getSummary reverts on an empty list)"
        )
    by_client = _by_client(feedback)
    total = count = 0
    decimal_counts: Counter[int] = Counter()
    for client in clients:
        for item in by_client.get(client, ()):
            if item.revoked or not _tags_match(item, tag1, tag2):
                continue
            total += scaled_value(item.value, item.value_decimals)
            decimal_counts[item.value_decimals] += 1
            count += 1
    return summary_of_totals(total, count, decimal_counts)


def scaled_value(value: int, value_decimals: int) -> int:
    """A feedback value scaled to 18 decimals, as getSummary adds them up."""
    scale: int = 10 ** (MAX_VALUE_DECIMALS - value_decimals)
    return value * scale


def summary_of_totals(
    total: int, count: int, decimal_counts: Mapping[int, int]
) -> ReputationSummary:
    """getSummary's result from its running totals: `total` the sum of the counted values
    scaled to 18 decimals (scaled_value), `count` how many were counted, `decimal_counts`
    how many of them have each valueDecimals (zero counts are ignored). For callers that keep
    the totals as feedback comes and goes instead of passing every feedback again."""
    if count == 0:
        return ReputationSummary(0, 0, 0)
    present = [d for d, n in decimal_counts.items() if n > 0]
    decimals = min(present, key=lambda d: (-decimal_counts[d], d))
    average = _divide_toward_zero(total, count)
    value = _to_int128(_divide_toward_zero(average, 10 ** (MAX_VALUE_DECIMALS - decimals)))
    return ReputationSummary(count, value, decimals)


def read_all_feedback(
    feedback: Iterable[Feedback],
    client_order: Sequence[str],
    clients: Sequence[str] = (),
    tag1: str = "",
    tag2: str = "",
    include_revoked: bool = False,
) -> list[Feedback]:
    """readAllFeedback over one agent's `feedback`, as the records its parallel arrays hold.

    `client_order` is the agent's clients in the order of their first feedback to it (the
    contract's getClients; `clients_by_first_feedback` derives it). The listed `clients`
    (none: all, in that order; a client listed twice comes twice), each one's feedback by
    index, whose tags match; revoked feedback only with `include_revoked`.
    """
    by_client = _by_client(feedback)
    if len(set(client_order)) != len(client_order) or not set(by_client) <= set(client_order):
        raise ValueError("client_order must name each client of the feedback once")
    return [
        item
        for client in (clients or client_order)
        for item in by_client.get(client, ())
        if (include_revoked or not item.revoked) and _tags_match(item, tag1, tag2)
    ]


def clients_by_first_feedback(feedback_in_chain_order: Iterable[Feedback]) -> tuple[str, ...]:
    """The clients of one agent's feedback, given in chain order, by their first feedback:
    the order of the contract's getClients."""
    return tuple(dict.fromkeys(item.client for item in feedback_in_chain_order))


def validation_summary(
    validations: Iterable[Validation], validators: Collection[str] = (), tag: str = ""
) -> ValidationSummary:
    """The validation getSummary over one agent's requests: those with a response, from one
    of the `validators` (none: any; a validator listed twice still counts once) whose latest
    response's tag matches. The average of their latest responses, rounded down (responses
    are unsigned); no such request: (0, 0)."""
    listed = set(validators)
    total = count = 0
    for request in validations:
        if request.response is None or (listed and request.validator not in listed):
            continue
        if tag and request.tag != tag:
            continue
        total += request.response
        count += 1
    return ValidationSummary(count, total // count if count else 0)


def _by_client(feedback: Iterable[Feedback]) -> dict[str, list[Feedback]]:
    """Each client's feedback by index; a repeated (client, index) is an error."""
    by_client: dict[str, list[Feedback]] = {}
    for item in feedback:
        by_client.setdefault(item.client, []).append(item)
    for client, items in by_client.items():
        items.sort(key=lambda item: item.index)
        if len({item.index for item in items}) != len(items):
            raise ValueError(f"client {client} has two feedback records with the same index")
    return by_client


def _tags_match(item: Feedback, tag1: str, tag2: str) -> bool:
    return (not tag1 or item.tag1 == tag1) and (not tag2 or item.tag2 == tag2)


def _divide_toward_zero(numerator: int, denominator: int) -> int:
    """Solidity's signed division (`//` floors: -3 // 2 is -2, Solidity's -3 / 2 is -1)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator < 0) == (denominator < 0) else -quotient


def _to_int128(value: int) -> int:
    """Solidity's `int128(x)` of an int256: the low 128 bits, as two's complement."""
    return (value + 2**127) % 2**128 - 2**127
