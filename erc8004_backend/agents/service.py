"""Answers about agents: the one place the REST API, the MCP server and trigger conditions
ask, so that they all say the same thing.

Every function takes an async connection (any row factory: each query sets its own) and
returns frozen records. Reads go to the read model (migration 20, through agents/read.py
where it has the query) and to the counts migration 23 keeps beside it; the spec's
summaries and the lenses are computed by the pure agents/summaries.py and agents/lenses.py
over what is read here.

- search_agents: agents filtered and sorted, in keyset pages (`cursor`);
- get_agent: one agent's profile and counts;
- agent_reputation: the spec's getSummary, digit for digit;
- agent_lens_reputation: a lens's score with its explanation, and the score distribution,
  trend and activity of the agent's feedback;
- list_feedback, list_validations, validation_summary, agent_history.

A per-agent function raises AgentNotFoundError for an agent no event names, and
AgentQueryError (naming the parameter) for input the contracts or the pages refuse.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import operator
import struct
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from typing import Any, Literal, get_args, overload

import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

from erc8004_backend.agents import read, summaries
from erc8004_backend.agents.lenses import (
    DEFAULT_EDGES,
    EXCLUSION_REASONS,
    Activity,
    ClientHistory,
    CountedFeedback,
    FeedbackEntry,
    Lens,
    LensResult,
    ScoreBucket,
    TrendBucket,
    Votes,
    Weighed,
    activity_of_counts,
    distribution_of_scores,
    in_18_decimals,
    lens_result,
    trend_of_scores,
    weigh_votes,
)
from erc8004_backend.agents.read import AgentProfile, Feedback, Response, ValidationRequest
from erc8004_backend.database.queries import compose, load_queries
from erc8004_backend.errors import Erc8004Error

_QUERIES = load_queries("erc8004_backend.agents", "service.sql")

AgentSort = Literal["newest", "last_activity", "feedback_count", "lens"]
AGENT_SORTS: tuple[str, ...] = get_args(AgentSort)

# A lens score is weighed in Python from every vote of an agent (lenses.weigh_votes, about
# a microsecond per vote, more with a half-life), so sorting by one cannot read
# every agent. It ranks a candidate set: the agents that match the filters with the most
# feedback (not revoked), at most LENS_SORT_CANDIDATES of them and no more once they hold
# LENS_SORT_MAX_FEEDBACK feedback together (always at least one). The page says how many
# were ranked and whether they were all the agents the filters match.
LENS_SORT_CANDIDATES = 50
LENS_SORT_MAX_FEEDBACK = 1000

# A feedback page shows at most this many responses of each feedback (its response_count
# says how many there are): anyone may respond, as often as they like.
RESPONSES_PER_FEEDBACK = 20

DEFAULT_TREND_WIDTH = timedelta(days=7)


class AgentNotFoundError(Erc8004Error):
    """No event of the chain names the agent."""

    def __init__(self, chain_id: int, agent_id: int) -> None:
        super().__init__(f"agent {agent_id} of chain {chain_id} not found")
        self.chain_id = chain_id
        self.agent_id = agent_id


class AgentQueryError(Erc8004Error):
    """Input refused: `field` names the parameter, `problem` says what is wrong with it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# -- cursors ----------------------------------------------------------------------------------
# A cursor is the last item's sort key, opaque to callers: base64url of a JSON list that
# starts with what it pages ("newest", "feedback", ...), so that one page's cursor is never
# taken for another's.


