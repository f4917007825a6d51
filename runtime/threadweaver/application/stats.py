"""Figures the application keeps where its work happens, for /metrics to read at scrape time.

Plain Python on the event loop's thread (no locks, no callbacks): a dict increment per count
(:func:`count`) and a bucket search plus two additions per :class:`Histogram` observation. The
command gateway (sharding.py: :class:`CommandStats`, :class:`ForwardStats`) and the entities
(entities.py: :class:`AppendStats`) own theirs; the metrics collector
(runtime/threadweaver/observability/collector.py) turns them into Prometheus families.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence

from ..domain.errors import DomainError, ValidationError
from .gateway import ForwardRefused, NotOwner, ShardUnavailable
from .ports import ConcurrencyConflict, JournalError, JournalUnavailable

Counts = dict[tuple[str, ...], int]

#: seconds: the buckets of every latency histogram, the HTTP API's requests included
#: (adapters/http/metrics.py uses them), so that they compare bucket for bucket
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
)


def count(counts: Counts, key: tuple[str, ...]) -> None:
    counts[key] = counts.get(key, 0) + 1


class Histogram:
    """Counts per bucket (the last one is +Inf) and the sum of the observed values."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, as prometheus_client's families take them."""
        out: list[tuple[str, float]] = []
        cumulative = 0
        for bound, n in zip((*(str(float(b)) for b in self.bounds), "+Inf"), self.counts):
            cumulative += n
            out.append((bound, cumulative))
        return out


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


class CommandStats:
    """The command gateway's: commands by (type, outcome), their latency by type, and the
    commands other members forwarded here by (outcome,)."""

    __slots__ = ("commands", "duration", "received")

    def __init__(self) -> None:
        self.commands: Counts = {}
        self.duration: dict[str, Histogram] = {}
        self.received: Counts = {}

    def done(self, command_type: str, outcome: str, seconds: float) -> None:
        key = (command_type, outcome)
        commands = self.commands
        commands[key] = commands.get(key, 0) + 1
        h = self.duration.get(command_type)
        if h is None:
            h = self.duration[command_type] = Histogram()
        h.observe(seconds)

    def received_done(self, outcome: str) -> None:
        count(self.received, (outcome,))


class ForwardStats:
    """Commands this member forwarded to their owner: by (outcome,), and their round trip."""

    __slots__ = ("duration", "outcomes")

    def __init__(self) -> None:
        self.outcomes: Counts = {}
        self.duration = Histogram()

    def done(self, outcome: str, seconds: float) -> None:
        count(self.outcomes, (outcome,))
        self.duration.observe(seconds)


class AppendStats:
    """The entities' journal appends: by (outcome,), the events written, and the latency of
    the successful ones."""

    __slots__ = ("appends", "duration", "events")

    def __init__(self) -> None:
        self.appends: Counts = {}
        self.events = 0
        self.duration = Histogram()

    def done(self, outcome: str, events: int, seconds: float) -> None:
        count(self.appends, (outcome,))
        if outcome == "ok":
            self.events += events
            self.duration.observe(seconds)
