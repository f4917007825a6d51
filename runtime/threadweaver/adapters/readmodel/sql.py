"""SqlReadModel: the ReadModel port over SQLAlchemy asyncio (sqlite+aiosqlite, mysql+aiomysql).

Writes: one transaction per batch holds the rows of every applied event, the threads' new
`sequence_nr` and the shards' offsets (DESIGN §4: exactly once in effect). Reads: the queries of
the HTTP API, each enforcing visibility (the caller administers or is a member of the thread;
destroyed threads and removed messages are not returned).
"""
from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from ...application.ports import (
    ApplyResult, MessageView, ReadModelUnavailable, StoredEvent, ThreadView,
)
from ...application.projection import plan_batch
from .schema import (
    projection_offset, thread, thread_administrator_ids, thread_member_ids, thread_message,
)

log = logging.getLogger(__name__)
MESSAGE_POSITION_STRIDE = 1000   # > limits.MESSAGES_PER_REQUEST_LIMIT - 1


def _unavailable_when_disconnected(method):
    """Turn "the database cannot be reached" into ReadModelUnavailable (503 for queries);
    other database errors (bugs, schema problems) propagate as they are."""
    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        try:
            return await method(self, *args, **kwargs)
        except (sa.exc.OperationalError, sa.exc.InterfaceError, ConnectionError, OSError,
                TimeoutError) as exc:
            raise ReadModelUnavailable(f"the read model is unavailable ({type(exc).__name__})") from exc
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated:
                raise ReadModelUnavailable("the read model connection was lost") from exc
            raise
    return wrapper


