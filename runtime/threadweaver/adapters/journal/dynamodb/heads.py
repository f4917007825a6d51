"""What the journal knows of each pid's stream: its highest known *boundary* (a seq that ends an
item, or 0) and the ``ts`` of that item.

Items are never updated or deleted, so a boundary, once seen, stays one: what this cache holds
is never wrong, only possibly old. That is what lets an append at a known boundary be the
conditional put alone (see :mod:`.journal`). Bounded, least recently used first out; a pid that
fell out costs one precheck Query (batch-item mode) on its next append.
"""

from __future__ import annotations

import collections

__all__ = ["KnownHeads"]


class KnownHeads:
    """pid -> (highest known boundary, ts of the item ending there), LRU-bounded."""

    __slots__ = ("_cap", "_heads")

    def __init__(self, capacity: int) -> None:
        self._heads: collections.OrderedDict[str, tuple[int, int]] = collections.OrderedDict()
        self._cap = max(1, capacity)

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, pid: str) -> tuple[int, int]:
        """(boundary, ts); (0, 0) for a pid not known (0 is always a boundary)."""
        return self._heads.get(pid, (0, 0))

    def ts(self, pid: str) -> int:
        return self._heads.get(pid, (0, 0))[1]

    def remember(self, pid: str, boundary: int, ts: int) -> None:
        """`boundary` ends an item whose ts is `ts` (or is 0). Keeps the highest boundary and
        the highest ts seen for the pid."""
        heads = self._heads
        old = heads.get(pid)
        if old is None:
            heads[pid] = (boundary, ts)
            if len(heads) > self._cap:
                heads.popitem(last=False)
            return
        if boundary > old[0] or ts > old[1]:
            heads[pid] = (max(boundary, old[0]), max(ts, old[1]))
        heads.move_to_end(pid)
