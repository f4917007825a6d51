"""Row operations executed in the projection's transaction: the statements the projection runs
for every batch, compiled once per dialect (`HotStatements`), and `execute_operations`, which
batches a transaction's inserts, defers removals and touches to one statement each at its end
and runs the chat rows (chat.py) in order. SqlReadModel (sql.py) calls it from its writer
thread."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ...application.row_operations import (
    AddAdministrators,
    AddMembers,
    AddMessages,
    DestroyThread,
    EditMessage,
    InsertThread,
    MoveReadMarker,
    RemoveAdministrators,
    RemoveMembers,
    RemoveMessages,
    RowOperation,
    TouchThread,
)
from . import chat, mysql_updates
from .schema import (
    projection_offset,
    thread,
    thread_administrator_ids,
    thread_member_ids,
    thread_message,
)

IN_CHUNK = 500  # ids per `IN (...)`: far below SQLite's and MySQL's parameter limits


class HotStatements:
    """The projection's frequent statements, compiled once per dialect to the driver's SQL and
    run with `exec_driver_sql` on tuples: SQLAlchemy's per-row parameter processing cost more
    than SQLite's own work for these plain inserts. Column orders are those of the tuples that
    `execute_operations` builds (checked here against the compiled statements)."""

    THREAD = (
        "id",
        "deleted",
        "sequence_nr",
        "creator_id",
        "parent_id",
        "title",
        "remarks",
        "created_at",
        "updated_at",
        "removed_at",
    )
    MEMBERSHIP = ("thread_id", "account_id", "adder_id", "created_at", "updated_at")
    MESSAGE = (
        "id",
        "deleted",
        "thread_id",
        "sender_id",
        "type",
        "body",
        "reply_message_id",
        "position",
        "created_at",
        "updated_at",
    )
    OFFSET = ("projection", "shard", "offset_value", "updated_at")
    TOUCH = ("b_seq", "b_updated_at", "b_id")
    REMOVE_MESSAGE = ("b_deleted", "b_updated_at", "b_thread_id", "b_id")
    DESTROY = ("b_deleted", "b_removed_at", "b_id")

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self.insert_thread = self._compile(thread.insert(), self.THREAD)
        self.insert_administrator = self._compile(
            thread_administrator_ids.insert(), self.MEMBERSHIP
        )
        self.insert_member = self._compile(thread_member_ids.insert(), self.MEMBERSHIP)
        self.insert_message = self._compile(thread_message.insert(), self.MESSAGE)
        self.touch_thread = self._compile(
            thread.update()
            .where(thread.c.id == sa.bindparam("b_id"))
            .values(
                sequence_nr=sa.bindparam("b_seq"),
                # NULL: an event that leaves the thread's update time (a read marker)
                updated_at=sa.func.coalesce(sa.bindparam("b_updated_at"), thread.c.updated_at),
            ),
            self.TOUCH,
        )
        self.remove_message = self._compile(
            thread_message.update()
            .where(
                thread_message.c.thread_id == sa.bindparam("b_thread_id"),
                thread_message.c.id == sa.bindparam("b_id"),
            )
            .values(deleted=sa.bindparam("b_deleted"), updated_at=sa.bindparam("b_updated_at")),
            self.REMOVE_MESSAGE,
        )
        self.destroy_thread = self._compile(
            thread.update()
            .where(thread.c.id == sa.bindparam("b_id"))
            .values(deleted=sa.bindparam("b_deleted"), removed_at=sa.bindparam("b_removed_at")),
            self.DESTROY,
        )
        upsert: sa.Insert
        if dialect.name == "mysql":
            from sqlalchemy.dialects import mysql

            mysql_upsert = mysql.insert(projection_offset)
            upsert = mysql_upsert.on_duplicate_key_update(
                offset_value=mysql_upsert.inserted.offset_value,
                updated_at=mysql_upsert.inserted.updated_at,
            )
        else:
            from sqlalchemy.dialects import sqlite

            sqlite_upsert = sqlite.insert(projection_offset)
            upsert = sqlite_upsert.on_conflict_do_update(
                index_elements=["projection", "shard"],
                set_={
                    "offset_value": sqlite_upsert.excluded.offset_value,
                    "updated_at": sqlite_upsert.excluded.updated_at,
                },
            )
        self.save_offset = self._compile(upsert, self.OFFSET)
        self._sequence_nrs: dict[int, str] = {}

    def _compile(self, statement: Any, order: tuple[str, ...]) -> str:
        compiled = statement.compile(dialect=self.dialect, column_keys=list(order))
        if tuple(compiled.positiontup or ()) != order:
            raise RuntimeError(f"{compiled}: parameters {compiled.positiontup}, expected {order}")
        return str(compiled)

    def sequence_nrs(self, n: int) -> str:
        """SELECT id, sequence_nr FROM thread WHERE id IN (n parameters)."""
        sql = self._sequence_nrs.get(n)
        if sql is None:
            mark = "?" if self.dialect.paramstyle == "qmark" else "%s"
            sql = f"SELECT id, sequence_nr FROM thread WHERE id IN ({', '.join([mark] * n)})"
            if len(self._sequence_nrs) < 64:
                self._sequence_nrs[n] = sql
        return sql


@functools.lru_cache(maxsize=8)
def hot_statements(dialect: sa.Dialect) -> HotStatements:
    return HotStatements(dialect)


def execute_operations(
    conn: sa.Connection, sql: HotStatements, operations: Sequence[RowOperation]
) -> None:
    """`operations` in few statements: inserts are collected and sent as one executemany per
    table; a membership removal first flushes what is pending, so that e.g. leave-then-join of
    one id keeps its order. Message removals and thread destructions are sent at the end, one
    executemany each, after every insert of the batch (a message id is never added again, and
    nothing follows a thread's destruction), so that they do not cut the inserts into many
    small statements. Touches are coalesced into one update per thread at the end (the last one
    wins; an inserted thread's row has its sequence number and time already)."""
    threads: list[tuple] = []
    administrators: list[tuple] = []
    members: list[tuple] = []
    messages: list[tuple] = []
    pending = (
        (sql.insert_thread, threads),
        (sql.insert_administrator, administrators),
        (sql.insert_member, members),
        (sql.insert_message, messages),
    )

    def flush() -> None:
        for statement, rows in pending:  # thread first: the others reference it
            if rows:
                conn.exec_driver_sql(statement, rows)
                rows.clear()

    touched: dict[str, tuple[int, int | None, str]] = {}
    removed: list[tuple[bool, int, str, str]] = []
    destroyed: list[tuple[bool, int, str]] = []
    for op in operations:
        match op:
            case TouchThread():
                at = op.at
                if at is None and op.thread_id in touched:  # keep the batch's last time
                    at = touched[op.thread_id][1]
                touched[op.thread_id] = (op.sequence_nr, at, op.thread_id)
            case AddMessages():
                messages += [
                    (
                        m.id,
                        False,
                        op.thread_id,
                        op.sender_id,
                        m.type,
                        m.body,
                        m.reply_message_id,
                        m.position,
                        op.at,
                        op.at,
                    )
                    for m in op.messages
                ]
            case AddAdministrators():
                administrators += [
                    (op.thread_id, a, op.adder_id, op.at, op.at) for a in op.account_ids
                ]
            case AddMembers():
                members += [(op.thread_id, a, op.adder_id, op.at, op.at) for a in op.account_ids]
            case InsertThread():
                threads.append(
                    (
                        op.thread_id,
                        False,
                        op.sequence_nr,
                        op.creator_id,
                        op.parent_id,
                        op.title,
                        op.remarks,
                        op.created_at,
                        op.created_at,
                        None,
                    )
                )
                touched.pop(op.thread_id, None)
            case RemoveAdministrators():
                flush()
                _delete_members(conn, thread_administrator_ids, op.thread_id, op.account_ids)
            case RemoveMembers():
                flush()
                _delete_members(conn, thread_member_ids, op.thread_id, op.account_ids)
            case RemoveMessages():
                removed += [(True, op.at, op.thread_id, m) for m in op.message_ids]
            case EditMessage():
                flush()
                chat.edit_message(conn, op)
            case MoveReadMarker():
                flush()  # the marker takes its message's position: that row must be there
                chat.move_read_marker(conn, op)
            case DestroyThread():
                destroyed.append((True, op.at, op.thread_id))
            case _:
                raise TypeError(f"unknown row operation {op!r}")
    flush()
    mysql = conn.dialect.name == "mysql"  # its UPDATE executemany: a round trip per row
    if removed:
        if mysql:
            mysql_updates.remove_messages(conn, removed)
        else:
            conn.exec_driver_sql(sql.remove_message, removed)
    if destroyed:
        conn.exec_driver_sql(sql.destroy_thread, destroyed)
    if touched:
        if mysql:
            mysql_updates.touch_threads(conn, list(touched.values()))
        else:
            conn.exec_driver_sql(sql.touch_thread, list(touched.values()))


def _delete_members(
    conn: sa.Connection, table: sa.Table, thread_id: str, account_ids: Sequence[str]
) -> None:
    if account_ids:
        conn.execute(
            table.delete().where(
                table.c.thread_id == thread_id, table.c.account_id.in_(account_ids)
            )
        )
