"""Read-model tables, after upstream thread-weaver's, plus projection offsets.

Deviations from upstream's V1 migration, on purpose: times are BIGINT epoch milliseconds (the
API's unit, no time-zone ambiguity); membership rows get an auto-increment id (their order is the
join order); messages carry `position` (event seq * 1000 + index) for a stable order and keep
`reply_message_id`; `parent_id` has no foreign key (a parent may be projected by another shard
later); `projection_offset` holds one offset per (projection, shard). Additions (revision 0002):
`thread_read_marker`, one row per (thread, account) naming the last message read and its
`position`, from which unread counts are computed.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.String(32)

thread = sa.Table(
    "thread",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("sequence_nr", sa.BigInteger, nullable=False),
    sa.Column("creator_id", ID, nullable=False),
    sa.Column("parent_id", ID, nullable=True),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("remarks", sa.String(255), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("removed_at", sa.BigInteger, nullable=True),
    sa.Index("thread_created_at_idx", "created_at", "id"),
)


def _membership(name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("thread_id", ID, sa.ForeignKey("thread.id"), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("adder_id", ID, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("thread_id", "account_id", name=f"{name}_thread_account_uk"),
        sa.Index(f"{name}_account_idx", "account_id", "thread_id"),
    )


thread_administrator_ids = _membership("thread_administrator_ids")
thread_member_ids = _membership("thread_member_ids")

thread_message = sa.Table(
    "thread_message",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("thread_id", ID, sa.ForeignKey("thread.id"), nullable=False),
    sa.Column("sender_id", ID, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("body", sa.String(1024), nullable=False),
    sa.Column("reply_message_id", ID, nullable=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("thread_message_thread_position_idx", "thread_id", "position"),
)

thread_read_marker = sa.Table(
    "thread_read_marker",
    metadata,
    sa.Column("thread_id", ID, sa.ForeignKey("thread.id"), primary_key=True),
    sa.Column("account_id", ID, primary_key=True),
    sa.Column("message_id", ID, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),  # the message's: kept if it is removed
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

projection_offset = sa.Table(
    "projection_offset",
    metadata,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("offset_value", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)
