"""Read your writes: a command's answer carries the thread's sequence number after it
(`Executed.seq`), and a query given `min_seq` waits until the read model has applied that
sequence number for the thread (`ReadYourWrites.wait`).

The read model keeps, on each thread's row, the seq of the last event it applied; waiting polls
that one column with a short, growing interval (5 ms to 50 ms) for at most the configured time:
the projection usually applies an append within a few milliseconds, on whichever member runs
the thread's read-model updater, so no notification between members is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Protocol

from ..domain import Event


class Executed(list[Event]):
    """The events a command caused (a list, as `CommandGateway.execute` returns) and the
    thread's sequence number after it (None when unknown, e.g. from a member of an older
    version)."""

    __slots__ = ("seq",)

    def __init__(self, events: Iterable[Event] = (), seq: int | None = None) -> None:
        super().__init__(events)
        self.seq = seq


def seq_of(events: list[Event]) -> int | None:
    """The sequence number after the command that returned `events` (None if not known)."""
    return events.seq if isinstance(events, Executed) else None


class AppliedSeqs(Protocol):
    """What the read model says it applied (adapters/readmodel/applied_seq.py)."""

    async def applied_seq(self, thread_id: str) -> int:
        """The seq of the last event the read model applied for the thread (0: none)."""
        ...


class NotAppliedYet(Exception):
    """The read model did not apply `min_seq` within the time-out (HTTP 503, Retry-After)."""

    def __init__(self, thread_id: str, min_seq: int, applied: int, waited: float) -> None:
        super().__init__(
            f"the read model has applied seq {applied} of thread {thread_id}, not yet "
            f"{min_seq} (waited {waited:g} s); retry shortly"
        )
        self.applied = applied


class ReadYourWrites:
    """Waits for the read model to apply a thread's sequence number."""

    __slots__ = ("_seqs", "timeout")

    FIRST_INTERVAL = 0.005
    MAX_INTERVAL = 0.05

    def __init__(self, seqs: AppliedSeqs, timeout: float) -> None:
        self._seqs = seqs
        self.timeout = timeout

    async def wait(self, thread_id: str, min_seq: int) -> int:
        """The applied seq, once it is at least `min_seq`; raises NotAppliedYet after the
        time-out."""
        started = time.monotonic()
        interval = self.FIRST_INTERVAL
        while True:
            applied = await self._seqs.applied_seq(thread_id)
            if applied >= min_seq:
                return applied
            remaining = self.timeout - (time.monotonic() - started)
            if remaining <= 0:
                raise NotAppliedYet(thread_id, min_seq, applied, self.timeout)
            await asyncio.sleep(min(interval, remaining))
            interval = min(interval * 2, self.MAX_INTERVAL)
