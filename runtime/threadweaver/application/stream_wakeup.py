"""A stream's wake-up (`Wakeup`) and a thread stream's (`DirectWakeup`), which delivers a new
event without waking the stream's task when it can.

Fan-out is what this is for: a post to a thread with 1,000 subscribers here used to wake 1,000
tasks, each taking the event from its cursor and awaiting its own write. A `DirectWakeup`
whose stream is parked (caught up, waiting) writes the event's frame to the connection from
the tail's broadcast itself, through the `Sink` the HTTP adapter gives it, and moves the
cursor; it wakes the task instead (the path every guarantee is kept on) when

- the stream is not parked (it is writing, checking access, catching up, or already woken),
- the events may remove the account (access is checked again on the task),
- the cursor is not live in the tail's memory (the task ends a slow consumer's stream),
- the server is closing or the stream is past its duration (the task ends it),
- the sink refuses or fails (the connection's buffer is not nearly empty, it is paused or closing: the
  task's write waits for it, with its time-out).

Order is kept: a direct write happens only while the task is parked, so no write of the task's
is pending, and the cursor moves past what was written, so nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .stream_membership import removes

if TYPE_CHECKING:
    from .streams import StreamHub, TailCursor, ThreadTail

log = logging.getLogger(__name__)

#: writes SSE bytes to the connection now, or answers False (then nothing was written)
Sink = Callable[[bytes], bool]


class Wakeup:
    """A subscriber's wake-up: tails call `notify`, the hub's heartbeat timer sets `beat`, the
    stream waits on it."""

    __slots__ = ("beat", "dirty", "event")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.dirty: set[ThreadTail] = set()
        self.beat = False

    def notify(self, tail: ThreadTail) -> None:
        self.dirty.add(tail)
        self.event.set()

    async def wait(self, timeout: float) -> bool:
        """True when woken, False after `timeout` seconds."""
        if self.event.is_set():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self.event.wait()
        except TimeoutError:
            return False
        return True


class DirectWakeup(Wakeup):
    """One thread stream's wake-up, writing through `sink` while `parked` (module docstring)."""

    __slots__ = ("account_id", "cursor", "ends", "hub", "kind", "parked", "sink")

    def __init__(
        self, hub: StreamHub, cursor: TailCursor, account_id: str, kind: str, ends: float
    ) -> None:
        super().__init__()
        self.hub = hub
        self.cursor = cursor
        self.account_id = account_id
        self.kind = kind
        self.ends = ends  # monotonic: past it the task ends the stream
        self.sink: Sink | None = None
        self.parked = False  # set by the stream around its wait, when caught up

    def notify(self, tail: ThreadTail) -> None:
        if self.parked and not self.event.is_set() and self._write_now(tail):
            return
        super().notify(tail)

    def _write_now(self, tail: ThreadTail) -> bool:
        """Write the events after the cursor through the sink; False: the task must."""
        sink, cursor = self.sink, self.cursor
        if sink is None or tail is not cursor.tail or not cursor.live:
            return False
        events = tail.after(cursor.pos)
        if not events:  # None: not remembered any more (the task ends the stream)
            return False
        account = self.account_id
        for e in events:
            if e.removes is not None and removes(e.removes, account):
                return False
        if self.hub.closing.is_set() or time.monotonic() >= self.ends:
            return False
        chunk = events[0].frame if len(events) == 1 else b"".join(e.frame for e in events)
        try:
            if not sink(chunk):
                return False
        except Exception:  # never into the append path that called us: the task writes it
            log.debug("a direct write failed", exc_info=True)
            return False
        cursor.pos = events[-1].seq
        self.hub.stats.delivered[self.kind] += len(events)
        return True
