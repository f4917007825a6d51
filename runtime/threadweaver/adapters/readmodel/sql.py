"""SqlReadModel: the ReadModel port over SQLAlchemy asyncio (sqlite+aiosqlite, mysql+aiomysql).

Writes: the projection hands over its events as row operations (application/row_operations.py):
this adapter executes them and knows no event. One transaction per batch holds the rows of every
applied event, the threads' new `sequence_nr` and the shards' offsets (exactly once in effect,
planned by application/projection.py). The batch is written by synchronous code
(`_apply_batch`): on MySQL it runs in the async engine's greenlet (`run_sync`); on an SQLite file
it runs on a synchronous engine in one writer thread, because aiosqlite hands every call
(execute, fetch, close...) to its thread and back, some forty hand-offs per batch, which cost
more than the SQL itself. Reads: the queries of the HTTP API, each
enforcing visibility (the caller administers or is a member of the thread; destroyed threads and
removed messages are not returned). Edits, read markers, unread counts and keyset pages of
messages are in chat.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ...application.ports import (
    ApplyResult,
    MessagePage,
    MessageView,
    ReadModelUnavailable,
    ThreadView,
)
from ...application.projection import plan_batch
from ...application.row_operations import (
    ProjectedEvent,
)
from . import chat
from .row_writes import IN_CHUNK, execute_operations, hot_statements
from .schema import (
    projection_offset,
    thread,
    thread_administrator_ids,
    thread_member_ids,
    thread_message,
)

log = logging.getLogger(__name__)


_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])


def _unavailable_when_disconnected(method: _Method) -> _Method:
    """Turn "the database cannot be reached" into ReadModelUnavailable (503 for queries);
    other database errors (bugs, schema problems) propagate as they are."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
        except (
            sa.exc.OperationalError,
            sa.exc.InterfaceError,
            ConnectionError,
            OSError,
            TimeoutError,
        ) as exc:
            raise ReadModelUnavailable(
                f"the read model is unavailable ({type(exc).__name__})"
            ) from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise ReadModelUnavailable("the read model connection was lost") from exc
            raise

    return cast(_Method, wrapper)


@dataclass(frozen=True, slots=True)
class ReadModelSettings:
    url: str
    pool_size: int = 10
    max_overflow: int = 10
    pool_recycle_seconds: int = 1800
    echo: bool = False

    @classmethod
    def sqlite(cls, path: str | Path) -> ReadModelSettings:
        return cls(url=f"sqlite+aiosqlite:///{Path(path)}")


