"""A histogram kept in plain Python: one bucket search and two additions per observation.

prometheus_client's own metric objects take a lock per update; the runtime updates its figures
on the event loop's thread only, so they need none. A collector turns them into families when
``/metrics`` is scraped (:meth:`Histogram.buckets`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from ..adapters.http.metrics import BUCKETS as HTTP_LATENCY_BUCKETS

#: seconds: request, command, journal and query latencies (the HTTP API's buckets, so that its
#: request latency and the runtime's latencies compare bucket for bucket)
LATENCY_BUCKETS = HTTP_LATENCY_BUCKETS
#: seconds: handoffs (drains are bounded by 10 s, a handoff waits for every losing member)
HANDOFF_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: appends per group commit (the SQLite journal writes at most 512 per transaction)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


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
        for bound, count in zip((*map(_le, self.bounds), "+Inf"), self.counts):
            cumulative += count
            out.append((bound, cumulative))
        return out


def _le(bound: float) -> str:
    return str(float(bound))


def buckets_of_counts(counts: dict[int, int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative buckets of exact values counted in ``counts`` ({value: times seen})."""
    h = Histogram(bounds)
    for value, times in counts.items():
        h.counts[bisect.bisect_left(h.bounds, value)] += times
    return h.buckets()
