"""Read-only readers of the embedded runtime's SQLite files (journal.db, readmodel.db), beside
the running server (WAL lets them read while it writes): counts, thread ids, the projection
backlog."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def journal_counter(data_dir: Path, sql: str = "SELECT MAX(ordering) FROM journal") -> Any:
    """A cheap reader of the runtime's journal file (read-only; WAL lets it read beside the
    writer): by default the number of events appended so far."""
    import sqlite3

    path = data_dir / "journal.db"

    def count() -> int:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute(sql).fetchone()[0] or 0
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    return count


def projection_backlog(data_dir: Path) -> int:
    """Events appended but not yet projected: the journal's last ordering minus the highest
    offset the read model stored (the projector applies in ordering order, so everything at or
    below that offset is done; orderings are consecutive with the SQLite journal)."""
    import sqlite3

    try:
        j = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True, timeout=5)
        r = sqlite3.connect(f"file:{data_dir / 'readmodel.db'}?mode=ro", uri=True, timeout=5)
        try:
            last = j.execute("SELECT MAX(ordering) FROM journal").fetchone()[0] or 0
            done = r.execute("SELECT MAX(offset_value) FROM projection_offset").fetchone()[0] or 0
            return max(0, last - done)
        finally:
            j.close()
            r.close()
    except sqlite3.Error:
        return -1


def drain_projection(data_dir: Path, timeout: float) -> dict[str, Any]:
    """Wait (bounded) until the read model has caught up with the journal; returns the backlog
    found, the seconds it took, and what was left if the bound was hit."""
    t0 = time.monotonic()
    backlog = projection_backlog(data_dir)
    left = backlog
    while left > 0 and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
        left = projection_backlog(data_dir)
    return {
        "backlog_events": backlog,
        "drain_s": round(time.monotonic() - t0, 2),
        "left_events": max(0, left),
    }


def journal_thread_ids(data_dir: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True, timeout=5)
    try:
        return [
            r[0][len("thread-") :]
            for r in conn.execute(
                "SELECT pid FROM journal WHERE seq = 1 AND type = 'ThreadCreated' ORDER BY ordering"
            )
        ]
    finally:
        conn.close()
