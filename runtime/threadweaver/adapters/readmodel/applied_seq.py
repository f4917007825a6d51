"""What the read model has applied per thread: `AppliedSeqs` of application/read_your_writes.py
over the SQL read model's `thread.sequence_nr` (the seq of the last event projected into the
thread's row), one indexed primary-key read per call, on the database queries read (a rebuild
moves it: application/read_model_switch.py)."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from ...application.ports import ReadModel, ReadModelUnavailable
from .schema import thread
from .sql import SqlReadModel

_QUERY = sa.select(thread.c.sequence_nr).where(thread.c.id == sa.bindparam("thread_id"))


class SqlAppliedSeqs:
    """Reads through the engine of the read model queries use (`queries()`, called each time:
    started and closed by its owner)."""

    __slots__ = ("_queries",)

    def __init__(self, queries: Callable[[], ReadModel]) -> None:
        self._queries = queries

    async def applied_seq(self, thread_id: str) -> int:
        read_model = self._queries()
        if not isinstance(read_model, SqlReadModel):
            raise TypeError(f"min_seq needs an SQL read model, not {type(read_model).__name__}")
        engine = read_model.engine
        if engine is None:
            raise ReadModelUnavailable("the read model is not started")
        try:
            async with engine.connect() as conn:
                value = (await conn.execute(_QUERY, {"thread_id": thread_id})).scalar()
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            sa.exc.TimeoutError,
            OSError,
        ) as exc:
            raise ReadModelUnavailable(
                f"the read model is unavailable ({type(exc).__name__})"
            ) from exc
        return int(value or 0)
