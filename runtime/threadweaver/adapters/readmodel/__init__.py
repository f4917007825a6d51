"""The SQL read model (SQLAlchemy asyncio): SQLite embedded, MySQL/MariaDB in production."""
from .sql import SqlReadModel, ReadModelSettings

__all__ = ["SqlReadModel", "ReadModelSettings"]