@dataclass(frozen=True, slots=True)
class ReadModelSettings:
    url: str
    pool_size: int = 10
    max_overflow: int = 10
    pool_recycle_seconds: int = 1800
    echo: bool = False

    @classmethod
    def sqlite(cls, path: str | Path) -> "ReadModelSettings":
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

    @property
    def dialect(self) -> str:
        return sa.engine.make_url(self.settings.url).get_backend_name()

    async def start(self) -> None:
        if self.engine is not None:
            return
        url = sa.engine.make_url(self.settings.url)
        kwargs: dict[str, Any] = {"echo": self.settings.echo, "pool_pre_ping": True}
        if url.get_backend_name() == "sqlite":
            if url.database and url.database != ":memory:":
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs.update(pool_size=self.settings.pool_size,
                          max_overflow=self.settings.max_overflow,
                          pool_recycle=self.settings.pool_recycle_seconds)
        self.engine = create_async_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            sa_event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            self.engine = None

    async def migrate(self) -> None:
        from .migrate import upgrade_to_head
        await self.start()
        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade_to_head)

    @_unavailable_when_disconnected
    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- projection side --------------------------------------------------------------------
    async def load_offsets(self, projection: str, start: int, end: int) -> dict[int, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(projection_offset.c.shard, projection_offset.c.offset_value).where(
                    projection_offset.c.projection == projection,
                    projection_offset.c.shard >= start, projection_offset.c.shard < end))
            return {r.shard: r.offset_value for r in rows}

    async def apply(self, projection: str, events: Sequence[StoredEvent]) -> ApplyResult:
        if not events:
            return ApplyResult(0, 0, {}, {})
        async with self.engine.begin() as conn:
            thread_ids = {ev.payload["threadId"] for ev in events}
            rows = await conn.execute(sa.select(thread.c.id, thread.c.sequence_nr)
                                      .where(thread.c.id.in_(thread_ids)))
            stored = {"thread-" + r.id: r.sequence_nr for r in rows}
            plan = plan_batch(events, stored)
            await self._apply_events(conn, plan.apply)
            if plan.offsets:
                await self._save_offsets(conn, projection, plan.offsets)
        return ApplyResult(len(plan.apply), plan.skipped, plan.offsets, plan.stalled)

    async def _save_offsets(self, conn: AsyncConnection, projection: str,
                            offsets: dict[int, int]) -> None:
        now = int(time.time() * 1000)
        values = [{"projection": projection, "shard": s, "offset_value": o, "updated_at": now}
                  for s, o in offsets.items()]
        if self.dialect == "mysql":
            from sqlalchemy.dialects.mysql import insert
            stmt = insert(projection_offset)
            stmt = stmt.on_duplicate_key_update(offset_value=stmt.inserted.offset_value,
                                                updated_at=stmt.inserted.updated_at)
        else:
            from sqlalchemy.dialects.sqlite import insert
            stmt = insert(projection_offset)
            stmt = stmt.on_conflict_do_update(
                index_elements=["projection", "shard"],
                set_={"offset_value": stmt.excluded.offset_value,
                      "updated_at": stmt.excluded.updated_at})
        await conn.execute(stmt, values)

    async def _apply_events(self, conn: AsyncConnection, events: Sequence[StoredEvent]) -> None:
        """Rows of `events`, in few statements: inserts are collected and sent as one
        executemany per table; a delete or soft-delete first flushes what is pending, so that
        e.g. leave-then-join of one id keeps its order. Each touched thread gets one update of
        `updated_at` and `sequence_nr` at the end."""
        pending: dict[sa.Table, list[dict[str, Any]]] = {
            thread: [], thread_administrator_ids: [], thread_member_ids: [], thread_message: []}

        async def flush() -> None:
            for table, rows in pending.items():   # thread first: the others reference it
                if rows:
                    await conn.execute(table.insert(), rows)
                    rows.clear()

        touched: dict[str, dict[str, Any]] = {}
        for ev in events:
            p = ev.payload
            tid, actor, at = p["threadId"], p["accountId"], p["occurredAt"]
            kind = ev.type
            if kind == "ThreadCreated":
                pending[thread].append(dict(
                    id=tid, deleted=False, sequence_nr=ev.seq, creator_id=actor,
                    parent_id=p.get("parentThreadId"), title=p["title"], remarks=p.get("remarks"),
                    created_at=at, updated_at=at, removed_at=None))
                pending[thread_administrator_ids] += _member_rows(tid, p["administratorIds"], actor, at)
                pending[thread_member_ids] += _member_rows(tid, p.get("memberIds", ()), actor, at)
            elif kind == "AdministratorIdsJoined":
                pending[thread_administrator_ids] += _member_rows(tid, p["administratorIds"], actor, at)
            elif kind == "MemberIdsJoined":
                pending[thread_member_ids] += _member_rows(tid, p["memberIds"], actor, at)
            elif kind == "MessagesAdded":
                pending[thread_message] += [
                    {"id": m["id"], "deleted": False, "thread_id": tid, "sender_id": actor,
                     "type": "text", "body": m["text"], "reply_message_id": m.get("replyMessageId"),
                     "position": ev.seq * MESSAGE_POSITION_STRIDE + i,
                     "created_at": at, "updated_at": at}
                    for i, m in enumerate(p["messages"])]
            elif kind in ("AdministratorIdsLeft", "MemberIdsLeft", "MessagesRemoved",
                          "ThreadDestroyed"):
                await flush()
                if kind == "AdministratorIdsLeft":
                    await _delete_members(conn, thread_administrator_ids, tid, p["administratorIds"])
                elif kind == "MemberIdsLeft":
                    await _delete_members(conn, thread_member_ids, tid, p["memberIds"])
                elif kind == "MessagesRemoved":
                    if p["messageIds"]:
                        await conn.execute(thread_message.update().where(
                            thread_message.c.thread_id == tid,
                            thread_message.c.id.in_(p["messageIds"])
                        ).values(deleted=True, updated_at=at))
                else:
                    await conn.execute(thread.update().where(thread.c.id == tid)
                                       .values(deleted=True, removed_at=at))
            else:
                raise ValueError(f"unknown event type {kind!r} at {ev.pid}#{ev.seq}")
            touched[tid] = {"b_id": tid, "b_updated_at": at, "b_seq": ev.seq}
        await flush()
        if touched:
            await conn.execute(
                thread.update().where(thread.c.id == sa.bindparam("b_id"))
                .values(updated_at=sa.bindparam("b_updated_at"), sequence_nr=sa.bindparam("b_seq")),
                list(touched.values()))

    # -- query side -------------------------------------------------------------------------
    @staticmethod
    def _visible(thread_id: Any, account_id: str) -> sa.ColumnElement[bool]:
        return sa.or_(
            sa.exists().where(thread_administrator_ids.c.thread_id == thread_id,
                              thread_administrator_ids.c.account_id == account_id),
            sa.exists().where(thread_member_ids.c.thread_id == thread_id,
                              thread_member_ids.c.account_id == account_id))

    async def _is_visible(self, conn: AsyncConnection, thread_id: str, account_id: str) -> bool:
        row = await conn.execute(sa.select(thread.c.id).where(
            thread.c.id == thread_id, thread.c.deleted.is_(False),
            self._visible(thread.c.id, account_id)))
        return row.first() is not None

    @_unavailable_when_disconnected
    async def get_thread(self, thread_id: str, account_id: str) -> ThreadView | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(thread).where(
                thread.c.id == thread_id, thread.c.deleted.is_(False),
                self._visible(thread.c.id, account_id)))).first()
            return _thread_view(row) if row else None

    @_unavailable_when_disconnected
    async def list_threads(self, account_id: str, offset: int, limit: int) -> list[ThreadView]:
        mine = sa.union(
            sa.select(thread_administrator_ids.c.thread_id)
            .where(thread_administrator_ids.c.account_id == account_id),
            sa.select(thread_member_ids.c.thread_id)
            .where(thread_member_ids.c.account_id == account_id)).subquery()
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                sa.select(thread).join(mine, mine.c.thread_id == thread.c.id)
                .where(thread.c.deleted.is_(False))
                .order_by(thread.c.created_at, thread.c.id).offset(offset).limit(limit))
            return [_thread_view(r) for r in rows]

    @_unavailable_when_disconnected
    async def _list_ids(self, table: sa.Table, thread_id: str, account_id: str, offset: int,
                        limit: int) -> list[str] | None:
        async with self.engine.connect() as conn:
            if not await self._is_visible(conn, thread_id, account_id):
                return None
            rows = await conn.execute(sa.select(table.c.account_id)
                                      .where(table.c.thread_id == thread_id)
                                      .order_by(table.c.id).offset(offset).limit(limit))
            return [r.account_id for r in rows]

    async def list_administrator_ids(self, thread_id: str, account_id: str, offset: int,
                                     limit: int) -> list[str] | None:
        return await self._list_ids(thread_administrator_ids, thread_id, account_id, offset, limit)

    async def list_member_ids(self, thread_id: str, account_id: str, offset: int,
                              limit: int) -> list[str] | None:
        return await self._list_ids(thread_member_ids, thread_id, account_id, offset, limit)

    @_unavailable_when_disconnected
    async def list_messages(self, thread_id: str, account_id: str, offset: int,
                            limit: int) -> list[MessageView] | None:
        async with self.engine.connect() as conn:
            if not await self._is_visible(conn, thread_id, account_id):
                return None
            rows = await conn.execute(
                sa.select(thread_message).where(thread_message.c.thread_id == thread_id,
                                                thread_message.c.deleted.is_(False))
                .order_by(thread_message.c.position).offset(offset).limit(limit))
            return [MessageView(r.id, r.thread_id, r.sender_id, r.type, r.body,
                                r.reply_message_id, r.created_at, r.updated_at) for r in rows]

    # -- maintenance ------------------------------------------------------------------------
    async def counts(self) -> dict[str, int]:
        """Row counts per table (live rows), for tests, benchmarks and diagnostics."""
        async with self.engine.connect() as conn:
            out = {}
            for name, table, cond in (
                    ("threads", thread, thread.c.deleted.is_(False)),
                    ("administrators", thread_administrator_ids, sa.true()),
                    ("members", thread_member_ids, sa.true()),
                    ("messages", thread_message, thread_message.c.deleted.is_(False))):
                out[name] = (await conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(cond))).scalar_one()
            return out


def _member_rows(thread_id: str, account_ids: Sequence[str], adder: str,
                 at: int) -> list[dict[str, Any]]:
    return [{"thread_id": thread_id, "account_id": a, "adder_id": adder, "created_at": at,
             "updated_at": at} for a in account_ids]


async def _delete_members(conn: AsyncConnection, table: sa.Table, thread_id: str,
                          account_ids: Sequence[str]) -> None:
    if account_ids:
        await conn.execute(table.delete().where(table.c.thread_id == thread_id,
                                                table.c.account_id.in_(account_ids)))


def _thread_view(r: Any) -> ThreadView:
    return ThreadView(r.id, r.creator_id, r.parent_id, r.title, r.remarks, r.created_at,
                      r.updated_at)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")   # the offset is in the same file: consistent
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
