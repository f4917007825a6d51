"""Request time-outs without a timer per request.

`asyncio.timeout()` arms an event-loop timer per call (with uvloop, a libuv timer started and
stopped) plus a context-manager object: several percent of a command's time in the benchmarks'
profile. Here every request of one app has the same time-out, so deadlines arrive in the order
requests started: they sit in an insertion-ordered dict, and one sweep every `resolution`
seconds (scheduled only while requests are waiting) cancels those past their deadline. A
request may thus run up to `resolution` seconds longer than its time-out.

The cancellation lands inside the awaited call (nothing else of the request runs between
registering and awaiting, or between the await and unregistering), and is turned back into a
time-out there: `run` answers 503 through `timed_out`, and undoes the cancel request
(`Task.uncancel`) as `asyncio.timeout` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Deadlines:
    def __init__(
        self, timeout: float, on_expiry: Callable[[], Exception], *, resolution: float = 0.25
    ) -> None:
        self.timeout = timeout
        self.on_expiry = on_expiry  # the exception a timed-out request raises
        self.resolution = min(resolution, timeout)
        self._waiting: dict[asyncio.Task, float] = {}
        self._expired: set[asyncio.Task] = set()
        self._sweep: asyncio.TimerHandle | None = None

    async def run(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        self._waiting[task] = loop.time() + self.timeout
        if self._sweep is None:
            self._sweep = loop.call_later(self.resolution, self._expire, loop)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if task in self._expired:
                task.uncancel()
                raise self.on_expiry() from None
            raise
        finally:
            self._waiting.pop(task, None)
            self._expired.discard(task)  # (a cancel swallowed below must not leak it)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = []
        for task, deadline in self._waiting.items():  # oldest first
            if deadline > now:
                break
            late.append(task)
        for task in late:
            del self._waiting[task]
            if not task.done():
                self._expired.add(task)
                task.cancel()
        self._sweep = (
            loop.call_later(self.resolution, self._expire, loop) if self._waiting else None
        )
