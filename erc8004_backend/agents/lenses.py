"""Reputation lenses: an agent's feedback seen the way a caller chooses, with the reasons.

The spec's `getSummary` averages the non-revoked feedback of the clients it is given. A lens
goes beyond it, and says what it did:
- trusted clients: an allowlist of addresses, and/or a minimum history (at least
  `min_feedback` feedback to at least `min_agents` distinct agents, across the chain);
- one vote per client: `each` (every feedback is a vote), `latest` (a client's latest
  feedback only) or `average` (a client's feedback share one vote);
- recency decay: a feedback `age` old weighs 0.5^(age / half_life);
- tag filters (`tag1`, `tag2`; empty or absent = any, as in the spec);
- revoked feedback left out unless `include_revoked`.

Every result carries an `explain` part: how many feedback counted, how many were left out
and why (each under the first reason that applies, in the order of EXCLUSION_REASONS), and
the clients that weigh most, with their weight and value.

Arithmetic is exact: a score is value / 10^decimals; averages are computed as fractions
and rounded once, half to even, to SCORE_PLACES decimal places. Decay weights are the one
thing that cannot be exact (0.5^x is irrational). In the score, a feedback weighs
0.5^(age / half_life) with its age measured from the newest counted feedback (an average
does not change when every weight is multiplied by the same number), computed as a double,
the platform's pow, and taken exactly from there (at least 2^-1074, the smallest double, so
that however old, a feedback still weighs something). The weights `explain` shows are
measured from `now`: that weight times the newest counted feedback's own decay, to
WEIGHT_DIGITS significant digits.

Pure: no I/O. The caller reads the feedback and the clients' histories (see
FeedbackEntry and ClientHistory) and passes `now`. score_distribution, trend and activity
describe a set of feedback (all of an agent's, or the ones a lens counted).

apply_lens chooses what counts, then weighs it with weigh_votes. agents/service.py has
PostgreSQL make the same choices over an agent's feedback and count what was left out, and
gives weigh_votes only the votes, as columns (an agent's feedback can be tens of thousands;
distribution_of_scores, trend_of_scores and activity_of_counts describe them the same way).
"""

from __future__ import annotations

import bisect
import decimal
import functools
import heapq
import itertools
import math
import operator
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from erc8004_backend.errors import Erc8004Error
from erc8004_backend.triggers.conditions import duration_seconds

# Averages: the registries' values have at most 18 decimals (valueDecimals is a uint8, but
# the reference contracts scale to 18), so an average rounded there loses nothing a
# feedback could express.
SCORE_PLACES = 18
# Decay weights, and the weights and shares of the explain part: significant digits.
WEIGHT_DIGITS = 34
# Revocation and response rates: decimal places.
RATE_PLACES = 6

# Why a feedback was left out; each excluded one is counted under the first that applies.
EXCLUSION_REASONS = ("revoked", "untrusted_client", "tag_mismatch", "superseded")

MAX_ALLOWLIST = 1000
MAX_TAG_LENGTH = 1000
MAX_EXPLAIN_TOP = 100
MAX_HISTORY = 1_000_000_000
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
# What a half-life may be, said where a lens is refused.
_HALF_LIFE_FORM = 'a duration like "12h" or "30d" (a whole number above 0, then s, m, h or d)'