def encode_cursor(kind: str, *key: object) -> str:
    parts = [kind, *(item.isoformat() if isinstance(item, datetime) else str(item)
                     for item in key)]  # fmt: skip
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def decode_cursor(cursor: str, kind: str, *types: Callable[[str], Any]) -> list[Any]:
    """The key a cursor of `kind` holds, each part parsed by its type; AgentQueryError
    naming `cursor` when it is not such a cursor."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        if not isinstance(parts, list) or len(parts) != len(types) + 1 or parts[0] != kind:
            raise ValueError(cursor)
        if not all(isinstance(part, str) for part in parts):
            raise ValueError(cursor)
        return [parse(part) for parse, part in zip(types, parts[1:], strict=True)]
    except (ValueError, UnicodeError, binascii.Error, TypeError):
        raise AgentQueryError(
            "cursor", "not a cursor from this listing (use next_cursor as given)"
        ) from None


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError(text)
    return value


def _whole(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return parse


_BIGINT = _whole(0, 2**63 - 1)
_INT = _whole(0, 2**31 - 1)
_UINT256 = _whole(0, 2**256 - 1)
_UINT64 = _whole(0, 2**64 - 1)


# -- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentQuery:
    """What search_agents selects and how it orders them (None: any)."""

    chain_id: int | None = None
    owner: str | None = None
    wallet: str | None = None
    has_mcp: bool | None = None  # the registration file names an MCP endpoint
    has_a2a: bool | None = None  # ... an A2A endpoint
    active: bool | None = None  # the file's `active` is this (absent matches neither)
    x402: bool | None = None  # the file's `x402Support` is this
    text: str | None = None  # in the file's name or description, any case
    min_feedback: int | None = None  # at least this many feedback, not revoked
    sort: AgentSort = "newest"
    lens: Lens | None = None  # for sort="lens"
    now: datetime | None = None  # for sort="lens": the time ages are measured from
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class AgentSummary:
    """An agent as a listing shows it."""

    chain_id: int
    agent_id: int
    owner: str | None
    agent_wallet: str | None
    agent_uri: str | None
    registered_at: datetime | None
    first_at: datetime
    last_at: datetime
    registration_status: str | None  # pending, fetched, failed; None: no row for the URI
    name: str | None
    description: str | None
    image: str | None
    mcp_endpoint: str | None
    a2a_endpoint: str | None
    active: bool | None
    x402_support: bool | None
    feedback_count: int  # not revoked
    revoked_count: int
    client_count: int
    lens_score: Decimal | None = None  # sort="lens" only; None: nothing counted


@dataclass(frozen=True)
class AgentPage:
    items: tuple[AgentSummary, ...]
    next_cursor: str | None
    # sort="lens": how many agents were ranked, and whether they were every agent the
    # filters match (see LENS_SORT_CANDIDATES). None for the other sorts.
    lens_candidates: int | None = None
    lens_candidates_complete: bool | None = None


@dataclass(frozen=True)
class AgentStats:
    feedback_count: int  # not revoked
    revoked_count: int
    client_count: int
    validation_count: int


@dataclass(frozen=True)
class AgentDetail:
    profile: AgentProfile
    stats: AgentStats


@dataclass(frozen=True)
class SpecSummary:
    """ReputationRegistry.getSummary's answer, and what it was asked."""

    clients: tuple[str, ...]  # lower case, as given (a repeated client counts twice)
    tag1: str
    tag2: str
    count: int
    value: int  # summaryValue: fixed point with `decimals` decimals
    decimals: int

    @property
    def value_decimal(self) -> Decimal:
        """value / 10^decimals, exactly."""
        return Decimal(f"{self.value}e-{self.decimals}")


@dataclass(frozen=True)
class LensReport:
    result: LensResult  # the score, with `explain` and the counted feedback
    distribution: tuple[ScoreBucket, ...]  # of the counted feedback's normalized scores
    trend: tuple[TrendBucket, ...]  # of the counted feedback, per trend_width, oldest first
    trend_width: timedelta
    activity: Activity  # of every feedback of the agent, revoked included


@dataclass(frozen=True)
class FeedbackItem:
    feedback: Feedback
    responses: tuple[Response, ...]  # the first RESPONSES_PER_FEEDBACK, in chain order


