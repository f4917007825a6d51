"""What the instrumentation counts on the hot paths, in plain Python (dict increments and
:class:`~.histogram.Histogram` observations on the event loop's thread, no locks).

The collector (:mod:`.collector`) reads these at scrape time, together with the counters the
runtime keeps anyway (entity statistics, read-model updater states, journal counters).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from ..application.gateway import ForwardRefused, NotOwner, ShardUnavailable
from ..application.ports import (
    ConcurrencyConflict,
    JournalError,
    JournalUnavailable,
    ReadModelUnavailable,
)
from ..domain.errors import DomainError, ValidationError
from .histogram import HANDOFF_BUCKETS, Histogram

Counts = dict[tuple[str, ...], int]


def _add(counts: Counts, key: tuple[str, ...]) -> None:
    counts[key] = counts.get(key, 0) + 1


def command_outcome(exc: BaseException) -> str:
    """The ``outcome`` label of a command that raised ``exc``."""
    if isinstance(exc, (DomainError, ValidationError)):
        return "rejected"
    if isinstance(exc, (ShardUnavailable, NotOwner)):
        return "unavailable"
    if isinstance(exc, JournalError):
        return "journal_error"
    if isinstance(exc, (asyncio.CancelledError, TimeoutError)):
        return "timeout"
    return "error"


def forward_outcome(exc: BaseException) -> str:
    """The ``outcome`` label of a forwarded command that raised ``exc`` (sender's side)."""
    if isinstance(exc, ForwardRefused):
        return "refused"
    if isinstance(exc, ShardUnavailable):
        return "unavailable"
    if isinstance(exc, (DomainError, ValidationError)):
        return "rejected"
    return "error"


def append_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, ConcurrencyConflict):
        return "conflict"
    if isinstance(exc, JournalUnavailable):
        return "unavailable"
    if isinstance(exc, asyncio.CancelledError):
        return "abandoned"
    return "error"


def query_outcome(exc: BaseException) -> str:
    return "unavailable" if isinstance(exc, ReadModelUnavailable) else "error"


@dataclass
class CommandRecorder:
    commands: Counts = field(default_factory=dict)  # (type, outcome)
    duration: dict[str, Histogram] = field(default_factory=dict)  # type
    received: Counts = field(default_factory=dict)  # (outcome,) of forwarded-in commands

    def done(self, command_type: str, outcome: str, seconds: float) -> None:
        _add(self.commands, (command_type, outcome))
        h = self.duration.get(command_type)
        if h is None:
            h = self.duration[command_type] = Histogram()
        h.observe(seconds)

    def received_done(self, outcome: str) -> None:
        _add(self.received, (outcome,))


@dataclass
class ForwardRecorder:
    outcomes: Counts = field(default_factory=dict)
    duration: Histogram = field(default_factory=Histogram)

    def done(self, outcome: str, seconds: float) -> None:
        _add(self.outcomes, (outcome,))
        self.duration.observe(seconds)


@dataclass
class JournalRecorder:
    appends: Counts = field(default_factory=dict)
    events: int = 0
    duration: Histogram = field(default_factory=Histogram)

    def done(self, outcome: str, events: int, seconds: float) -> None:
        _add(self.appends, (outcome,))
        if outcome == "ok":
            self.events += events
            self.duration.observe(seconds)


@dataclass
class DynamoDBRecorder:
    requests: Counts = field(default_factory=dict)  # (operation, outcome)
    duration: dict[str, Histogram] = field(default_factory=dict)

    def done(self, operation: str, outcome: str, seconds: float | None) -> None:
        _add(self.requests, (operation, outcome))
        if seconds is not None:
            h = self.duration.get(operation)
            if h is None:
                h = self.duration[operation] = Histogram()
            h.observe(seconds)


@dataclass
class HandoffRecorder:
    handoffs: Counts = field(default_factory=dict)  # (role,)
    drain: Histogram = field(default_factory=lambda: Histogram(HANDOFF_BUCKETS))
    duration: Histogram = field(default_factory=lambda: Histogram(HANDOFF_BUCKETS))
    _started: float | None = None  # monotonic time of the first map of the current handoff

    def map_applied(
        self, first: bool, lost: bool, gained: bool, in_handoff: bool, seconds: float
    ) -> None:
        if not first:
            if lost:
                _add(self.handoffs, ("losing",))
                self.drain.observe(seconds)
            if gained:
                _add(self.handoffs, ("gaining",))
        now = time.monotonic()
        if in_handoff:
            if self._started is None:
                self._started = now - seconds
        elif self._started is not None:
            self.duration.observe(now - self._started)
            self._started = None


@dataclass
class QueryRecorder:
    queries: Counts = field(default_factory=dict)  # (query, outcome)
    duration: dict[str, Histogram] = field(default_factory=dict)
    apply: Histogram = field(default_factory=Histogram)

    def done(self, query: str, outcome: str, seconds: float) -> None:
        _add(self.queries, (query, outcome))
        h = self.duration.get(query)
        if h is None:
            h = self.duration[query] = Histogram()
        h.observe(seconds)


@dataclass
class Recorders:
    """Everything one runtime's instrumentation records."""

    commands: CommandRecorder = field(default_factory=CommandRecorder)
    forwards: ForwardRecorder = field(default_factory=ForwardRecorder)
    journal: JournalRecorder = field(default_factory=JournalRecorder)
    dynamodb: DynamoDBRecorder = field(default_factory=DynamoDBRecorder)
    handoffs: HandoffRecorder = field(default_factory=HandoffRecorder)
    queries: QueryRecorder = field(default_factory=QueryRecorder)
