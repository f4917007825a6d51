"""The databases of one read-model server: a read-model URL's database, and the URL of another
database of the same server with the same credentials (a rebuild's target,
application/read_model_switch.py). On SQLite a "database" is a file beside the URL's file."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from .sql import ReadModelSettings, SqlReadModel

__all__ = ["database_of", "open_database", "with_database"]


def database_of(url: str) -> str:
    """The database a read-model URL names (SQLite: the file's name without its suffix)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return Path(parsed.database or "readmodel").stem
    return parsed.database or ""


def with_database(url: str, database: str) -> str:
    """``url`` naming ``database`` instead (same server, user and password)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "readmodel.db")
        parsed = parsed.set(database=str(path.with_name(f"{database}{path.suffix or '.db'}")))
    else:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def open_database(url: str, database: str) -> SqlReadModel:
    """The started read model of ``database`` on the server of ``url`` (not migrated: the
    operator's migration Job migrated it)."""
    read_model = SqlReadModel(ReadModelSettings(url=with_database(url, database)))
    await read_model.start()
    return read_model