class LensError(Erc8004Error):
    """A lens definition that is not valid; `details` names each field and its problem."""

    def __init__(self, details: Sequence[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = list(details)


# -- the lens ---------------------------------------------------------------------------------


def _address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError("must be an address: 0x and 40 hexadecimal digits")
    return value.lower()


def _distinct(addresses: list[str]) -> list[str]:
    return list(dict.fromkeys(addresses))


def _half_life(value: str) -> str:
    if duration_seconds(value) is None:
        raise ValueError(f"must be {_HALF_LIFE_FORM}")
    return "".join(value.split())  # " 30 d" is "30d"


# Patterns in the JSON schema, for clients and the API's fuzzer; the validators say the rule.
Address = Annotated[
    str, Field(json_schema_extra={"pattern": _ADDRESS.pattern}), AfterValidator(_address)
]
HistoryMinimum = Annotated[int, Field(ge=0, le=MAX_HISTORY)]
Tag = Annotated[str, Field(max_length=MAX_TAG_LENGTH)]
HalfLife = Annotated[
    str,
    Field(max_length=32, json_schema_extra={"pattern": r"^\s*[0-9]{1,9}\s*[smhd]\s*$"}),
    AfterValidator(_half_life),
]


class Lens(BaseModel):
    """How to read an agent's feedback. Every field is optional: the empty lens counts
    every non-revoked feedback once, undecayed (the spec's average over all clients)."""

    # No unknown fields, no coercions: `true` is not 1, nor "5" a number.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        json_schema_extra={
            "examples": [{"min_feedback": 3, "min_agents": 2, "vote": "latest", "half_life": "30d"}]
        },
    )

    allowlist: (
        Annotated[list[Address], Field(min_length=1, max_length=MAX_ALLOWLIST),
                  AfterValidator(_distinct)]
        | None
    ) = Field(
        default=None,
        description="Only these clients count (addresses, any case). Absent: any client"
        " with the history below.",
    )  # fmt: skip
    min_feedback: HistoryMinimum = Field(
        default=0,
        description="A client counts only with at least this many feedback on the chain, to"
        " any agent.",
    )
    min_agents: HistoryMinimum = Field(
        default=0,
        description="A client counts only with feedback to at least this many distinct"
        " agents on the chain.",
    )
    vote: Literal["each", "latest", "average"] = Field(
        default="each",
        description="`each`: every feedback is a vote. `latest`: a client's latest feedback"
        " only. `average`: a client's feedback share one vote.",
    )
    half_life: HalfLife | None = Field(
        default=None,
        description='A feedback this old weighs half as much as a new one ("30d", "12h").'
        " Absent: no decay.",
    )
    tag1: Tag | None = Field(default=None, description="Only feedback with this tag1.")
    tag2: Tag | None = Field(default=None, description="Only feedback with this tag2.")
    include_revoked: bool = Field(default=False, description="Count revoked feedback too.")
    explain_top: Annotated[int, Field(ge=0, le=MAX_EXPLAIN_TOP)] = Field(
        default=5, description="How many of the clients that weigh most `explain` lists."
    )

    @field_validator("tag1", "tag2")
    @classmethod
    def _empty_tag_is_any(cls, value: str | None) -> str | None:
        return value or None  # as in the spec's getSummary: an empty tag matches any

    @property
    def half_life_seconds(self) -> int | None:
        return None if self.half_life is None else duration_seconds(self.half_life)

    @property
    def needs_client_history(self) -> bool:
        """Whether apply_lens reads its client_stats."""
        return self.min_feedback > 0 or self.min_agents > 0


