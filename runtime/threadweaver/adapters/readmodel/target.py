"""What a database holds before `threadweaver project` builds a read model into it: its tables,
its schema revision, the projection's checkpoints and a sample of its thread rows
(runtime/threadweaver/projection_target.py judges whether it is this journal's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic.script import ScriptDirectory

from .migrate import alembic_config, current_revision
from .schema import metadata, projection_offset, thread
from .sql import SqlReadModel

#: thread rows sampled at each end of the id order
SAMPLE = 10


@dataclass(frozen=True, slots=True)
class TargetState:
    tables: frozenset[str]  # every table of the database (schema)
    revision: str | None  # Alembic's version, None without alembic_version
    known_revisions: frozenset[str]  # the revisions of this code's migrations
    #: the projection's checkpoints: (count, lowest shard, highest shard), None without the table
    checkpoints: tuple[int, int, int] | None
    other_projections: tuple[str, ...]  # projection names of other checkpoints
    threads: tuple[tuple[str, int], ...]  # (thread id, sequence_nr) of some thread rows

    @property
    def empty(self) -> bool:
        return not self.tables

    @property
    def ours(self) -> frozenset[str]:
        return frozenset(metadata.tables) | {"alembic_version"}


def known_revisions() -> frozenset[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return frozenset(r.revision for r in script.walk_revisions())


async def inspect_target(read_model: SqlReadModel, projection: str) -> TargetState:
    """Read what the database of `read_model` (started) holds; raises SQLAlchemy's errors when it
    cannot be reached."""
    engine = read_model.engine
    if engine is None:
        raise RuntimeError("the read model is not started")
    async with engine.connect() as conn:
        return await conn.run_sync(_inspect, projection)


def _inspect(conn: sa.Connection, projection: str) -> TargetState:
    tables = frozenset(sa.inspect(conn).get_table_names())
    revision = current_revision(conn) if "alembic_version" in tables else None
    checkpoints = None
    others: tuple[str, ...] = ()
    if projection_offset.name in tables:
        c = projection_offset.c
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.min(c.shard), sa.func.max(c.shard)).where(
                c.projection == projection
            )
        ).one()
        checkpoints = (int(row[0]), int(row[1] or 0), int(row[2] or 0))
        others = tuple(
            r[0]
            for r in conn.execute(
                sa.select(c.projection).where(c.projection != projection).distinct().limit(5)
            )
        )
    threads: tuple[tuple[str, int], ...] = ()
    if thread.name in tables:
        rows: list[Any] = []
        for order in (thread.c.id.asc(), thread.c.id.desc()):
            rows += conn.execute(
                sa.select(thread.c.id, thread.c.sequence_nr).order_by(order).limit(SAMPLE)
            ).all()
        threads = tuple(sorted({(r[0], int(r[1])) for r in rows}))
    return TargetState(tables, revision, known_revisions(), checkpoints, others, threads)
