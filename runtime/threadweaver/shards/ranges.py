"""Half-open shard ranges and normalized sets of them.

Assignments, handoffs, restart requests and lease annotations all speak in ranges, never in
single shards: a cluster has 1024..65536 shards but a member holds a handful of ranges, so
every set operation here is a merge over sorted ranges (linear in the number of ranges) and no
code path iterates shard by shard unless the caller asks for :meth:`RangeSet.shards`.

Text form (used in annotations and restart keys) is half-open like the JSON form:
``"0-341,700-800"`` is ``[[0, 341], [700, 800]]``, i.e. shards 0..340 and 700..799.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

__all__ = ["RangeSet", "ShardRange"]


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int subclass; a JSON `true` is never a shard number.
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, order=True)
class ShardRange:
    """Shards ``start`` (inclusive) to ``end`` (exclusive); never empty."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (_is_int(self.start) and _is_int(self.end)):
            raise ValueError(
                f"shard range bounds must be integers, got {self.start!r}, {self.end!r}"
            )
        if not 0 <= self.start < self.end:
            raise ValueError(
                f"invalid shard range [{self.start}, {self.end}): need 0 <= start < end"
            )

    @classmethod
    def parse(cls, text: str) -> ShardRange:
        """Parse the text form ``"start-end"`` (half-open)."""
        start, sep, end = text.strip().partition("-")
        try:
            if not sep:
                raise ValueError
            return cls(int(start), int(end))
        except ValueError:
            raise ValueError(
                f"invalid shard range {text!r}: expected 'start-end' with 0 <= start < end"
            ) from None

    @classmethod
    def from_json(cls, data: Any) -> ShardRange:
        """Parse ``[start, end]``."""
        if not isinstance(data, (list, tuple)) or len(data) != 2:
            raise ValueError(f"invalid shard range {data!r}: expected [start, end]")
        return cls(data[0], data[1])

    def to_json(self) -> list[int]:
        return [self.start, self.end]

    def __len__(self) -> int:
        return self.end - self.start

    def __contains__(self, shard: object) -> bool:
        return _is_int(shard) and self.start <= shard < self.end

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"

    def shards(self) -> range:
        """The shard numbers, lazily."""
        return range(self.start, self.end)


