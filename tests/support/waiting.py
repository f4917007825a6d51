"""Waiting in tests for something to happen, instead of sleeping for a guessed time: on an
explicit signal (`signalled`: an asyncio.Event's wait(), a future, a task) or on a condition
polled until a deadline (`eventually`). Both fail with an AssertionError naming what did not
happen. Their deadlines only keep a broken test from hanging; they measure nothing."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def signalled(awaitable: Awaitable[T], what: str, *, timeout: float = 5.0) -> T:
    """The result of `awaitable`; fails naming `what` if it does not come within `timeout`
    seconds (an error raised by `awaitable` itself passes through)."""
    try:
        async with asyncio.timeout(timeout) as scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from None
        raise


async def eventually(
    probe: Callable[[], Any],
    *,
    what: str,
    timeout: float = 5.0,
    interval: float = 0.02,
) -> Any:
    """Call `probe` (it returns a value, or an awaitable of one) until the value is truthy, and
    return that value; fails after `timeout` seconds naming `what` and the last value.
    `interval=0` probes on every turn of the event loop, for a state that lasts only a turn or
    two (say, an append queued until the journal's writer takes it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; last value: {value!r:.200}"
            )
        await asyncio.sleep(interval)
