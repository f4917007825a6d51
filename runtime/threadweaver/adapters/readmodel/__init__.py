"""The SQL read model (SQLAlchemy asyncio): SQLite embedded, MySQL/MariaDB in production."""

from .sql import ReadModelSettings, SqlReadModel

__all__ = ["ReadModelSettings", "SqlReadModel"]
