"""The read model's edits, read markers, unread counts and keyset pages of messages (used by
sql.py, which executes the projection's row operations and answers the queries).

- An edit replaces a message's `body` and `updated_at`.
- A read marker row takes the position of the message it names, from that message's row (kept
  when the message is later removed: rows are soft-deleted), so unread counts never depend on
  which messages are still live.
- Unread count of an account on a thread: its live messages, sent by others, positioned after
  the account's marker (all of them without a marker).
- Message pages are keyset pages on `position`, which is unique per thread and never changes:
  a page after position P holds the same messages whatever is posted after it or removed.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ...application.ports import MessagePage, MessageView
from ...application.row_operations import EditMessage, MoveReadMarker
from .schema import thread_message, thread_read_marker


def edit_message(conn: sa.Connection, op: EditMessage) -> None:
    conn.execute(
        thread_message.update()
        .where(thread_message.c.thread_id == op.thread_id, thread_message.c.id == op.message_id)
        .values(body=op.body, updated_at=op.at)
    )


def move_read_marker(conn: sa.Connection, op: MoveReadMarker) -> None:
    """Replace the account's marker by one on `op.message_id` at that message's position (the
    domain moves markers forward only; the read model records what it decided)."""
    marker = thread_read_marker.c
    conn.execute(
        thread_read_marker.delete().where(
            marker.thread_id == op.thread_id, marker.account_id == op.account_id
        )
    )
    conn.execute(
        thread_read_marker.insert().from_select(
            ["thread_id", "account_id", "message_id", "position", "updated_at"],
            sa.select(
                thread_message.c.thread_id,
                sa.literal(op.account_id, sa.String),
                thread_message.c.id,
                thread_message.c.position,
                sa.literal(op.at, sa.BigInteger),
            ).where(
                thread_message.c.thread_id == op.thread_id,
                thread_message.c.id == op.message_id,
            ),
        )
    )


def unread_count(thread_id: Any, account_id: str) -> sa.Label[int]:
    """A scalar column: the unread count of `account_id` on the thread `thread_id` (a column of
    the enclosing query)."""
    message = thread_message.c
    marker = (
        sa.select(thread_read_marker.c.position)
        .where(
            thread_read_marker.c.thread_id == message.thread_id,
            thread_read_marker.c.account_id == account_id,
        )
        .scalar_subquery()
    )
    return (
        sa.select(sa.func.count())
        .select_from(thread_message)
        .where(
            message.thread_id == thread_id,
            message.deleted.is_(False),
            message.sender_id != account_id,
            message.position > sa.func.coalesce(marker, -1),
        )
        .scalar_subquery()
        .label("unread_count")
    )


async def message_page(
    conn: AsyncConnection, thread_id: str, after: int | None, offset: int, limit: int
) -> MessagePage:
    """Live messages of the thread above position `after`, skipping `offset`, at most `limit`;
    one more row is read to know whether another page follows."""
    message = thread_message.c
    query = sa.select(thread_message).where(
        message.thread_id == thread_id, message.deleted.is_(False)
    )
    if after is not None:
        query = query.where(message.position > after)
    rows = list(
        await conn.execute(query.order_by(message.position).offset(offset).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    views = [
        MessageView(
            r.id,
            r.thread_id,
            r.sender_id,
            r.type,
            r.body,
            r.reply_message_id,
            r.created_at,
            r.updated_at,
        )
        for r in rows
    ]
    return MessagePage(views, rows[-1].position if more and rows else None)
