"""What the read model has applied per thread: `AppliedSeqs` of application/read_your_writes.py
over the SQL read model's `thread.sequence_nr` (the seq of the last event projected into the
thread's row), one indexed primary-key read per call."""

from __future__ import annotations

import sqlalchemy as sa

from ...application.ports import ReadModelUnavailable
from .schema import thread
from .sql import SqlReadModel

_QUERY = sa.select(thread.c.sequence_nr).where(thread.c.id == sa.bindparam("thread_id"))


class SqlAppliedSeqs:
    """Reads through the read model's engine (started and closed by the read model)."""

    __slots__ = ("_read_model",)

    def __init__(self, read_model: SqlReadModel) -> None:
        self._read_model = read_model

    async def applied_seq(self, thread_id: str) -> int:
        engine = self._read_model.engine
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
