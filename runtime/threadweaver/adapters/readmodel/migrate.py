"""Schema migrations with Alembic, run in-process (`threadweaver migrate`, the operator's Job)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


async def create_missing_database(url: str) -> None:
    """MySQL: create the URL's database if it does not exist yet (a rebuild's new database,
    docs/operator.md); the migrating user needs the CREATE privilege on it. SQLite creates its
    file by itself."""
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "mysql" or not parsed.database:
        return
    name = parsed.database.replace("`", "``")
    engine = create_async_engine(parsed._replace(database=None))  # set() ignores None
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    f"CREATE DATABASE IF NOT EXISTS `{name}` "
                    "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
                )
            )
    finally:
        await engine.dispose()


def upgrade_to_head(connection: sa.Connection) -> None:
    """Upgrade the schema of a synchronous SQLAlchemy connection to the latest revision."""
    command.upgrade(alembic_config(connection), "head")


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration found in {MIGRATIONS}")
    return head
