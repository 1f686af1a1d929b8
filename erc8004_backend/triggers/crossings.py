"""Summary conditions: an agent's summary before and after each event, from the read model.

`reputation_threshold` and `validation_threshold` hold for an event that moves a summary of the
agent across a threshold: from not beyond it (or no summary at all) to beyond it. They do not
hold again while the summary stays beyond; once it is back, the next crossing holds again.

How "as of an event" is computed, and why not with trigger_state
-----------------------------------------------------------------
The indexer applies the read model per batch, so when the processor evaluates event E the
model may already hold later events. Every value here is therefore the model *as of a
position* (block_number, log_index): a feedback counts from its own position, and stops
counting at the position of the revocation that revoked it; a validation request's latest
response is the latest one at or before the position. "Before" is as of just before E,
"after" as of E itself, both from the same records. The caller (summary_reads.py) reads the
records of the agents a batch touches, up to the batch's last event, in the processor's
transaction, and these pure functions compute every event's values in one sweep.

Nothing is kept in trigger_state. An incremental state per (trigger, agent) would have to
start from the summary as the trigger first sees the agent (a trigger is created long after
the agent's first feedback), would go stale while the trigger is off or other conditions hold
it back, and could not fold a revocation without the revoked feedback's value, which the
event does not carry: it would need the same reads anyway. Read as of each event instead,
the values do not depend on which events the trigger evaluated before, so a backtest over any
range (triggers/backtest.py) gives the same firings as the live processor for that range.

- The spec's summary over a client list (getSummary) is kept as running totals (the sum of
  the values scaled to 18 decimals, the count and the count of each valueDecimals), which a
  revocation takes back exactly; agents.summaries.summary_of_totals turns them into the
  contract's result.
- The validation summary keeps each request's latest response and running totals.
- A lens is not a fold (its decay depends on the time, its trust on every client's history
  across the chain): it is applied afresh to the agent's feedback as of the position, at the
  event's block time, with the clients' histories as of the position. Its cost grows with
  the agent's feedback.

What the read model cannot tell: it keeps one feedback per (agent, client, index) and one
request per request hash, the latest. No contract stores feedback or a request again under an
existing key, so this does not arise from the registries; if it did, the earlier one would
not be seen before the later one was given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

from erc8004_backend.agents.lenses import ClientHistory, FeedbackEntry, Lens, apply_lens
from erc8004_backend.agents.summaries import scaled_value, summary_of_totals
from erc8004_backend.triggers.operators import compare

Position = tuple[int, int]  # (block_number, log_index): chain order

# The events that can move each summary; other events never hold a summary condition.
REPUTATION_EVENTS = frozenset({"NewFeedback", "FeedbackRevoked"})
VALIDATION_EVENTS = frozenset({"ValidationResponse"})


@dataclass(frozen=True)
class SummaryChange:
    """A summary just before an event and just after it; None: nothing counted."""

    before: Decimal | None
    after: Decimal | None
    count: int  # what the summary counted after the event (feedback, or responded requests)


def beyond(value: Decimal | None, operator: str, threshold: Decimal) -> bool:
    """Whether a summary is beyond the threshold; no summary never is."""
    return value is not None and compare(value, operator, threshold)


def crossed(change: SummaryChange, operator: str, threshold: Decimal) -> bool:
    """Whether the event moved the summary across the threshold, into the beyond side."""
    return not beyond(change.before, operator, threshold) and beyond(
        change.after, operator, threshold
    )


# -- the spec's reputation summary ------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackRecord:
    """One feedback to the agent as the read model holds it, with where it stands in the
    chain: given at `position`, revoked at `revoked_at` (None: not revoked)."""

    client: str  # lower case
    index: int
    value: int
    value_decimals: int
    tag1: str
    tag2: str
    position: Position
    block_time: datetime
    revoked_at: Position | None = None

    def standing(self, position: Position, *, through: bool) -> tuple[bool, bool]:
        """(given, revoked) as of just before `position`, or through it."""

        def reached(at: Position) -> bool:
            return at <= position if through else at < position

        given = reached(self.position)
        return given, given and self.revoked_at is not None and reached(self.revoked_at)


class _ReputationTotals:
    """getSummary's running totals."""

    def __init__(self) -> None:
        self.total = 0
        self.count = 0
        self.decimals: Counter[int] = Counter()

    def add(self, record: FeedbackRecord, times: int) -> None:
        self.total += times * scaled_value(record.value, record.value_decimals)
        self.count += times
        self.decimals[record.value_decimals] += times

    def value(self) -> Decimal | None:
        summary = summary_of_totals(self.total, self.count, self.decimals)
        if summary.counted == 0:
            return None
        return Decimal(summary.value).scaleb(-summary.decimals)


