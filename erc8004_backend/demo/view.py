"""What the demo shows: events arriving, agents and their reputation moving, triggers firing,
deliveries landing.

`DemoView` is plain state fed by the runner (database snapshots, the agents as
agents/service.py reads them, the local targets' callbacks); `render()` draws it for a rich
Live display in a terminal, and `on_entry` receives each new line as it happens, which is what
is printed when the output is not a terminal.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STYLES = {"event": "cyan", "fired": "bold yellow", "delivered": "bold green", "note": "magenta",
          "failed": "bold red", "agent": "bold blue"}  # fmt: skip

AgentRole = Literal["demo agent", "newcomer", "busiest"]


@dataclass(frozen=True)
class Entry:
    at: float  # time.time()
    kind: str  # a key of STYLES
    text: str

    def line(self) -> str:
        clock = datetime.fromtimestamp(self.at).strftime("%H:%M:%S")
        return f"{clock} {self.kind:<9} {self.text}"


@dataclass
class TriggerCount:
    name: str
    channels: str
    fired: int = 0  # events that fired it
    delivered: int = 0  # its actions delivered
    failed: int = 0  # its actions given up on


@dataclass(frozen=True)
class AgentLine:
    """One agent as the demo shows it, read as the API's /agents routes read it: its
    registration file's name, owner and counts, the spec's getSummary over the scene's
    clients, and the demo lens's score with its explain counts."""

    agent_id: int
    role: AgentRole  # the scene's demo agent, the newcomer it registered last, or a busy other
    name: str | None  # the registration file's; None: no file read, or no name in it
    file_status: str | None  # the file's: pending, fetched, failed; None: not asked for yet
    owner: str | None
    feedback: int  # not revoked
    revoked: int
    answered: int  # feedback with at least one response
    summary: tuple[int, int, int]  # getSummary's (count, summaryValue, summaryValueDecimals)
    lens_score: Decimal | None  # None: the lens counted nothing
    lens_counted: int
    lens_left_out: tuple[tuple[str, int], ...]  # (reason, feedback) of the lens's explain, > 0

    @property
    def numbers(self) -> tuple[Any, ...]:
        """What moves: a change of these is a feed line."""
        return (self.feedback, self.revoked, self.answered, self.summary, self.lens_score,
                self.lens_counted, self.lens_left_out)  # fmt: skip


