"""Read markers: one row per (thread, account) naming the last message the account has read.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(32)
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "thread_read_marker",
        sa.Column("thread_id", ID, sa.ForeignKey("thread.id"), primary_key=True),
        sa.Column("account_id", ID, primary_key=True),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        **MYSQL)


def downgrade() -> None:
    op.drop_table("thread_read_marker")
