"""Whether a database may receive the read model `threadweaver project` builds from a journal.

Accepted: an empty database (it is migrated first), or a thread-weaver read model of this
journal (a build resumed after a kill, a read model to complete). Refused as foreign, with the
reason: tables of something else (no thread-weaver schema revision), a schema revision this code
does not know (another application's, or a newer thread-weaver's), checkpoints of shards this
journal does not have (another shard count), thread rows the journal does not have or has fewer
events of (another cluster's read model). The thread check reads a sample of the rows (each end
of the id order): cheap, and a read model of another journal has none of its threads in this one.
"""

from __future__ import annotations

from .adapters.readmodel.target import TargetState
from .application.ports import Journal
from .domain import thread_persistence_id

__all__ = ["journal_problems", "schema_problems"]


def schema_problems(state: TargetState, shard_count: int) -> list[str]:
    """What makes the database another application's or another shard count's (pure)."""
    if state.empty:
        return []
    problems: list[str] = []
    foreign = sorted(state.tables - state.ours)
    if state.revision is None:
        listed = ", ".join(sorted(state.tables)[:8])
        problems.append(
            f"it holds tables ({listed}) but no thread-weaver schema revision (alembic_version):"
            " not a thread-weaver read model"
        )
    elif state.revision not in state.known_revisions:
        problems.append(
            f"its schema revision {state.revision!r} is not one of this thread-weaver's"
            " (another application's, or a newer version's)"
        )
    elif foreign and not state.tables & (state.ours - {"alembic_version"}):
        problems.append(f"it holds other tables ({', '.join(foreign[:8])}) and none of ours")
    if state.checkpoints is not None:
        count, _, highest = state.checkpoints
        if count and highest >= shard_count:
            problems.append(
                f"it holds checkpoints of shards up to {highest}: built from a journal with "
                f"more than {shard_count} shards"
            )
    return problems


async def journal_problems(state: TargetState, journal: Journal) -> list[str]:
    """Thread rows of the sample that this journal does not have as far as the row says."""
    missing: list[str] = []
    for thread_id, seq in state.threads:
        highest = await journal.highest_seq(thread_persistence_id(thread_id))
        if highest < seq:
            missing.append(f"{thread_id} at event {seq}, the journal has {highest}")
    if not missing:
        return []
    return [
        f"{len(missing)} of the {len(state.threads)} thread rows sampled are ahead of the "
        f"journal (e.g. {missing[0]}): a read model of another journal (another cluster's?)"
    ]