def _location(parts: Sequence[int | str]) -> str:
    """("allowlist", 0) -> "allowlist[0]"."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def lens_problems(error: ValidationError, where: str = "") -> list[dict[str, str]]:
    """Each field of a refused lens and its problem, as the API's error details say them;
    `where` is put before each field ("lens" gives "lens.half_life")."""
    details = []
    for problem in error.errors():
        location = _location([where, *problem["loc"]] if where else problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        details.append({"field": location or where or "lens", "message": message})
    return details


def parse_lens(definition: object, where: str = "") -> Lens:
    """A Lens from its JSON form (a dict), or LensError naming each field and its problem."""
    try:
        return Lens.model_validate(definition)
    except ValidationError as error:
        raise LensError(lens_problems(error, where)) from None


# -- the feedback a lens reads ----------------------------------------------------------------


def normalized_score(value: int, value_decimals: int) -> Decimal:
    """value / 10^value_decimals, exactly (an int128 has up to 39 digits: more than a
    Decimal context's default precision, so this never divides)."""
    return Decimal(f"{value}e-{value_decimals}")


class FeedbackEntry(NamedTuple):
    """One feedback to the agent, as the read model holds it. (A named tuple: an agent's
    feedback can be tens of thousands, and a tuple is made four times faster.)"""

    client: str
    feedback_index: int  # 1-based per (agent, client)
    value: int
    value_decimals: int
    tag1: str
    tag2: str
    revoked: bool
    block_time: datetime
    response_count: int = 0

    @property
    def score(self) -> Decimal:
        return normalized_score(self.value, self.value_decimals)


class ClientHistory(NamedTuple):
    """A client's feedback across the whole chain (to every agent), as the caller counts it."""

    feedback_count: int
    distinct_agents: int


NO_HISTORY = ClientHistory(feedback_count=0, distinct_agents=0)


# -- the result -------------------------------------------------------------------------------


class CountedFeedback(NamedTuple):
    feedback: FeedbackEntry
    units: int  # its weight in the score, in units (see apply_lens)
    # Its weight as shown is units / divisor x scale: the divisor is the units' size times,
    # under `average`, the number of feedback its client's vote is shared by; the scale is
    # the newest counted feedback's decay (weights in the score are relative to it).
    divisor: int
    scale: Decimal

    @property
    def weight(self) -> Decimal:
        """Its weight as explain shows it, measured from `now`; under `average` divided by
        the number of its client's counted feedback (WEIGHT_DIGITS significant digits).
        Computed when asked: an agent's counted feedback can be tens of thousands."""
        return _WEIGHTS.multiply(round_digits(Fraction(self.units, self.divisor)), self.scale)


@dataclass(frozen=True)
class ClientContribution:
    client: str  # lower case
    feedback_counted: int
    # The sum of the weights of its counted feedback: 1 per vote undecayed, with `latest`
    # or `average` (then the mean decay weight of its feedback).
    weight: Decimal
    share: Decimal  # weight / the total weight: how much of the score is this client's
    value: Decimal  # the weighted average of its counted scores: its vote
    contribution: Decimal  # share x value; the contributions of all clients sum to the score


@dataclass(frozen=True)
class Explain:
    total: int  # feedback given to apply_lens
    counted: int
    excluded: Mapping[str, int]  # by reason: every one of EXCLUSION_REASONS, in order
    clients_counted: int
    untrusted_clients: int  # distinct clients left out as untrusted
    total_weight: Decimal
    top_clients: tuple[ClientContribution, ...]  # the `explain_top` that weigh most

    @property
    def excluded_total(self) -> int:
        return sum(self.excluded.values())


@dataclass(frozen=True)
class LensResult:
    lens: Lens
    as_of: datetime  # the `now` ages were measured from
    score: Decimal | None  # None when nothing counted
    explain: Explain
    # In the order given (apply_lens: a tuple); agents/service.py reads them only if asked.
    counted: Sequence[CountedFeedback]


# -- exact arithmetic -------------------------------------------------------------------------

# Weights shown by explain: WEIGHT_DIGITS digits, and exponents down to the smallest a
# Decimal takes, so that a feedback a million half-lives old still shows a weight.
_WEIGHTS = decimal.Context(prec=WEIGHT_DIGITS, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX)
# A weight in the score, in units of 2^-WEIGHT_SHIFT: every double from 0 to 1 is a whole
# number of them (2^-1074 is the smallest double).
WEIGHT_SHIFT = 1074
_MICROSECOND = timedelta(microseconds=1)


def round_places(value: Fraction, places: int) -> Decimal:
    """`value` rounded half to even to `places` decimal places, whatever its size."""
    scaled = round(value * 10**places)  # Fraction's round: exact, half to even
    return Decimal(f"{scaled}e-{places}")


def round_digits(value: Fraction) -> Decimal:
    """`value` rounded half to even to WEIGHT_DIGITS significant digits (a Decimal division
    is correctly rounded, and a Decimal made from an int is exact)."""
    return _WEIGHTS.divide(Decimal(value.numerator), Decimal(value.denominator))


def age_seconds(block_time: datetime, now: datetime) -> Decimal:
    """How long before `now` a feedback was given, in seconds, exactly; a feedback from
    after `now` (clocks differ) is new."""
    age = max(now - block_time, timedelta(0))
    return Decimal(f"{age // _MICROSECOND}e-6")


@functools.cache
def _ln2(digits: int) -> Decimal:
    return decimal.Context(prec=digits).ln(Decimal(2))


def decay_weight(age: Decimal, half_life_seconds: int | None) -> Decimal:
    """0.5^(age / half_life), to WEIGHT_DIGITS digits; 1 without a half-life. Computed as
    e^(-ln 2 x age / half_life): a Decimal power with a fractional exponent is five times
    slower. (Explain's weights are scaled by it once per result: per feedback it is far
    too slow, hence relative_weight.)"""
    if half_life_seconds is None or age == 0:
        return Decimal(1)
    # Digits enough for the exponent to be right well past WEIGHT_DIGITS after its point.
    digits = WEIGHT_DIGITS + 10 + max(0, age.adjusted() + 1)
    work = decimal.Context(prec=digits, Emin=decimal.MIN_EMIN, Emax=decimal.MAX_EMAX)
    exponent = work.multiply(work.divide(age, Decimal(half_life_seconds)), _ln2(digits))
    return _WEIGHTS.exp(work.minus(exponent))


def relative_weight(age_microseconds: int, half_life_microseconds: int) -> int:
    """0.5^(age / half_life) as a double, exactly, in units of 2^-WEIGHT_SHIFT: at least
    one (a weight that underflows still counts, however little)."""
    weight = 0.5 ** (age_microseconds / half_life_microseconds)
    numerator, denominator = weight.as_integer_ratio()  # denominator: a power of two
    return max(1, int(numerator << (WEIGHT_SHIFT + 1 - denominator.bit_length())))


def in_18_decimals(value: int, value_decimals: int) -> int | Fraction:
    """value / 10^value_decimals in units of 10^-18: an integer for the 0-18 decimals the
    registries take (a fraction beyond, should a contract ever emit more)."""
    if value_decimals <= 18:
        return int(value * 10 ** (18 - value_decimals))
    return Fraction(value, 10 ** (value_decimals - 18))


# -- applying a lens --------------------------------------------------------------------------


def _exclusion(
    lens: Lens, entry: FeedbackEntry, trusted: bool
) -> Literal["revoked", "untrusted_client", "tag_mismatch"] | None:
    if entry.revoked and not lens.include_revoked:
        return "revoked"
    if not trusted:
        return "untrusted_client"
    if (lens.tag1 is not None and entry.tag1 != lens.tag1) or (
        lens.tag2 is not None and entry.tag2 != lens.tag2
    ):
        return "tag_mismatch"
    return None


def is_trusted(lens: Lens, client: str, client_stats: Mapping[str, ClientHistory]) -> bool:
    """Whether `client` (lower case) passes the lens's allowlist and history minimums."""
    if lens.allowlist is not None and client not in lens.allowlist:
        return False
    if not lens.needs_client_history:
        return True
    history = client_stats.get(client, NO_HISTORY)
    return history.feedback_count >= lens.min_feedback and (
        history.distinct_agents >= lens.min_agents
    )


def apply_lens(
    lens: Lens,
    feedback: Iterable[FeedbackEntry],
    client_stats: Mapping[str, ClientHistory],
    now: datetime,
) -> LensResult:
    """The agent's score through `lens`, with its explanation. `feedback` is the agent's
    (in any order); `client_stats` holds each client's history across the chain, by lower-case
    address (only read when the lens sets min_feedback or min_agents; a client missing from
    it has none); `now` is the time ages are measured from."""
    entries = list(feedback)
    excluded = dict.fromkeys(EXCLUSION_REASONS, 0)
    untrusted: set[str] = set()
    trust: dict[str, bool] = {}
    standing: defaultdict[str, list[int]] = defaultdict(list)  # client -> positions in entries
    for position, entry in enumerate(entries):
        client = entry.client.lower()
        trusted = trust.get(client)
        if trusted is None:
            trusted = trust[client] = is_trusted(lens, client, client_stats)
        reason = _exclusion(lens, entry, trusted)
        if reason is None:
            standing[client].append(position)
        else:
            excluded[reason] += 1
            if reason == "untrusted_client":
                untrusted.add(client)

    if lens.vote == "latest":
        for client, positions in standing.items():
            latest = max(
                positions, key=lambda p: (entries[p].feedback_index, entries[p].block_time)
            )
            excluded["superseded"] += len(positions) - 1
            standing[client] = [latest]

    order = [(client, p) for client, positions in standing.items() for p in positions]
    votes = Votes(
        clients=[client for client, _ in order],
        scores18=[in_18_decimals(entries[p].value, entries[p].value_decimals) for _, p in order],
        microseconds=[epoch_microseconds(entries[p].block_time) for _, p in order],
    )
    weighed = weigh_votes(lens, votes, now)
    # Each counted feedback with its weight, in the order given.
    placed = sorted((p, n) for n, (_, p) in enumerate(order))
    counted = tuple(
        CountedFeedback(entries[p], *weighed.weight_of(n), weighed.newest_decay) for p, n in placed
    )
    return lens_result(lens, now, weighed, len(entries), excluded, len(untrusted), counted)


@dataclass(frozen=True)
class Votes:
    """The feedback a lens counts, as weigh_votes reads it: a column per field, the n-th
    vote's in the n-th place of each (an agent's votes can be tens of thousands)."""

    clients: Sequence[str]  # lower case
    scores18: Sequence[int | Fraction]  # normalized scores in units of 10^-18 (in_18_decimals)
    microseconds: Sequence[int]  # block times in microseconds since the epoch

    def __len__(self) -> int:
        return len(self.clients)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The lightest weight the fast path of weigh_votes takes: weights from 1 down to it are whole
# numbers once multiplied by 2^(53 - its exponent), which stays below 2^1024 (a double).
_LIGHTEST_SCALED = 2.0**-970


def epoch_microseconds(time: datetime) -> int:
    """`time` in microseconds since the Unix epoch (exact: a datetime holds microseconds)."""
    return (time - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class Weighed:
    """What weigh_votes makes of the votes: the score and the explanation's weights."""

    score: Decimal | None  # None when nothing counted
    clients_counted: int
    total_weight: Decimal  # as explain shows it
    top_clients: tuple[ClientContribution, ...]
    newest_decay: Decimal  # the newest counted feedback's decay (CountedFeedback's scale)
    # Each vote's weight in units of 2^-(WEIGHT_SHIFT - unit_shift) (all 1 without decay).
    scaled_units: Sequence[int]
    unit_shift: int
    shift: int  # the units' size: 2^-shift
    clients: Sequence[str]  # each vote's client
    sharing: Mapping[str, int]  # under `average`, each client's votes (else none: one)

    def weight_of(self, vote: int) -> tuple[int, int]:
        """The `vote`-th vote's units and divisor, as CountedFeedback holds them."""
        sharing = self.sharing.get(self.clients[vote], 1)
        return self.scaled_units[vote] << self.unit_shift, sharing << self.shift


def weigh_votes(lens: Lens, votes: Votes, now: datetime) -> Weighed:
    """The score and weights of the feedback a lens counted: `votes` are the counted
    feedback, already chosen (trusted, not left out, and the latest one of each client under
    `latest`), in any order. apply_lens chooses them in Python; agents/service.py has
    PostgreSQL choose them and reads only these."""
    # Weights in units of 2^-shift, relative to the newest counted feedback; scores in units
    # of 10^-18: every sum below is an exact integer.
    half_life = lens.half_life_seconds
    now_micros = epoch_microseconds(now)
    # (A feedback from after `now`, clocks differ, is as new as `now`.)
    newest_micros = min(now_micros, max(votes.microseconds, default=now_micros))
    newest = _EPOCH + timedelta(microseconds=newest_micros)
    shift = 0 if half_life is None else WEIGHT_SHIFT
    # Explain shows weights measured from `now`: in units, times this.
    newest_decay = decay_weight(age_seconds(newest, now), half_life)
    scaled, unit_shift = _scaled_weights(votes.microseconds, newest_micros, half_life)
    weighted = list(map(operator.mul, scaled, votes.scores18))
    average = lens.vote == "average"

    # Per client: (feedback counted, sharing, the sums of its scaled weights and weighted
    # scores), and the totals of those by how many feedback share a vote.
    totals: defaultdict[int, list[Any]] = defaultdict(lambda: [0, 0])
    sharing: dict[str, int] = {}  # the clients whose vote is shared, under `average`
    if len(set(votes.clients)) == len(votes):
        # One vote per client (always so under `latest`): each is its client's, shared by
        # none; only the heaviest need a record.
        totals[1] = [sum(scaled), sum(weighted)]
        clients_counted = len(votes)
        by_heaviness = zip(map(operator.neg, scaled), votes.clients, range(len(votes)),
                           strict=True)  # fmt: skip
        heaviest = heapq.nsmallest(lens.explain_top, by_heaviness)
        top_votes = [(client, _Client(1, 1, scaled[n], weighted[n])) for _, client, n in heaviest]
    else:
        sums: dict[str, list[Any]] = {}
        for client, units, score in zip(votes.clients, scaled, weighted, strict=True):
            client_sums = sums.get(client)
            if client_sums is None:
                sums[client] = [1, units, score]
            else:
                client_sums[0] += 1
                client_sums[1] += units
                client_sums[2] += score
        clients: dict[str, _Client] = {}
        for client, (feedback_counted, weight, score) in sums.items():
            # Under `average` a client's feedback share its one vote.
            shared_by = feedback_counted if average else 1
            if shared_by != 1:
                sharing[client] = shared_by
            clients[client] = _Client(feedback_counted, shared_by, weight, score)
            totals[shared_by][0] += weight
            totals[shared_by][1] += score
        clients_counted = len(clients)
        top_votes = heapq.nsmallest(lens.explain_top, clients.items(), key=_heaviness)

    # Exact, in units: the scaled sums times 2^unit_shift.
    total_weight = sum(
        (Fraction(w << unit_shift, shared_by) for shared_by, (w, _) in totals.items()),
        Fraction(0),
    )
    total_weighted = sum(
        (Fraction(x * (1 << unit_shift), shared_by * 10**18)
         for shared_by, (_, x) in totals.items()),
        Fraction(0),
    )  # fmt: skip
    score = round_places(total_weighted / total_weight, SCORE_PLACES) if clients_counted else None

    def shown(weight: Fraction) -> Decimal:
        """A weight in units as explain shows it: measured from `now`."""
        return _WEIGHTS.multiply(round_digits(weight / (1 << shift)), newest_decay)

    top = []
    for client, scaled_votes in top_votes:
        # Its sums in units (the scaled ones times 2^unit_shift).
        own = _Client(scaled_votes.feedback_counted, scaled_votes.sharing,
                      scaled_votes.weight << unit_shift,
                      scaled_votes.weighted * (1 << unit_shift))  # fmt: skip
        top.append(ClientContribution(
            client=client,
            feedback_counted=own.feedback_counted,
            weight=shown(Fraction(own.weight, own.sharing)),
            share=round_digits(Fraction(own.weight, own.sharing) / total_weight),
            value=round_places(Fraction(own.weighted, own.weight * 10**18), SCORE_PLACES),
            contribution=round_places(
                Fraction(own.weighted, own.sharing * 10**18) / total_weight, SCORE_PLACES
            ),
        ))  # fmt: skip
    return Weighed(
        score=score,
        clients_counted=clients_counted,
        total_weight=shown(total_weight) if clients_counted else Decimal(0),
        top_clients=tuple(top),
        newest_decay=newest_decay,
        scaled_units=scaled,
        unit_shift=unit_shift,
        shift=shift,
        clients=votes.clients,
        sharing=sharing,
    )


def _heaviness(item: tuple[str, _Client]) -> tuple[Fraction | int, str]:
    """The order of explain's top clients: the heaviest first, then by address. (Scaled
    weights order the clients as their weights in units do.)"""
    client, votes = item
    weight = votes.weight if votes.sharing == 1 else Fraction(votes.weight, votes.sharing)
    return -weight, client


def _scaled_weights(
    times: Sequence[int], newest_micros: int, half_life: int | None
) -> tuple[list[int], int]:
    """Each vote's weight in units (relative_weight: 0.5^(age / half_life) as a double,
    times 2^WEIGHT_SHIFT), divided by a common 2^unit_shift so that the integers stay small:
    (the scaled weights, unit_shift). Without a half-life every weight is one."""
    if half_life is None:
        return [1] * len(times), 0
    half_life_micros = half_life * 1_000_000
    # The double relative_weight computes, for each vote (a feedback from after the newest
    # one, clocks differ, is as new).
    if max(times, default=newest_micros) <= newest_micros:
        doubles = [0.5 ** ((newest_micros - time) / half_life_micros) for time in times]
    else:
        doubles = [0.5 ** (max(newest_micros - time, 0) / half_life_micros) for time in times]
    lightest = min(doubles, default=1.0)
    if lightest < _LIGHTEST_SCALED:
        # Weights that small (or zero: at least one unit) are taken one at a time.
        ages = [max(newest_micros - time, 0) for time in times]
        return [relative_weight(age, half_life_micros) for age in ages], 0
    # A double w >= lightest is a whole multiple of 2^(exponent of lightest - 53): w times
    # 2^(53 - that exponent) is an exact integer, and is the weight in units divided by
    # 2^(WEIGHT_SHIFT - 53 + that exponent).
    exponent = math.frexp(lightest)[1]
    scale = math.ldexp(1.0, 53 - exponent)
    return [int(weight * scale) for weight in doubles], WEIGHT_SHIFT - 53 + exponent


def lens_result(
    lens: Lens,
    now: datetime,
    weighed: Weighed,
    total: int,
    excluded: Mapping[str, int],
    untrusted_clients: int,
    counted: Sequence[CountedFeedback],
    counted_total: int | None = None,
) -> LensResult:
    """The LensResult of weighed votes, with the counts of what was left out: `total`
    feedback given, `excluded` by reason (every one of EXCLUSION_REASONS), the distinct
    clients left out as untrusted, and the counted feedback (or none, when the caller did
    not read them, and `counted_total` says how many there are)."""
    explain = Explain(
        total=total,
        counted=len(counted) if counted_total is None else counted_total,
        excluded=excluded,
        clients_counted=weighed.clients_counted,
        untrusted_clients=untrusted_clients,
        total_weight=weighed.total_weight,
        top_clients=weighed.top_clients,
    )
    return LensResult(lens=lens, as_of=now, score=weighed.score, explain=explain, counted=counted)


@dataclass(frozen=True)
class _Client:
    """A counted client's vote, as apply_lens adds it up."""

    feedback_counted: int
    sharing: int  # how many feedback share its vote (under `average`), else 1
    # Exact, times sharing: the sum of its weights in units (see apply_lens), and of its
    # weights x scores in units of 10^-18.
    weight: int
    weighted: int | Fraction


# -- describing a set of feedback -------------------------------------------------------------

DEFAULT_EDGES = tuple(Decimal(edge) for edge in range(0, 101, 10))


@dataclass(frozen=True)
class ScoreBucket:
    """Scores from `low` (included) to `high` (excluded, but included in the last closed
    bucket); None is no bound: the buckets below the first edge and above the last."""

    low: Decimal | None
    high: Decimal | None
    count: int


def score_distribution(
    feedback: Iterable[FeedbackEntry], edges: Sequence[Decimal] = DEFAULT_EDGES
) -> tuple[ScoreBucket, ...]:
    """A histogram of normalized scores over the buckets `edges` bounds (by default 0-10,
    10-20, ..., 90-100, with 100 in the last), plus one below the first edge and one above
    the last, always present (empty or not)."""
    return distribution_of_scores(
        (in_18_decimals(entry.value, entry.value_decimals) for entry in feedback), edges
    )


def distribution_of_scores(
    scores18: Iterable[int | Fraction], edges: Sequence[Decimal] = DEFAULT_EDGES
) -> tuple[ScoreBucket, ...]:
    """score_distribution of normalized scores given in units of 10^-18 (in_18_decimals)."""
    if len(edges) < 2 or any(low >= high for low, high in itertools.pairwise(edges)):
        raise ValueError("edges must be at least two numbers, in increasing order")
    counts = [0] * (len(edges) + 1)  # below, each closed bucket, above
    first, last = edges[0], edges[-1]
    # Compared in units of 10^-18, as integers where they can be: exact, and far cheaper
    # than a Decimal per feedback.
    bounds18 = [_edge_in_18_decimals(edge) for edge in edges]
    scores = list(scores18)
    for position, count in Counter(map(functools.partial(bisect.bisect_right, bounds18),
                                       scores)).items():  # fmt: skip
        counts[position] += count
    # The scores on the last edge were put above it: the last closed bucket holds its upper
    # edge.
    on_last = scores.count(bounds18[-1])
    counts[-1] -= on_last
    counts[-2] += on_last
    bounds: list[tuple[Decimal | None, Decimal | None]] = [
        (None, first),
        *itertools.pairwise(edges),
        (last, None),
    ]
    return tuple(
        ScoreBucket(low, high, count) for (low, high), count in zip(bounds, counts, strict=True)
    )


def _edge_in_18_decimals(edge: Decimal) -> int | Fraction:
    scaled = Fraction(edge) * 10**18
    return scaled.numerator if scaled.denominator == 1 else scaled


# TimescaleDB's time_bucket origin (a Monday, so weekly buckets start on Mondays). SQL gives
# the same buckets with date_bin(stride, block_time, TREND_ORIGIN).
TREND_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)


@dataclass(frozen=True)
class TrendBucket:
    start: datetime
    end: datetime
    count: int
    average: Decimal  # of the normalized scores, exact then rounded to SCORE_PLACES


def bucket_start(time: datetime, width: timedelta, origin: datetime = TREND_ORIGIN) -> datetime:
    """The start of the bucket of `time`: what date_bin(width, time, origin) gives."""
    return origin + ((time - origin) // width) * width


def trend(
    feedback: Iterable[FeedbackEntry], width: timedelta, origin: datetime = TREND_ORIGIN
) -> tuple[TrendBucket, ...]:
    """Feedback counts and average scores per time bucket of `width`, oldest first; only
    buckets with feedback, as GROUP BY date_bin(...) gives them."""
    entries = list(feedback)
    return trend_of_scores(
        [in_18_decimals(entry.value, entry.value_decimals) for entry in entries],
        [epoch_microseconds(entry.block_time) for entry in entries],
        width, origin,
    )  # fmt: skip


def trend_of_scores(
    scores18: Sequence[int | Fraction],
    microseconds: Sequence[int],
    width: timedelta,
    origin: datetime = TREND_ORIGIN,
) -> tuple[TrendBucket, ...]:
    """trend of feedback given as columns: scores in units of 10^-18 and block times in
    microseconds since the epoch, the n-th of each a feedback's. A bucket's number is
    floor((time - origin) / width), in microseconds, as it is in datetimes."""
    if width <= timedelta(0):
        raise ValueError("a trend's bucket width must be positive")
    width_micros = width // _MICROSECOND
    origin_micros = epoch_microseconds(origin)
    # Scores summed as integers in units of 10^-18 (the spec's 18 decimals): exact, and far
    # cheaper than a Fraction per feedback (an agent's trend sums every feedback it has).
    numbers = [(micros - origin_micros) // width_micros for micros in microseconds]
    counts = Counter(numbers)  # by bucket number
    sums: dict[int, int | Fraction] = dict.fromkeys(counts, 0)
    for number, score18 in zip(numbers, scores18, strict=True):
        sums[number] += score18
    return tuple(
        TrendBucket(origin + number * width, origin + (number + 1) * width, counts[number],
                    round_places(Fraction(sums[number], counts[number] * 10**18), SCORE_PLACES))
        for number in sorted(counts)
    )  # fmt: skip


@dataclass(frozen=True)
class Activity:
    feedback_count: int
    distinct_clients: int
    revoked_count: int
    responded_count: int  # feedback with at least one response
    revocation_rate: Decimal | None  # revoked / all, RATE_PLACES places; None without feedback
    response_rate: Decimal | None  # responded / all


def activity(feedback: Iterable[FeedbackEntry]) -> Activity:
    """Counts and rates of a set of feedback (revoked ones included: they are the point of
    the revocation rate)."""
    entries = list(feedback)
    return activity_of_counts(
        feedback_count=len(entries),
        distinct_clients=len({entry.client.lower() for entry in entries}),
        revoked_count=sum(1 for entry in entries if entry.revoked),
        responded_count=sum(1 for entry in entries if entry.response_count > 0),
    )


def activity_of_counts(
    feedback_count: int, distinct_clients: int, revoked_count: int, responded_count: int
) -> Activity:
    """The Activity of feedback counted elsewhere (agents/service.py counts in PostgreSQL)."""

    def rate(part: int) -> Decimal | None:
        return round_places(Fraction(part, feedback_count), RATE_PLACES) if feedback_count else None

    return Activity(
        feedback_count=feedback_count,
        distinct_clients=distinct_clients,
        revoked_count=revoked_count,
        responded_count=responded_count,
        revocation_rate=rate(revoked_count),
        response_rate=rate(responded_count),
    )
