"""What the instrumentation still counts itself, in plain Python (dict increments and
:class:`~.histogram.Histogram` observations on the event loop's thread, no locks): DynamoDB
requests, handoffs and read-model queries, none of them per command.

The command gateway and the entities keep their own figures (application/stats.py); the
collector (:mod:`.collector`) reads both at scrape time, together with the counters the runtime
keeps anyway (entity statistics, read-model updater states, journal counters).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..application.ports import ReadModelUnavailable
from ..application.stats import Counts, append_outcome, command_outcome, forward_outcome
from ..application.stats import count as _add
from .histogram import HANDOFF_BUCKETS, Histogram

__all__ = [
    "Counts",
    "DynamoDBRecorder",
    "HandoffRecorder",
    "QueryRecorder",
    "Recorders",
    "append_outcome",
    "command_outcome",
    "forward_outcome",
    "query_outcome",
]


def query_outcome(exc: BaseException) -> str:
    return "unavailable" if isinstance(exc, ReadModelUnavailable) else "error"


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
    """What one runtime's instrumentation records itself."""

    dynamodb: DynamoDBRecorder = field(default_factory=DynamoDBRecorder)
    handoffs: HandoffRecorder = field(default_factory=HandoffRecorder)
    queries: QueryRecorder = field(default_factory=QueryRecorder)
