"""Appends of this journal instance that have started and not finished, per shard: the lowest
``ts`` each can still be stored at (``Journal.in_flight_floor``), and the appends that failed
after a try that may have taken effect (reported to the change notes, :mod:`.changes`).

A projector never stores a checkpoint at or above that floor, so an append that takes effect
however late (retried for a long time, or its process killed before it reported the outcome) is
above the checkpoint a restart reads from. The floor of an append is taken when it starts: every
``ts`` this instance stamps is at least the clock's time and above the last one it stamped
(:meth:`DynamoDBJournal._next_ts`), so one stamped later is at least both as they were then (a
clock set back meanwhile is what ``offset_slack`` covers). An append's listeners are notified
before it finishes here, so its events are always either in flight or handed over.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import Callable, Iterator

from ....application.ports import ConcurrencyConflict

__all__ = ["InFlightAppends"]


class InFlightAppends:
    """The floors of the appends in flight, by shard (a handful at a time per shard)."""

    def __init__(self, uncertain: Callable[[int, int], None]) -> None:
        self._by_shard: dict[int, dict[int, int]] = collections.defaultdict(dict)
        self._tokens = itertools.count()
        self._uncertain = uncertain  # (shard, floor) of an append whose outcome is unknown

    @contextlib.contextmanager
    def appending(self, shard: int, floor: int) -> Iterator[None]:
        """Around an append to `shard` that will be stored at `floor` or above, if at all."""
        started = self.begin(shard, floor)
        try:
            yield
        except (ConcurrencyConflict, ValueError):
            raise  # refused: nothing was written
        except BaseException:
            self._uncertain(shard, floor)  # a try may have taken effect before the failure
            raise
        finally:
            self.end(started)

    def begin(self, shard: int, floor: int) -> tuple[int, int]:
        """An append to `shard` starts; it will be stored at `floor` or above."""
        token = next(self._tokens)
        self._by_shard[shard][token] = floor
        return shard, token

    def end(self, started: tuple[int, int]) -> None:
        """The append `begin` returned `started` for has finished (stored or not)."""
        shard, token = started
        appends = self._by_shard.get(shard)
        if appends is not None:
            appends.pop(token, None)
            if not appends:
                del self._by_shard[shard]

    def floor(self, shard: int) -> int | None:
        appends = self._by_shard.get(shard)
        return min(appends.values()) if appends else None

    def __len__(self) -> int:
        return sum(len(a) for a in self._by_shard.values())
