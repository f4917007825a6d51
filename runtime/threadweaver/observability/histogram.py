"""Histograms kept in plain Python (application/stats.py: :class:`Histogram`) and the bucket
bounds of the families that are not latencies.

prometheus_client's own metric objects take a lock per update; the runtime updates its figures
on the event loop's thread only, so they need none. A collector turns them into families when
``/metrics`` is scraped (:meth:`Histogram.buckets`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from ..application.stats import LATENCY_BUCKETS, Histogram

__all__ = ["BATCH_BUCKETS", "HANDOFF_BUCKETS", "LATENCY_BUCKETS", "Histogram", "buckets_of_counts"]

#: seconds: handoffs (drains are bounded by 10 s, a handoff waits for every losing member)
HANDOFF_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: appends per group commit (the SQLite journal writes at most 512 per transaction)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def buckets_of_counts(counts: dict[int, int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative buckets of exact values counted in ``counts`` ({value: times seen})."""
    h = Histogram(bounds)
    for value, times in counts.items():
        h.counts[bisect.bisect_left(h.bounds, value)] += times
    return h.buckets()
