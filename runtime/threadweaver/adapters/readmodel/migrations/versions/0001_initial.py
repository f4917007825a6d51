"""Initial read-model schema: thread, memberships, messages, projection offsets.

Revision ID: 0001
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(32)
ROW_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "thread",
        sa.Column("id", ID, primary_key=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("sequence_nr", sa.BigInteger, nullable=False),
        sa.Column("creator_id", ID, nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("title", sa.String(255), nullable=False),
        sa.Column("remarks", sa.String(255), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("removed_at", sa.BigInteger, nullable=True),
        **MYSQL)
    op.create_index("thread_created_at_idx", "thread", ["created_at", "id"])
    for name in ("thread_administrator_ids", "thread_member_ids"):
        op.create_table(
            name,
            sa.Column("id", ROW_ID, primary_key=True, autoincrement=True),
            sa.Column("thread_id", ID, sa.ForeignKey("thread.id"), nullable=False),
            sa.Column("account_id", ID, nullable=False),
            sa.Column("adder_id", ID, nullable=False),
            sa.Column("created_at", sa.BigInteger, nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False),
            sa.UniqueConstraint("thread_id", "account_id", name=f"{name}_thread_account_uk"),
            **MYSQL)
        op.create_index(f"{name}_account_idx", name, ["account_id", "thread_id"])
    op.create_table(
        "thread_message",
        sa.Column("id", ID, primary_key=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("thread_id", ID, sa.ForeignKey("thread.id"), nullable=False),
        sa.Column("sender_id", ID, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("body", sa.String(1024), nullable=False),
        sa.Column("reply_message_id", ID, nullable=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL)
    op.create_index("thread_message_thread_position_idx", "thread_message",
                    ["thread_id", "position"])
    op.create_table(
        "projection_offset",
        sa.Column("projection", sa.String(64), primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("offset_value", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL)


def downgrade() -> None:
    for name in ("projection_offset", "thread_message", "thread_member_ids",
                 "thread_administrator_ids", "thread"):
        op.drop_table(name)
