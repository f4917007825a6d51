"""The index reads a read-model updater owes (application/projector.py): per shard, the offset to
read it after, now or at a given time (a re-read once an eventually consistent index has
settled).

Reads are served a chunk of shards at a time with `Journal.read_shard_set`. A journal returns
the first events of the chunk in offset order and never splits events that share an offset, so
a result may be short of the limit while more remain: a shard stays owed until a read of it
returns nothing, and each read moves the shards' cursors only as far as the result proves
complete (`advance`). Pure bookkeeping: no I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping, Sequence

from .ports import StoredEvent


class ShardReads:
    """Shards to read, each after an offset; the lowest offset wins when one is owed twice."""

    def __init__(self) -> None:
        self._after: dict[int, int] = {}  # insertion order: the oldest debt is read first
        self._later: list[tuple[float, int, int, int]] = []  # (due, tiebreak, shard, after)
        self._tiebreak = itertools.count()

    def owe(self, shard: int, after: int) -> None:
        """Read `shard` after offset `after` as soon as possible."""
        current = self._after.get(shard)
        self._after[shard] = after if current is None else min(current, after)

    def owe_later(self, due: float, shard: int, after: int) -> None:
        """Read `shard` after `after` once `due` has come."""
        heapq.heappush(self._later, (due, next(self._tiebreak), shard, after))

    def promote(self, now: float) -> None:
        """Make the reads that are due now owed."""
        while self._later and self._later[0][0] <= now:
            _, _, shard, after = heapq.heappop(self._later)
            self.owe(shard, after)

    def next_due(self) -> float | None:
        """When the earliest later read is due (None: none)."""
        return self._later[0][0] if self._later else None

    def chunk(self, size: int) -> dict[int, int]:
        """The next `size` shards to read, with their offsets."""
        return dict(itertools.islice(self._after.items(), size))

    def advance(self, chunk: Mapping[int, int], events: Sequence[StoredEvent]) -> set[int]:
        """Record what a read of `chunk` returned (`events`, in offset order). An empty result
        settles every shard of the chunk. Otherwise every event up to the result's last offset
        X was returned (the journal's order is (offset, pid, seq) over all shards): a shard with
        events at X continues after X, the others after X - 1 (an event of theirs at X may sort
        after the cut). A shard owed again meanwhile keeps the lower offset. Returns the shards
        settled."""
        if not events:
            settled: set[int] = set()
            for shard, after in chunk.items():
                if self._after.get(shard) == after:
                    del self._after[shard]
                    settled.add(shard)
            return settled
        last = events[-1].offset
        at_last = {ev.shard for ev in events if ev.offset == last}
        for shard, after in chunk.items():
            if self._after.get(shard) != after:
                continue  # owed again from lower down while this read ran
            moved = max(after, last if shard in at_last else last - 1)
            del self._after[shard]  # to the end of the line: other shards are read first
            self._after[shard] = moved
        return set()

    def __bool__(self) -> bool:
        return bool(self._after)

    def __len__(self) -> int:
        return len(self._after)

    def __contains__(self, shard: object) -> bool:
        return shard in self._after
