import pytest

from threadweaver.adapters.journal.sqlite import SqliteJournal


@pytest.fixture
async def journal(tmp_path):
    """A real SQLite journal in a temp file (64 shards, no fsync: these tests are about logic)."""
    j = SqliteJournal(tmp_path / "journal.db", shards=64, synchronous="off")
    await j.start()
    yield j
    await j.close()