@dataclass(frozen=True)
class FeedbackPage:
    items: tuple[FeedbackItem, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class ValidationPage:
    items: tuple[ValidationRequest, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryEntry:
    """One change of an agent's identity: `change` is "registered" (owner and URI),
    "uri", "owner" (a transfer: from `previous_owner` to `owner`) or "wallet" (`agent_wallet`
    None: cleared)."""

    change: Literal["registered", "uri", "owner", "wallet"]
    event_type: str
    block_number: int
    log_index: int
    block_time: datetime
    transaction_hash: str
    owner: str | None = None
    previous_owner: str | None = None
    agent_uri: str | None = None
    updated_by: str | None = None
    agent_wallet: str | None = None


@dataclass(frozen=True)
class HistoryPage:
    items: tuple[HistoryEntry, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Page:
    """Which page of a per-agent listing: `cursor` is the previous page's next_cursor."""

    limit: int = 50
    cursor: str | None = None


# -- helpers ----------------------------------------------------------------------------------


async def _rows(
    conn: psycopg.AsyncConnection[Any], query: str | bytes, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    text = _QUERIES[query] if isinstance(query, str) else query
    async with conn.cursor(row_factory=dict_row) as cursor:
        await cursor.execute(text, params)
        return await cursor.fetchall()


def _lower(addresses: Sequence[str] | None) -> list[str] | None:
    """Addresses as the model stores them (lower case); None and empty mean any."""
    return [address.lower() for address in addresses] if addresses else None


async def require_agent(conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int) -> None:
    """AgentNotFoundError unless an event names the agent."""
    rows = await _rows(conn, "agent_exists", {"chain_id": chain_id, "agent_id": agent_id})
    if not rows[0]["known"]:
        raise AgentNotFoundError(chain_id, agent_id)


def _like_pattern(text: str) -> str:
    """`text` anywhere, as an ILIKE pattern: its own % and _ and \\ taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# -- searching agents -------------------------------------------------------------------------

# Per sort: the ORDER BY, the keyset condition after a cursor's (key, chain_id, agent_id),
# and how the cursor's key reads. Every order ends with (chain_id, agent_id): unique.
_ORDERS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "newest": ("a.first_at", "timestamptz", _time),
    "last_activity": ("a.last_at", "timestamptz", _time),
    "feedback_count": ("s.feedback_count", "bigint", _BIGINT),
}


def _listing(sort_key: str, key_type: str) -> bytes:
    # Sorted by feedback, the chain and agent ids are the counts' (s.*), those of the index
    # that gives the order; they equal the agent's.
    table = "s" if sort_key.startswith("s.") else "a"
    order = sql.SQL(f"{sort_key} DESC, {table}.chain_id DESC, {table}.agent_id DESC")
    after = sql.SQL(
        f"(%(after_key)s::{key_type} IS NULL OR ({sort_key}, {table}.chain_id, {table}.agent_id)"
        f" < (%(after_key)s::{key_type}, %(after_chain)s::bigint, %(after_agent)s::numeric))"
    )
    return compose(_QUERIES["agent_listing"], order=order, after=after)


_LISTINGS = {sort: _listing(key, key_type) for sort, (key, key_type, _) in _ORDERS.items()}


def _agent_summary(row: Mapping[str, Any], lens_score: Decimal | None = None) -> AgentSummary:
    return AgentSummary(**{**row, "agent_id": int(row["agent_id"]), "lens_score": lens_score})


def _filters(query: AgentQuery) -> dict[str, Any]:
    return {
        "chain_id": query.chain_id,
        "owner": query.owner.lower() if query.owner else None,
        "wallet": query.wallet.lower() if query.wallet else None,
        "has_mcp": query.has_mcp,
        "has_a2a": query.has_a2a,
        "active": query.active,
        "x402": query.x402,
        "text_pattern": _like_pattern(query.text) if query.text else None,
        "min_feedback": query.min_feedback,
    }


async def search_agents(conn: psycopg.AsyncConnection[Any], query: AgentQuery) -> AgentPage:
    """Agents matching every filter of `query`, one page in its sort order: newest
    (first event, newest first), last_activity (latest event first), feedback_count (most
    non-revoked feedback first), or lens (highest score through `query.lens` first, agents
    where nothing counted last; over a candidate set, see LENS_SORT_CANDIDATES). Ties are
    broken by (chain_id, agent_id), descending."""
    if query.limit < 1:
        raise AgentQueryError("limit", "must be at least 1")
    if query.sort == "lens":
        return await _search_by_lens(conn, query)
    if query.lens is not None:
        raise AgentQueryError("lens", "is only used with sort=lens")
    _, _, parse_key = _ORDERS[query.sort]
    after: list[Any] = [None, None, None]
    if query.cursor:
        after = decode_cursor(query.cursor, query.sort, parse_key, _BIGINT, _UINT256)
    params = {
        **_filters(query),
        "after_key": after[0],
        "after_chain": after[1],
        "after_agent": after[2],
        "limit": query.limit + 1,
    }
    rows = await _rows(conn, _LISTINGS[query.sort], params)
    items = tuple(_agent_summary(row) for row in rows[: query.limit])
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        key = {"newest": last.first_at, "last_activity": last.last_at,
               "feedback_count": last.feedback_count}[query.sort]  # fmt: skip
        next_cursor = encode_cursor(query.sort, key, last.chain_id, last.agent_id)
    return AgentPage(items=items, next_cursor=next_cursor)


def _lens_rank(score: Decimal | None, chain_id: int, agent_id: int) -> tuple[Any, ...]:
    """The lens sort's order, (score, chain_id, agent_id) descending with the agents where
    nothing counted last, as an ascending key."""
    return (score is None, -(score or 0), -chain_id, -agent_id)


def _item_rank(item: AgentSummary) -> tuple[Any, ...]:
    return _lens_rank(item.lens_score, item.chain_id, item.agent_id)


async def _search_by_lens(conn: psycopg.AsyncConnection[Any], query: AgentQuery) -> AgentPage:
    if query.lens is None:
        raise AgentQueryError("lens", "sort=lens needs a lens")
    if query.now is None:
        raise AgentQueryError("now", "sort=lens needs the time ages are measured from")
    params = {**_filters(query), "after_key": None, "after_chain": None, "after_agent": None,
              "limit": LENS_SORT_CANDIDATES + 1}  # fmt: skip
    rows = await _rows(conn, _LISTINGS["feedback_count"], params)
    candidates: list[dict[str, Any]] = []
    feedback_total = 0
    for row in rows[:LENS_SORT_CANDIDATES]:
        if candidates and feedback_total + row["feedback_count"] > LENS_SORT_MAX_FEEDBACK:
            break
        candidates.append(row)
        feedback_total += row["feedback_count"]
    complete = len(candidates) == len(rows)

    by_chain: defaultdict[int, list[int]] = defaultdict(list)
    for row in candidates:
        by_chain[row["chain_id"]].append(int(row["agent_id"]))
    scores: dict[tuple[int, int], Decimal | None] = {}
    for chain_id, agent_ids in by_chain.items():
        found = await _lens_votes(conn, query.lens, chain_id, agent_ids)
        for agent_id in agent_ids:
            votes = found.get(agent_id, _NO_VOTES).votes
            scores[chain_id, agent_id] = weigh_votes(query.lens, votes, query.now).score
    scored = [
        _agent_summary(row, scores[row["chain_id"], int(row["agent_id"])]) for row in candidates
    ]
    ranked = sorted(scored, key=_item_rank)
    if query.cursor:
        score_text, chain_id, agent_id = decode_cursor(query.cursor, "lens", str, _BIGINT, _UINT256)
        try:
            score = None if score_text == "none" else Decimal(score_text)
        except ArithmeticError:
            score = Decimal("NaN")
        if score is not None and not score.is_finite():  # NaN does not compare: refused
            raise AgentQueryError("cursor", "not a cursor from this listing")
        mark = _lens_rank(score, chain_id, agent_id)
        ranked = [item for item in ranked if _item_rank(item) > mark]
    items = tuple(ranked[: query.limit])
    next_cursor = None
    if len(ranked) > query.limit:
        last = items[-1]
        score_text = "none" if last.lens_score is None else str(last.lens_score)
        next_cursor = encode_cursor("lens", score_text, last.chain_id, last.agent_id)
    return AgentPage(items=items, next_cursor=next_cursor, lens_candidates=len(candidates),
                     lens_candidates_complete=complete)  # fmt: skip


# -- one agent --------------------------------------------------------------------------------


async def get_agent(
    conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int
) -> AgentDetail | None:
    """The agent's profile (agents/read.py) and counts; None when no event names it."""
    profile = await read.get_agent(conn, chain_id, agent_id)
    if profile is None:
        return None
    row = (await _rows(conn, "agent_stats", {"chain_id": chain_id, "agent_id": agent_id}))[0]
    return AgentDetail(profile=profile, stats=AgentStats(**row))


def _summary_record(item: Feedback) -> summaries.Feedback:
    return summaries.Feedback(
        client=item.client_address,
        index=item.feedback_index,
        value=item.value,
        value_decimals=item.value_decimals,
        tag1=item.tag1 or "",
        tag2=item.tag2 or "",
        revoked=item.revoked,
    )


async def agent_reputation(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    clients: Sequence[str],
    tag1: str = "",
    tag2: str = "",
) -> SpecSummary:
    """ReputationRegistry.getSummary(agentId, clients, tag1, tag2), digit for digit
    (agents/summaries.reputation_summary over the clients' non-revoked feedback). `clients`
    is required, as the contract reverts on an empty list (AgentQueryError naming
    `clients`)."""
    if not clients:
        raise AgentQueryError(
            "clients",
            "at least one client address is required: getSummary reverts on an empty list"
            " (a summary over every client is open to Sybil feedback; use a lens for that)",
        )
    await require_agent(conn, chain_id, agent_id)
    given = [client.lower() for client in clients]
    feedback = await read.read_all_feedback(
        conn, chain_id, agent_id, clients=list(dict.fromkeys(given)), tag1=tag1 or None,
        tag2=tag2 or None,
    )  # fmt: skip
    summary = summaries.reputation_summary(
        [_summary_record(item) for item in feedback], given, tag1, tag2
    )
    return SpecSummary(
        clients=tuple(given),
        tag1=tag1,
        tag2=tag2,
        count=summary.counted,
        value=summary.value,
        decimals=summary.decimals,
    )


# PostgreSQL stores a timestamptz as microseconds since 2000-01-01 UTC.
_POSTGRES_EPOCH_MICROSECONDS = 946_684_800_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LENS_VOTES = {
    (needs_history, with_entries): compose(
        _QUERIES["lens_votes"],
        history=sql.SQL(_QUERIES["lens_clients_history" if needs_history
                                 else "lens_clients_no_history"].decode()),
        entries=sql.SQL(_QUERIES["lens_entry_columns" if with_entries
                                 else "lens_no_entry_columns"].decode()),
    )
    for needs_history in (True, False) for with_entries in (True, False)
}  # fmt: skip
# What lens_votes gives of a vote beyond Votes: the rest of its FeedbackEntry (index, tag1,
# tag2, revoked, response_count), all None unless asked for.
_EntryRest = tuple[str | None, str | None, str | None, bool | None, int | None]
# 10^(18 - decimals) for the decimals the registries take (in_18_decimals beyond).
_TO_18_DECIMALS = [10 ** (18 - decimals) for decimals in range(19)]


@dataclass(frozen=True)
class _AgentVotes:
    """One agent's feedback as PostgreSQL chose it for a lens (see lens_votes)."""

    total: int  # every feedback, revoked included
    excluded: dict[str, int]  # by reason, EXCLUSION_REASONS in order
    untrusted_clients: int
    activity: Activity  # of every feedback
    votes: Votes  # the counted feedback
    # Their values x 10^(18 - decimals) (beyond 18 decimals, the values), and decimals.
    amounts: Sequence[int]
    decimals: Sequence[int]
    rest: Sequence[_EntryRest]


_NO_VOTES = _AgentVotes(0, dict.fromkeys(EXCLUSION_REASONS, 0), 0,
                        activity_of_counts(0, 0, 0, 0), Votes([], [], []), [], [], [])  # fmt: skip


# The key of a lens read in the cache: the chain, the agent, with_entries, and what of the
# lens lens_votes and _lens_votes use.
_VotesKey = tuple[int, int, bool, tuple[Any, ...]]


class LensVotesCache:
    """The lens votes of busy agents, as _lens_votes read them, kept until the chain's
    model changes: each entry holds the chain's read_model_stamps stamp (migration 37) of
    when it was read, and is good while that is still the stamp. The busiest agents are
    the slow ones to read (tens of thousands of feedback: a read takes longer than the
    weighing, which stays per request: ages move with the clock) and the ones most asked
    about. Only agents with at least `min_feedback` feedback are kept, least recently used
    out first once the entries hold more than `max_votes` votes. Per process; PostgreSQL
    stays the truth, nothing is kept without a stamp."""

    def __init__(self, *, max_votes: int, min_feedback: int) -> None:
        self.max_votes = max_votes
        self.min_feedback = min_feedback
        self._entries: OrderedDict[_VotesKey, tuple[uuid.UUID, _AgentVotes]] = OrderedDict()
        self._votes = 0
        self.hits = self.misses = 0

    def get(self, key: _VotesKey, stamp: uuid.UUID | None) -> _AgentVotes | None:
        entry = self._entries.get(key)
        if entry is not None and stamp is not None and entry[0] == stamp:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]
        if entry is not None:
            self._forget(key)
        self.misses += 1
        return None

    def put(self, key: _VotesKey, stamp: uuid.UUID | None, votes: _AgentVotes) -> None:
        size = _kept_size(votes)
        if stamp is None or votes.total < self.min_feedback or size > self.max_votes:
            return
        if key in self._entries:
            self._forget(key)
        self._entries[key] = (stamp, votes)
        self._votes += size
        while self._votes > self.max_votes:
            self._forget(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self._votes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _forget(self, key: _VotesKey) -> None:
        self._votes -= _kept_size(self._entries.pop(key)[1])


def _kept_size(votes: _AgentVotes) -> int:
    """What kept votes count against LensVotesCache.max_votes: about 200 bytes a vote (a
    client's address, its score, time and decimals), twice that with the rest of each
    feedback (with_entries)."""
    return len(votes.votes) * (2 if votes.rest else 1)


# At most some 40 MB. (A read of 1,000 feedback takes a few milliseconds; of 17,000, 25.)
LENS_VOTES_CACHE = LensVotesCache(max_votes=200_000, min_feedback=1_000)


async def model_stamp(conn: psycopg.AsyncConnection[Any], chain_id: int) -> uuid.UUID | None:
    """The chain's read_model_stamps stamp: new at every change of its feedback model (None
    before the chain has any)."""
    rows = await _rows(conn, "model_stamp", {"chain_id": chain_id})
    return rows[0]["stamp"] if rows else None


async def _lens_votes(
    conn: psycopg.AsyncConnection[Any],
    lens: Lens,
    chain_id: int,
    agent_ids: Sequence[int],
    *,
    with_entries: bool = False,
) -> dict[int, _AgentVotes]:
    """What `lens` counts of each agent's feedback, with the counts of what it leaves out:
    apply_lens's choices, made by PostgreSQL (lens_votes); with_entries reads the rest of
    each counted feedback too. Agents without feedback are absent. Busy agents' come from
    LENS_VOTES_CACHE while the chain's model has not changed since they were read."""
    # The stamp first: the votes read after it are at least as new as it says (a change
    # in between makes the next request read them again, never keeps old votes).
    stamp = await model_stamp(conn, chain_id)
    allowlist = None if lens.allowlist is None else tuple(lens.allowlist)
    lens_key = (lens.vote, lens.include_revoked, allowlist, lens.min_feedback,
                lens.min_agents, lens.tag1, lens.tag2)  # fmt: skip
    found: dict[int, _AgentVotes] = {}
    missing: list[int] = []
    for agent_id in agent_ids:
        kept = LENS_VOTES_CACHE.get((chain_id, agent_id, with_entries, lens_key), stamp)
        if kept is None:
            missing.append(agent_id)
        else:
            found[agent_id] = kept
    if missing:
        read = await _read_lens_votes(conn, lens, chain_id, missing, with_entries=with_entries)
        for agent_id, votes in read.items():
            LENS_VOTES_CACHE.put((chain_id, agent_id, with_entries, lens_key), stamp, votes)
        found.update(read)
    return found


async def _read_lens_votes(
    conn: psycopg.AsyncConnection[Any],
    lens: Lens,
    chain_id: int,
    agent_ids: Sequence[int],
    *,
    with_entries: bool,
) -> dict[int, _AgentVotes]:
    params = {
        "chain_id": chain_id,
        "agent_ids": list(agent_ids),
        "include_revoked": lens.include_revoked,
        "allowlist": list(lens.allowlist) if lens.allowlist is not None else None,
        "min_feedback": lens.min_feedback or None,  # (None: no minimum to read)
        "min_agents": lens.min_agents or None,
        "tag1": lens.tag1,
        "tag2": lens.tag2,
    }
    # Tuples, binary: the votes are arrays, read in C (the busiest agents have tens of
    # thousands).
    async with conn.cursor(row_factory=tuple_row, binary=True) as cursor:
        await cursor.execute(_LENS_VOTES[lens.needs_client_history, with_entries], params)
        read = await cursor.fetchall()
    found = {}
    for (agent, (total, revoked, untrusted, mismatched, standing, untrusted_clients,
                 client_count, revoked_all, responded), *columns) in read:  # fmt: skip
        # The standing feedback, a column each: clients, amounts, decimals, times, then
        # _EntryRest's (with_entries).
        clients, amount_texts, decimals, times, *rest = columns
        standing_columns: list[list[Any]] = [
            clients or [], amount_texts or [], decimals or [], _unix_microseconds(times or b""),
            *((column or [] for column in rest) if with_entries else ()),
        ]  # fmt: skip
        if lens.vote == "latest":
            # Each client's feedback comes highest index first: its vote opens its run.
            firsts = _run_starts(standing_columns[0])
            if not all(firsts):
                standing_columns = [list(itertools.compress(column, firsts))
                                    for column in standing_columns]  # fmt: skip
        vote_clients, amount_texts, decimals, micros, *rest = standing_columns
        # Each value x 10^(18 - decimals), or the value beyond 18 decimals.
        amounts = list(map(int, amount_texts))
        scores18: Sequence[int | Fraction] = amounts
        if max(decimals, default=0) > 18:
            scores18 = [amount if places <= 18 else in_18_decimals(amount, places)
                        for amount, places in zip(amounts, decimals, strict=True)]  # fmt: skip
        superseded = standing - len(vote_clients)
        excluded = dict(zip(EXCLUSION_REASONS, (revoked, untrusted, mismatched, superseded),
                            strict=True))  # fmt: skip
        found[int(agent)] = _AgentVotes(
            total=total,
            excluded=excluded,
            untrusted_clients=untrusted_clients,
            activity=activity_of_counts(total, client_count, revoked_all, responded),
            votes=Votes(clients=vote_clients, scores18=scores18, microseconds=micros),
            amounts=amounts,
            decimals=decimals,
            rest=list(zip(*rest, strict=True)) if with_entries else [],
        )
    return found


def _unix_microseconds(stored: bytes) -> list[int]:
    """timestamptz values as PostgreSQL sends them, 8 bytes each (microseconds since
    2000-01-01 UTC, big-endian), as microseconds since the Unix epoch."""
    return [micros + _POSTGRES_EPOCH_MICROSECONDS
            for micros in struct.unpack(f">{len(stored) // 8}q", stored)]  # fmt: skip


def _run_starts(values: Sequence[str]) -> list[bool]:
    """For each value, whether a run of equal values starts there. (Made in C, as
    itertools.compress then reads it: an agent can have tens of thousands.)"""
    return list(map(operator.ne, values, [None, *values]))


class _CountedFeedback(Sequence[CountedFeedback]):
    """A lens's counted feedback as read by _lens_votes (with_entries), made into
    CountedFeedback when first looked at (an agent's can be tens of thousands)."""

    def __init__(self, votes: _AgentVotes, weighed: Weighed) -> None:
        self._votes = votes
        self._weighed = weighed

    @cached_property
    def _items(self) -> tuple[CountedFeedback, ...]:
        votes, weighed = self._votes, self._weighed
        return tuple(
            CountedFeedback(
                FeedbackEntry(client, int(index or 0),
                              amount // _TO_18_DECIMALS[places] if places <= 18 else amount,
                              places, tag1 or "", tag2 or "",
                              bool(revoked), _UNIX_EPOCH + timedelta(microseconds=micros),
                              responses or 0),
                *weighed.weight_of(n),
                weighed.newest_decay,
            )
            for n, (client, amount, places, micros, (index, tag1, tag2, revoked, responses))
            in enumerate(zip(votes.votes.clients, votes.amounts, votes.decimals,
                             votes.votes.microseconds, votes.rest, strict=True))
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self._votes.rest)

    @overload
    def __getitem__(self, index: int) -> CountedFeedback: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[CountedFeedback]: ...
    def __getitem__(self, index: int | slice) -> CountedFeedback | Sequence[CountedFeedback]:
        return self._items[index]

    def __iter__(self) -> Iterator[CountedFeedback]:
        return iter(self._items)


async def client_histories(
    conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int
) -> dict[str, ClientHistory]:
    """The chain-wide history of each client of the agent, by lower-case address: the
    feedback it gave (revoked included) and the distinct agents it gave feedback to."""
    params = {"chain_id": chain_id, "agent_id": agent_id}
    async with conn.cursor(row_factory=tuple_row) as cursor:  # an agent can have 10,000s
        await cursor.execute(_QUERIES["agent_client_stats"], params)
        return {client: ClientHistory(int(feedback), int(agents))
                for client, feedback, agents in await cursor.fetchall()}  # fmt: skip


async def agent_lens_reputation(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    lens: Lens,
    now: datetime,
    *,
    trend_width: timedelta = DEFAULT_TREND_WIDTH,
    edges: Sequence[Decimal] = DEFAULT_EDGES,
    counted_feedback: bool = True,
) -> LensReport:
    """The agent's score through `lens` with its explanation, the distribution and trend of
    the feedback it counted and the activity of all of it: what lenses.apply_lens over every
    feedback of the agent (and the clients' chain-wide histories) gives, with the choices
    (revoked, untrusted, tags, the latest vote) and the counts made by PostgreSQL
    (lens_votes), so that only the counted feedback is read into Python, and weighed there
    (lenses.weigh_votes). The trend's buckets are computed in Python from those rows, as
    date_bin(trend_width, block_time, lenses.TREND_ORIGIN) would make them.
    `counted_feedback`: whether result.counted holds the counted feedback (else it is empty,
    and explain.counted still counts them); reading them costs five more columns a vote."""
    if trend_width <= timedelta(0):
        raise AgentQueryError("trend_width", "must be positive")
    await require_agent(conn, chain_id, agent_id)
    found = await _lens_votes(conn, lens, chain_id, [agent_id], with_entries=counted_feedback)
    read = found.get(agent_id, _NO_VOTES)
    votes = read.votes
    weighed = weigh_votes(lens, votes, now)
    counted: Sequence[CountedFeedback] = _CountedFeedback(read, weighed) if counted_feedback else ()
    result = lens_result(lens, now, weighed, read.total, read.excluded,
                         read.untrusted_clients, counted, len(votes))  # fmt: skip
    return LensReport(
        result=result,
        distribution=distribution_of_scores(votes.scores18, edges),
        trend=trend_of_scores(votes.scores18, votes.microseconds, trend_width),
        trend_width=trend_width,
        activity=read.activity,
    )  # fmt: skip


# -- listings of one agent --------------------------------------------------------------------


def _page_limit(page: Page) -> None:
    if page.limit < 1:
        raise AgentQueryError("limit", "must be at least 1")


async def list_feedback(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    clients: Sequence[str] | None = None,
    tag1: str = "",
    tag2: str = "",
    include_revoked: bool = False,
    page: Page = Page(),
) -> FeedbackPage:
    """The agent's feedback in readAllFeedback's order (clients by their first feedback, or
    as given; then by index), a page at a time, each with its first responses. An empty tag
    matches any; revoked feedback only with include_revoked."""
    _page_limit(page)
    await require_agent(conn, chain_id, agent_id)
    given = _lower(clients)
    after: list[Any] = [None, None, None]
    kind = "feedback-given" if given else "feedback"
    if page.cursor:
        after = decode_cursor(page.cursor, kind, _BIGINT, _INT, _UINT64)
    params = {
        "chain_id": chain_id,
        "agent_id": agent_id,
        "clients": given,
        "tag1": tag1 or None,
        "tag2": tag2 or None,
        "include_revoked": include_revoked,
        "after_key1": after[0],
        "after_key2": after[1],
        "after_index": after[2],
        "limit": page.limit + 1,
    }
    query = "feedback_page_given_clients" if given else "feedback_page_all_clients"
    rows = await _rows(conn, query, params)
    shown = rows[: page.limit]
    feedback = [read.feedback({k: v for k, v in row.items() if k not in ("key1", "key2")})
                for row in shown]  # fmt: skip
    responses = await _responses(conn, chain_id, agent_id, feedback)
    items = tuple(
        FeedbackItem(item, tuple(responses.get((item.client_address, item.feedback_index), ())))
        for item in feedback
    )
    next_cursor = None
    if len(rows) > page.limit:
        last = shown[-1]
        next_cursor = encode_cursor(kind, last["key1"], last["key2"], last["feedback_index"])
    return FeedbackPage(items=items, next_cursor=next_cursor)


async def _responses(
    conn: psycopg.AsyncConnection[Any], chain_id: int, agent_id: int, feedback: Sequence[Feedback]
) -> dict[tuple[str, int], list[Response]]:
    keys = {(item.client_address, item.feedback_index) for item in feedback
            if item.response_count > 0}  # fmt: skip
    if not keys:
        return {}
    params = {
        "chain_id": chain_id,
        "agent_id": agent_id,
        "clients": [client for client, _ in keys],
        "indexes": [index for _, index in keys],
        "per_feedback": RESPONSES_PER_FEEDBACK,
    }
    found: dict[tuple[str, int], list[Response]] = {}
    for row in await _rows(conn, "page_responses", params):
        key = (row.pop("client_address"), int(row.pop("feedback_index")))
        found.setdefault(key, []).append(Response(**row))
    return found


async def list_validations(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    validators: Sequence[str] | None = None,
    tag: str = "",
    page: Page = Page(),
) -> ValidationPage:
    """The agent's validation requests, newest first, of the given validators (None or
    empty: any) whose latest response has the tag (empty: any; a tag excludes requests not
    answered yet)."""
    _page_limit(page)
    await require_agent(conn, chain_id, agent_id)
    after: list[Any] = [None, None]
    if page.cursor:
        after = decode_cursor(page.cursor, "validations", _BIGINT, _INT)
    params = {
        "chain_id": chain_id,
        "agent_id": agent_id,
        "validators": _lower(validators),
        "tag": tag or None,
        "after_block": after[0],
        "after_log_index": after[1],
        "limit": page.limit + 1,
    }
    rows = await _rows(conn, "validations_page", params)
    items = tuple(read.validation_request(row) for row in rows[: page.limit])
    next_cursor = None
    if len(rows) > page.limit:
        last = items[-1]
        next_cursor = encode_cursor("validations", last.block_number, last.log_index)
    return ValidationPage(items=items, next_cursor=next_cursor)


async def validation_summary(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    *,
    validators: Sequence[str] | None = None,
    tag: str = "",
) -> summaries.ValidationSummary:
    """ValidationRegistry.getSummary(agentId, validators, tag): the count of answered
    requests of those validators (none: any) whose latest response has the tag (empty: any),
    and their average response rounded down (agents/summaries.validation_summary)."""
    await require_agent(conn, chain_id, agent_id)
    given = _lower(validators)
    rows = await _rows(
        conn,
        "validation_records",
        {"chain_id": chain_id, "agent_id": agent_id, "validators": given},
    )
    records = [
        summaries.Validation(
            validator=row["validator_address"], response=row["response"],
            tag=row["response_tag"] or "",
        )
        for row in rows
    ]  # fmt: skip
    return summaries.validation_summary(records, given or (), tag)


_CHANGES: dict[str, Literal["registered", "uri", "owner", "wallet"]] = {
    "Registered": "registered",
    "URIUpdated": "uri",
    "Transfer": "owner",
    "MetadataSet": "wallet",
}
_ZERO_ADDRESS = "0x" + "0" * 40


def _history_entry(row: Mapping[str, Any]) -> HistoryEntry:
    change = _CHANGES[row["event_type"]]
    value = row["metadata_value"]
    wallet = "0x" + bytes(value).hex() if value is not None and len(value) == 20 else None
    previous = row["from_address"]
    return HistoryEntry(
        change=change,
        event_type=row["event_type"],
        block_number=row["block_number"],
        log_index=row["log_index"],
        block_time=row["block_time"],
        transaction_hash=row["transaction_hash"],
        owner=row["to_address"] if change == "owner" else row["owner"],
        previous_owner=None if previous == _ZERO_ADDRESS else previous,
        agent_uri=row["token_uri"],
        updated_by=row["updated_by"],
        agent_wallet=wallet,
    )


async def agent_history(
    conn: psycopg.AsyncConnection[Any],
    chain_id: int,
    agent_id: int,
    page: Page = Page(),
) -> HistoryPage:
    """The agent's identity changes in chain order, oldest first: its registration, URI
    updates, transfers and agentWallet changes (from `events`)."""
    _page_limit(page)
    await require_agent(conn, chain_id, agent_id)
    after: list[Any] = [None, None]
    if page.cursor:
        after = decode_cursor(page.cursor, "history", _BIGINT, _INT)
    params = {"chain_id": chain_id, "agent_id": agent_id, "after_block": after[0],
              "after_log_index": after[1], "limit": page.limit + 1}  # fmt: skip
    rows = await _rows(conn, "agent_history", params)
    items = tuple(_history_entry(row) for row in rows[: page.limit])
    next_cursor = None
    if len(rows) > page.limit:
        last = items[-1]
        next_cursor = encode_cursor("history", last.block_number, last.log_index)
    return HistoryPage(items=items, next_cursor=next_cursor)


__all__ = [
    "AGENT_SORTS",
    "AgentDetail",
    "AgentNotFoundError",
    "AgentPage",
    "AgentQuery",
    "AgentQueryError",
    "AgentSort",
    "AgentStats",
    "AgentSummary",
    "FeedbackItem",
    "FeedbackPage",
    "HistoryEntry",
    "HistoryPage",
    "LensReport",
    "Page",
    "SpecSummary",
    "ValidationPage",
    "agent_history",
    "agent_lens_reputation",
    "agent_reputation",
    "client_histories",
    "get_agent",
    "list_feedback",
    "list_validations",
    "search_agents",
    "validation_summary",
]
