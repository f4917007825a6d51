"""Garbage-collector settings for a long-running server process.

CPython's cyclic collector runs a young collection every 700 container allocations and, now and
then, a full one that visits every tracked object. A serving runtime holds hundreds of thousands
of objects that are never garbage: everything the imports created (aiohttp, SQLAlchemy, botocore,
the Kubernetes client) and the entities in memory. Measured under workload 1 of the benchmarks
(`docs/benchmarks.md`), the collector took about a fifth of the server's CPU, and each full
collection paused the event loop for tens of milliseconds. So, once started:

- `gc.freeze()` moves what startup created to a permanent generation that is never visited;
- the young-generation threshold rises from 700 to 10,000 allocations: collections are rarer
  and each still bounded (garbage cycles of a few thousand requests at most).

Reference counting still frees everything that is not in a cycle at once; only cycles wait.
"""

from __future__ import annotations

import gc

SERVING_GEN0_THRESHOLD = 10_000


def tune_for_serving(gen0_threshold: int = SERVING_GEN0_THRESHOLD) -> None:
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