def _normalize(ranges: Iterable[ShardRange]) -> tuple[ShardRange, ...]:
    """Sort, then merge overlapping and adjacent ranges."""
    merged: list[ShardRange] = []
    for r in sorted(ranges):
        if merged and r.start <= merged[-1].end:
            if r.end > merged[-1].end:
                merged[-1] = ShardRange(merged[-1].start, r.end)
        else:
            merged.append(r)
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class RangeSet:
    """An immutable set of shards stored as sorted, disjoint, non-adjacent ranges.

    Construct with :meth:`from_ranges` (or ``RangeSet((r1, r2))``): input is normalized, so two
    sets holding the same shards are equal and hash alike whatever the input order.
    ``len()`` is the number of ranges (what "few contiguous ranges" is about); :meth:`count` is
    the number of shards.
    """

    ranges: tuple[ShardRange, ...] = ()

    def __post_init__(self) -> None:
        items = tuple(self.ranges)
        for r in items:
            if not isinstance(r, ShardRange):
                raise TypeError(f"RangeSet holds ShardRange values, got {r!r}")
        object.__setattr__(self, "ranges", _normalize(items))

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_ranges(
        cls, ranges: Iterable[ShardRange | tuple[int, int] | Sequence[int]]
    ) -> RangeSet:
        """Build from ranges or ``(start, end)`` pairs; overlapping input is merged."""
        return cls(tuple(r if isinstance(r, ShardRange) else ShardRange(*r) for r in ranges))

    @classmethod
    def full(cls, shards: int) -> RangeSet:
        """Every shard of a ``shards``-shard cluster."""
        if not _is_int(shards) or shards < 1:
            raise ValueError(f"shards must be an integer >= 1, got {shards!r}")
        return cls((ShardRange(0, shards),))

    @classmethod
    def from_json(cls, data: Any) -> RangeSet:
        """Parse ``[[start, end], ...]``."""
        if not isinstance(data, (list, tuple)):
            raise ValueError(f"invalid range list {data!r}: expected [[start, end], ...]")
        return cls(tuple(ShardRange.from_json(item) for item in data))

    @classmethod
    def parse(cls, text: str) -> RangeSet:
        """Parse the text form ``"0-341,700-800"``; the empty string is the empty set."""
        text = text.strip()
        if not text:
            return cls()
        return cls(tuple(ShardRange.parse(part) for part in text.split(",")))

    def to_json(self) -> list[list[int]]:
        return [r.to_json() for r in self.ranges]

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)

    def __repr__(self) -> str:
        return f"RangeSet({str(self)!r})"

    # -- queries ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.ranges)

    def __iter__(self) -> Iterator[ShardRange]:
        return iter(self.ranges)

    def __contains__(self, shard: object) -> bool:
        if not _is_int(shard):
            return False
        i = bisect.bisect_right(self.ranges, shard, key=lambda r: r.start) - 1
        return i >= 0 and shard < self.ranges[i].end

    def range_of(self, shard: int) -> ShardRange | None:
        """The range holding ``shard``, if any."""
        i = bisect.bisect_right(self.ranges, shard, key=lambda r: r.start) - 1
        if i >= 0 and shard < self.ranges[i].end:
            return self.ranges[i]
        return None

    def count(self) -> int:
        """Number of shards."""
        return sum(len(r) for r in self.ranges)

    def is_empty(self) -> bool:
        return not self.ranges

    def shards(self) -> Iterator[int]:
        """Every shard number in ascending order (the only per-shard operation)."""
        for r in self.ranges:
            yield from r.shards()

    def first(self, n: int) -> RangeSet:
        """The ``n`` lowest shards (all of them if fewer)."""
        out: list[ShardRange] = []
        for r in self.ranges:
            if n <= 0:
                break
            take = min(n, len(r))
            out.append(ShardRange(r.start, r.start + take))
            n -= take
        return RangeSet(tuple(out))

    def last(self, n: int) -> RangeSet:
        """The ``n`` highest shards (all of them if fewer)."""
        out: list[ShardRange] = []
        for r in reversed(self.ranges):
            if n <= 0:
                break
            take = min(n, len(r))
            out.append(ShardRange(r.end - take, r.end))
            n -= take
        return RangeSet(tuple(out))

    # -- set algebra (linear merges over ranges) ----------------------------------------------

    def union(self, other: RangeSet) -> RangeSet:
        if not other.ranges:
            return self
        if not self.ranges:
            return other
        return RangeSet(self.ranges + other.ranges)

    def intersection(self, other: RangeSet) -> RangeSet:
        a, b = self.ranges, other.ranges
        i = j = 0
        out: list[ShardRange] = []
        while i < len(a) and j < len(b):
            lo = max(a[i].start, b[j].start)
            hi = min(a[i].end, b[j].end)
            if lo < hi:
                out.append(ShardRange(lo, hi))
            if a[i].end < b[j].end:
                i += 1
            else:
                j += 1
        return RangeSet(tuple(out))

    def difference(self, other: RangeSet) -> RangeSet:
        if not other.ranges or not self.ranges:
            return self
        b = other.ranges
        j = 0
        out: list[ShardRange] = []
        for r in self.ranges:
            start = r.start
            # Skip subtrahend ranges entirely left of this range.
            while j < len(b) and b[j].end <= start:
                j += 1
            k = j
            while k < len(b) and b[k].start < r.end:
                if b[k].start > start:
                    out.append(ShardRange(start, b[k].start))
                start = max(start, b[k].end)
                if b[k].end > r.end:
                    break
                k += 1
            if start < r.end:
                out.append(ShardRange(start, r.end))
            j = k
        return RangeSet(tuple(out))

    def isdisjoint(self, other: RangeSet) -> bool:
        return self.intersection(other).is_empty()

    def issubset(self, other: RangeSet) -> bool:
        return self.difference(other).is_empty()

    __or__ = union
    __and__ = intersection
    __sub__ = difference
