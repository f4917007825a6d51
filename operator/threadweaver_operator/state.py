"""What the operator remembers about one cluster between passes, kept in Kopf's per-object
``memo``.

It is a cache: after an operator restart everything is derived again from the API and the
cluster's status. Kopf gives each ThreadWeaverCluster its own memo (a shallow copy of the
operator's, which holds the API client) and forgets it when the object is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .status import Condition

__all__ = ["ClusterState", "TableProvisioning", "cluster_state", "forget_cluster"]

MEMO_KEY = "cluster"


class TableProvisioning:
    """The cluster's table creation (up to two minutes), run outside the cluster's lock.

    Passes that need the tables of the same generation at the same time (a spec change and a
    timer tick) share one ``create_tables``. A finished run is never reused: a pass after it
    reads the outcome from the status, or starts a new run (a retry) if it failed.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[Condition] | None = None
        self._generation: int | None = None

    async def run(self, generation: int, start: Callable[[], Awaitable[Condition]]) -> Condition:
        if self._task is None or self._task.done() or self._generation != generation:
            self._generation = generation
            self._task = asyncio.ensure_future(start())
        # shielded: a cancelled pass does not cancel the run another pass may be waiting for
        return await asyncio.shield(self._task)

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()


@dataclass
class ClusterState:
    """Per-cluster memory. The lock serializes the observe-plan-act part of passes."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: dict[str, Any] | None = None  # last status written (or found unchanged)
    warned: set[str] = field(default_factory=set)  # warnings already posted (no Event storms)
    restart_times: dict[str, float] = field(default_factory=dict)  # RMU restart cooldowns
    tables: TableProvisioning = field(default_factory=TableProvisioning)


def cluster_state(memo: MutableMapping[str, Any]) -> ClusterState:
    """The cluster's state in its Kopf memo (created on first use)."""
    state = memo.get(MEMO_KEY)
    if state is None:
        state = memo[MEMO_KEY] = ClusterState()
    return state


def forget_cluster(memo: MutableMapping[str, Any]) -> None:
    memo.pop(MEMO_KEY, None)