@dataclass
class DemoView:
    header: list[str]
    on_entry: Callable[[Entry], None] | None = None
    started: float = field(default_factory=time.time)
    events: Counter[str] = field(default_factory=Counter)
    head: int | None = None
    triggers: dict[str, TriggerCount] = field(default_factory=dict)
    deliveries: Counter[str] = field(default_factory=Counter)  # by channel
    # The latest lines: as many as fit under the other panels in a terminal of 45 lines.
    feed: deque[Entry] = field(default_factory=lambda: deque(maxlen=12))
    agents: list[AgentLine] = field(default_factory=list)
    agents_title: str = "agents"  # what the summary and the lens are over

    def add(self, kind: str, text: str) -> None:
        entry = Entry(time.time(), kind, text)
        self.feed.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)

    def new_events(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self.events[row["event_type"]] += 1
            self.add("event", describe_event(row))

    def trigger_counts(self, rows: Sequence[dict[str, Any]]) -> None:
        """A snapshot of every trigger's counts; growth becomes feed lines."""
        for row in rows:
            key = str(row["id"])
            count = self.triggers.get(key) or TriggerCount(row["name"], row["channels"])
            self.triggers[key] = count
            if row["fired"] > count.fired:
                times = row["fired"] - count.fired
                self.add("fired", f"{count.name}" + (f" x{times}" if times > 1 else ""))
            if row["failed"] > count.failed:
                self.add("failed", f"{count.name}: an action was given up on (erc8004 jobs dead)")
            count.fired, count.delivered, count.failed = (
                row["fired"],
                row["delivered"],
                row["failed"],
            )

    def agent_lines(self, lines: Sequence[AgentLine]) -> None:
        """A snapshot of the agents shown. The scene's agents (not the busiest others, whose
        numbers background activity moves all the time) get a feed line when they first
        show and whenever their numbers move."""
        before = {line.agent_id: line for line in self.agents}
        for line in lines:
            earlier = before.get(line.agent_id)
            if line.role != "busiest" and (earlier is None or earlier.numbers != line.numbers):
                self.add("agent", describe_agent(line))
        self.agents = list(lines)

    def delivered(self, channel: str, text: str) -> None:
        self.deliveries[channel] += 1
        self.add("delivered", f"{channel}: {text}")

    def render(self) -> RenderableType:
        uptime = int(time.time() - self.started)
        title = f"ERC-8004 demo · {uptime // 60:02d}:{uptime % 60:02d}"
        if self.head is not None:
            title += f" · devnet block {self.head}"
        header = Text("\n".join(self.header), style="dim")

        counts = [f"[cyan]{name}[/] {count}" for name, count in sorted(self.events.items())]
        events = Text.from_markup("   ".join(counts) or "[dim]waiting for the first block…[/]")

        triggers = Table(expand=True, box=None, header_style="bold")
        triggers.add_column("trigger")
        triggers.add_column("sends")
        triggers.add_column("fired", justify="right")
        triggers.add_column("delivered", justify="right")
        triggers.add_column("failed", justify="right")
        for count in self.triggers.values():
            triggers.add_row(count.name, count.channels, str(count.fired), str(count.delivered),
                             f"[red]{count.failed}[/]" if count.failed else "0")  # fmt: skip

        feed = Group(*(Text(entry.line(), style=STYLES.get(entry.kind, ""), no_wrap=True,
                             overflow="ellipsis") for entry in self.feed))  # fmt: skip
        channels = ", ".join(f"{name} {n}" for name, n in sorted(self.deliveries.items()))
        agents: RenderableType = self.agents_table(box=None, collapse_padding=True)
        if not self.agents:
            agents = Text("waiting for the demo agent to be indexed…", style="dim")
        return Group(
            Panel(header, title=title, title_align="left"),
            Panel(events, title=f"events indexed: {sum(self.events.values())}",
                  title_align="left"),
            Panel(agents, title=self.agents_title, title_align="left"),
            Panel(triggers, title="triggers", title_align="left"),
            Panel(feed, title=f"live · deliveries received: {channels or 'none yet'}",
                  title_align="left", subtitle="Ctrl-C stops the demo", subtitle_align="right"),
        )  # fmt: skip

    def agents_table(self, **options: Any) -> Table:
        table = Table(header_style="bold", **options)
        for column in AGENT_COLUMNS:
            table.add_column(column, justify="right" if column in NUMBER_COLUMNS else "left")
        for line in self.agents:
            table.add_row(*agent_cells(line))
        return table

    def summary(self) -> RenderableType:
        table = Table(title="demo summary", header_style="bold")
        for column in ("trigger", "sends", "fired", "delivered", "failed"):
            table.add_column(column, justify="left" if column in ("trigger", "sends") else "right")
        for count in self.triggers.values():
            table.add_row(count.name, count.channels, str(count.fired), str(count.delivered),
                          str(count.failed))  # fmt: skip
        if not self.agents:
            return table
        # Lines, not a table: the summary is mostly printed to a log, 80 columns wide.
        agents = (Text(f"{line.role}: {describe_agent(line)}") for line in self.agents)
        return Group(table, Text(f"\n{self.agents_title}", style="bold"), *agents)


AGENT_COLUMNS = ("agent", "owner", "feedback", "revoked", "answered", "getSummary", "lens",
                 "counted", "left out")  # fmt: skip
NUMBER_COLUMNS = ("feedback", "revoked", "answered", "lens", "counted")


def agent_cells(line: AgentLine) -> tuple[str, ...]:
    """An agent's row, in AGENT_COLUMNS' order."""
    return (f"#{line.agent_id} {name_text(line)}", short_address(line.owner),
            str(line.feedback), str(line.revoked), str(line.answered),
            summary_text(line.summary), score_text(line.lens_score), str(line.lens_counted),
            left_out_text(line.lens_left_out))  # fmt: skip


def describe_agent(line: AgentLine) -> str:
    """An agent's numbers in a line of the feed."""
    left_out = left_out_text(line.lens_left_out)
    return (f"#{line.agent_id} {name_text(line)}"
            f" (owner {short_address(line.owner)}): {line.feedback}"
            f" feedback, {line.revoked} revoked, {line.answered} answered · getSummary"
            f" {summary_text(line.summary)} · lens {score_text(line.lens_score)}"
            f" ({line.lens_counted} counted, left out: {left_out})")  # fmt: skip


def name_text(line: AgentLine) -> str:
    """The name its registration file gives, or why there is none."""
    if line.name:
        return line.name
    return {"fetched": "(no name in its file)", "failed": "(registration file unreadable)"}.get(
        line.file_status or "", "(registration file not read yet)")  # fmt: skip


def summary_text(summary: tuple[int, int, int]) -> str:
    """getSummary's answer as the contract returns it: (count, summaryValue, decimals)."""
    count, value, decimals = summary
    return f"({count}, {value}, {decimals})"


def score_text(score: Decimal | None) -> str:
    """A lens score to two places at most (it is exact to 18): 61.71, 40; "—" for none."""
    if score is None:
        return "—"
    text = f"{score:.2f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def left_out_text(left_out: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{reason.replace('_client', '')} {count}" for reason, count in left_out) or (
        "none")  # fmt: skip


def short_address(address: str | None) -> str:
    return "—" if address is None else f"{address[:6]}…{address[-4:]}"


def describe_event(row: dict[str, Any]) -> str:
    """One event in a line: what, which agent, the values people look at, where."""
    parts = [row["event_type"]]
    if row.get("agent_id") is not None:
        parts.append(f"agent {row['agent_id']}")
    for name in ("score", "response", "tag1"):
        value = row.get(name)
        if value not in (None, ""):
            parts.append(f"{name} {value}")
    parts.append(f"(block {row['block_number']})")
    return " ".join(parts)
