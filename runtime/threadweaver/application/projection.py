"""Projection planning: which events of a batch to apply, exactly once in effect.

The read model stores, per thread, the sequence number of the last event it applied. An event
at or below it was applied before (a re-read after a restart, or the backtracking window of a
journal whose offsets are only roughly ordered) and is skipped; the next one (seq + 1) is
applied; a later one means an event of that thread is not visible yet, so its shard stops there
and is re-read from the last offset before it, and the thread is reported with the sequence
number its row has (`gaps`: the projector reads the missing events by thread). Offsets advance
per shard. Pure: adapters call it inside the transaction that also writes the rows and the
offsets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .row_operations import ProjectedEvent


@dataclass(slots=True)
class ProjectionPlan:
    apply: list[ProjectedEvent] = field(default_factory=list)
    skipped: int = 0
    offsets: dict[int, int] = field(default_factory=dict)  # shard -> new offset
    stalled: dict[int, int] = field(default_factory=dict)  # shard -> offset to re-read from
    gaps: dict[str, int] = field(default_factory=dict)  # thread id -> its row's seq (at a gap)


def plan_batch(events: Sequence[ProjectedEvent], stored_seq: Mapping[str, int]) -> ProjectionPlan:
    """`stored_seq`: thread id -> sequence number of the last event applied to its row."""
    plan = ProjectionPlan()
    known = dict(stored_seq)
    for ev in events:
        if ev.shard in plan.stalled:
            continue
        seen = known.get(ev.thread_id, 0)
        if ev.seq <= seen:
            plan.skipped += 1
        elif ev.seq == seen + 1:
            plan.apply.append(ev)
            known[ev.thread_id] = ev.seq
        else:
            plan.stalled[ev.shard] = plan.offsets.get(ev.shard, -1)
            plan.gaps[ev.thread_id] = seen
            continue
        plan.offsets[ev.shard] = max(plan.offsets.get(ev.shard, 0), ev.offset)
    # A stalled shard keeps the offset reached before its gap (or its old one: -1 = unchanged).
    for shard, offset in plan.stalled.items():
        if offset < 0:
            plan.offsets.pop(shard, None)
    return plan