def reputation_changes(
    records: Iterable[FeedbackRecord],
    clients: Sequence[str],
    positions: Iterable[Position],
    tag1: str = "",
    tag2: str = "",
) -> dict[Position, SummaryChange]:
    """The spec's summary over `clients` (a client listed twice counts twice; tags: empty is
    any) just before and just after each of `positions`, from the agent's feedback records."""
    listed = Counter(client.lower() for client in clients)
    steps: list[tuple[Position, int, FeedbackRecord]] = []
    for record in records:
        times = listed.get(record.client.lower(), 0)
        if not times or (tag1 and record.tag1 != tag1) or (tag2 and record.tag2 != tag2):
            continue
        steps.append((record.position, times, record))
        if record.revoked_at is not None:
            steps.append((record.revoked_at, -times, record))
    totals = _ReputationTotals()
    return _sweep(steps, positions, lambda step: totals.add(step[2], step[1]),
                  lambda: (totals.value(), totals.count))  # fmt: skip


# -- the spec's validation summary ------------------------------------------------------------


@dataclass(frozen=True)
class ResponseRecord:
    """A ValidationResponse to one of the agent's requests, at `position` (after the
    request's), with the request's validator."""

    request_hash: str
    validator: str  # lower case
    position: Position
    response: int
    tag: str


def validation_changes(
    responses: Iterable[ResponseRecord],
    validators: Sequence[str],
    positions: Iterable[Position],
    tag: str = "",
) -> dict[Position, SummaryChange]:
    """The validation summary (the average of the latest responses of the requests of
    `validators`, none: any, whose latest response's tag is `tag`, empty: any; rounded down)
    just before and just after each of `positions`."""
    listed = {validator.lower() for validator in validators}
    latest: dict[str, ResponseRecord] = {}
    totals = [0, 0]  # the sum of the counted responses, and their count

    def counted(record: ResponseRecord) -> bool:
        return (not listed or record.validator.lower() in listed) and (not tag or record.tag == tag)

    def respond(step: tuple[Position, int, ResponseRecord]) -> None:
        record = step[2]
        previous = latest.get(record.request_hash)
        if previous is not None and counted(previous):
            totals[0] -= previous.response
            totals[1] -= 1
        latest[record.request_hash] = record
        if counted(record):
            totals[0] += record.response
            totals[1] += 1

    def value() -> tuple[Decimal | None, int]:
        total, count = totals
        return (Decimal(total // count) if count else None), count

    steps = [(record.position, 1, record) for record in responses]
    return _sweep(steps, positions, respond, value)


# -- a lens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LensPoint:
    """What a lens is applied with at one event: its block time (ages are measured from it)
    and the clients' chain-wide histories just before it and through it (read only when the
    lens sets min_feedback or min_agents; by lower-case address)."""

    position: Position
    block_time: datetime
    histories_before: Mapping[str, ClientHistory]
    histories_through: Mapping[str, ClientHistory]


def lens_changes(
    lens: Lens, records: Sequence[FeedbackRecord], points: Iterable[LensPoint]
) -> dict[Position, SummaryChange]:
    """The lens's score of the agent just before and just after each point's event, both at
    the event's block time: the change is the event's, not the time's."""
    changes = {}
    for point in points:
        before = _lens_score(lens, records, point, through=False)
        after = _lens_score(lens, records, point, through=True)
        changes[point.position] = SummaryChange(before[0], after[0], after[1])
    return changes


def _lens_score(
    lens: Lens, records: Sequence[FeedbackRecord], point: LensPoint, *, through: bool
) -> tuple[Decimal | None, int]:
    entries = []
    for record in records:
        given, revoked = record.standing(point.position, through=through)
        if given:
            entries.append(FeedbackEntry(record.client.lower(), record.index, record.value,
                                         record.value_decimals, record.tag1, record.tag2,
                                         revoked, record.block_time))  # fmt: skip
    histories = point.histories_through if through else point.histories_before
    result = apply_lens(lens, entries, histories, point.block_time)
    return result.score, result.explain.counted


# -- the sweep ---------------------------------------------------------------------------------

# A change at a position: (position, how many times, the record).
Step = TypeVar("Step", tuple[Position, int, FeedbackRecord], tuple[Position, int, ResponseRecord])


def _sweep(
    steps: list[Step],
    positions: Iterable[Position],
    apply: Callable[[Step], None],
    value: Callable[[], tuple[Decimal | None, int]],
) -> dict[Position, SummaryChange]:
    """Applies `steps` (each at its position) in chain order, and reads `value` just before
    and just after each of `positions`."""
    steps.sort(key=lambda step: step[0])
    changes = {}
    next_step = 0
    for position in sorted(set(positions)):
        while next_step < len(steps) and steps[next_step][0] < position:
            apply(steps[next_step])
            next_step += 1
        before, _ = value()
        while next_step < len(steps) and steps[next_step][0] == position:
            apply(steps[next_step])
            next_step += 1
        after, count = value()
        changes[position] = SummaryChange(before, after, count)
    return changes