def redact_url(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


class SqlReadModel:
    def __init__(self, settings: ReadModelSettings | str) -> None:
        if isinstance(settings, str):
            settings = ReadModelSettings(url=settings)
        self.settings = settings
        self.engine: AsyncEngine | None = None
        # SQLite file only: projection writes on a synchronous engine, in one thread
        self._sync_writer: sa.Engine | None = None
        self._write_executor: ThreadPoolExecutor | None = None

    @property
    def dialect(self) -> str:
        return sa.engine.make_url(self.settings.url).get_backend_name()

    async def start(self) -> None:
        if self.engine is not None:
            return
        url = sa.engine.make_url(self.settings.url)
        kwargs: dict[str, Any] = {"echo": self.settings.echo}
        if url.get_backend_name() == "sqlite":
            # a local file: no connection to lose, so no ping per checkout
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
                self._sync_writer = sa.create_engine(
                    url.set(drivername="sqlite"), echo=self.settings.echo
                )
                sa_event.listen(self._sync_writer, "connect", _sqlite_pragmas)
                self._write_executor = ThreadPoolExecutor(1, thread_name_prefix="readmodel-writer")
        else:
            kwargs.update(
                pool_pre_ping=True,
                pool_size=self.settings.pool_size,
                max_overflow=self.settings.max_overflow,
                pool_recycle=self.settings.pool_recycle_seconds,
            )
        self.engine = create_async_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            sa_event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def close(self) -> None:
        if self._write_executor is not None:
            executor, writer = self._write_executor, self._writer_engine
            self._write_executor = self._sync_writer = None
            await asyncio.get_running_loop().run_in_executor(executor, writer.dispose)
            executor.shutdown(wait=True)
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    @property
    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("the read model is not started (call start() first)")
        return self.engine

    @property
    def _writer_engine(self) -> sa.Engine:
        if self._sync_writer is None:
            raise RuntimeError("the read model's writer thread is not started")
        return self._sync_writer

    async def migrate(self) -> None:
        from .migrate import create_missing_database, upgrade_to_head

        if self.engine is None:
            await create_missing_database(self.settings.url)
        await self.start()
        async with self._engine.begin() as conn:
            await conn.run_sync(upgrade_to_head)

    @_unavailable_when_disconnected
    async def ping(self) -> None:
        async with self._engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- projection side --------------------------------------------------------------------
    async def load_offsets(self, projection: str, start: int, end: int) -> dict[int, int]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(projection_offset.c.shard, projection_offset.c.offset_value).where(
                    projection_offset.c.projection == projection,
                    projection_offset.c.shard >= start,
                    projection_offset.c.shard < end,
                )
            )
            return {r.shard: r.offset_value for r in rows}

    async def apply(self, projection: str, events: Sequence[ProjectedEvent]) -> ApplyResult:
        if not events:
            return ApplyResult(0, 0, {}, {})
        if self._write_executor is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self._write_executor, self._apply_in_writer_thread, projection, events
            )
        async with self._engine.begin() as conn:
            return await conn.run_sync(self._apply_batch, projection, events)

    def _apply_in_writer_thread(
        self, projection: str, events: Sequence[ProjectedEvent]
    ) -> ApplyResult:
        with self._writer_engine.begin() as conn:
            return self._apply_batch(conn, projection, events)

    def _apply_batch(
        self, conn: sa.Connection, projection: str, events: Sequence[ProjectedEvent]
    ) -> ApplyResult:
        """The whole batch in the caller's transaction (synchronous: see the module docstring)."""
        sql = hot_statements(conn.dialect)
        thread_ids = list({ev.thread_id for ev in events})
        stored: dict[str, int] = {}
        for i in range(0, len(thread_ids), IN_CHUNK):
            chunk = thread_ids[i : i + IN_CHUNK]
            rows = conn.exec_driver_sql(sql.sequence_nrs(len(chunk)), tuple(chunk))
            stored.update((r[0], r[1]) for r in rows)
        plan = plan_batch(events, stored)
        execute_operations(conn, sql, [op for ev in plan.apply for op in ev.operations])
        if plan.offsets:
            now = int(time.time() * 1000)
            conn.exec_driver_sql(
                sql.save_offset,
                [(projection, shard, offset, now) for shard, offset in plan.offsets.items()],
            )
        return ApplyResult(len(plan.apply), plan.skipped, plan.offsets, plan.stalled, plan.gaps)

    # -- query side -------------------------------------------------------------------------
    @staticmethod
    def _visible(thread_id: Any, account_id: str) -> sa.ColumnElement[bool]:
        return sa.or_(
            sa.exists().where(
                thread_administrator_ids.c.thread_id == thread_id,
                thread_administrator_ids.c.account_id == account_id,
            ),
            sa.exists().where(
                thread_member_ids.c.thread_id == thread_id,
                thread_member_ids.c.account_id == account_id,
            ),
        )

    async def _is_visible(self, conn: AsyncConnection, thread_id: str, account_id: str) -> bool:
        row = await conn.execute(
            sa.select(thread.c.id).where(
                thread.c.id == thread_id,
                thread.c.deleted.is_(False),
                self._visible(thread.c.id, account_id),
            )
        )
        return row.first() is not None

    @_unavailable_when_disconnected
    async def get_thread(self, thread_id: str, account_id: str) -> ThreadView | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(thread, chat.unread_count(thread.c.id, account_id)).where(
                        thread.c.id == thread_id,
                        thread.c.deleted.is_(False),
                        self._visible(thread.c.id, account_id),
                    )
                )
            ).first()
            return _thread_view(row) if row else None

    @_unavailable_when_disconnected
    async def list_threads(self, account_id: str, offset: int, limit: int) -> list[ThreadView]:
        mine = sa.union(
            sa.select(thread_administrator_ids.c.thread_id).where(
                thread_administrator_ids.c.account_id == account_id
            ),
            sa.select(thread_member_ids.c.thread_id).where(
                thread_member_ids.c.account_id == account_id
            ),
        ).subquery()
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                sa.select(thread, chat.unread_count(thread.c.id, account_id))
                .join(mine, mine.c.thread_id == thread.c.id)
                .where(thread.c.deleted.is_(False))
                .order_by(thread.c.created_at, thread.c.id)
                .offset(offset)
                .limit(limit)
            )
            return [_thread_view(r) for r in rows]

    @_unavailable_when_disconnected
    async def _list_ids(
        self, table: sa.Table, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        async with self._engine.connect() as conn:
            if not await self._is_visible(conn, thread_id, account_id):
                return None
            rows = await conn.execute(
                sa.select(table.c.account_id)
                .where(table.c.thread_id == thread_id)
                .order_by(table.c.id)
                .offset(offset)
                .limit(limit)
            )
            return [r.account_id for r in rows]

    async def list_administrator_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        return await self._list_ids(thread_administrator_ids, thread_id, account_id, offset, limit)

    async def list_member_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        return await self._list_ids(thread_member_ids, thread_id, account_id, offset, limit)

    async def list_messages(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[MessageView] | None:
        page = await self.list_messages_page(thread_id, account_id, None, offset, limit)
        return None if page is None else page.messages

    @_unavailable_when_disconnected
    async def list_messages_page(
        self, thread_id: str, account_id: str, after: int | None, offset: int, limit: int
    ) -> MessagePage | None:
        async with self._engine.connect() as conn:
            if not await self._is_visible(conn, thread_id, account_id):
                return None
            return await chat.message_page(conn, thread_id, after, offset, limit)

    # -- maintenance ------------------------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """Row counts per table (live rows), for tests, benchmarks and diagnostics."""
        async with self._engine.connect() as conn:
            out = {}
            for name, table, cond in (
                ("threads", thread, thread.c.deleted.is_(False)),
                ("administrators", thread_administrator_ids, sa.true()),
                ("members", thread_member_ids, sa.true()),
                ("messages", thread_message, thread_message.c.deleted.is_(False)),
            ):
                out[name] = (
                    await conn.execute(sa.select(sa.func.count()).select_from(table).where(cond))
                ).scalar_one()
            return out


def _thread_view(r: Any) -> ThreadView:
    return ThreadView(
        r.id,
        r.creator_id,
        r.parent_id,
        r.title,
        r.remarks,
        r.created_at,
        r.updated_at,
        r.unread_count,
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")  # the offset is in the same file: consistent
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
