"""Many single-row UPDATEs as one statement, for MySQL/MariaDB.

The drivers send an ``executemany`` of an INSERT as one multi-row statement, but one of an
UPDATE as one round trip per row: a projected batch of 2,000 events (a rebuild's) touched tens
of threads and removed tens of messages, each a round trip. Here each kind is one statement per
chunk: ``SET col = CASE id WHEN ? THEN ? ... END ... WHERE id IN (...)``, the same effect as
the rows one by one (ids are primary keys; a row given twice keeps its last values, as the
executemany would). SQLite runs its executemany in process and keeps it (adapters/readmodel/
sql.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

CHUNK = 200  # rows per statement: a few hundred parameters


def _last_per_id(rows: Sequence[tuple], id_index: int) -> list[tuple]:
    return list({row[id_index]: row for row in rows}.values())


def _case(column: str, count: int) -> str:
    return f"{column} = CASE id {' '.join(['WHEN %s THEN %s'] * count)} END"


def touch_threads(conn: sa.Connection, rows: Sequence[tuple[int, int, str]]) -> None:
    """``(sequence_nr, updated_at, id)`` rows: UPDATE thread SET sequence_nr, updated_at."""
    rows = _last_per_id(rows, 2)
    for i in range(0, len(rows), CHUNK):
        chunk = rows[i : i + CHUNK]
        n = len(chunk)
        sql = (
            f"UPDATE thread SET {_case('sequence_nr', n)}, {_case('updated_at', n)} "
            f"WHERE id IN ({', '.join(['%s'] * n)})"
        )
        params = [v for seq, _, tid in chunk for v in (tid, seq)]
        params += [v for _, at, tid in chunk for v in (tid, at)]
        params += [tid for _, _, tid in chunk]
        conn.exec_driver_sql(sql, tuple(params))


def remove_messages(conn: sa.Connection, rows: Sequence[tuple[bool, int, str, str]]) -> None:
    """``(deleted, updated_at, thread_id, id)`` rows: UPDATE thread_message SET deleted,
    updated_at WHERE thread_id = ? AND id = ?."""
    rows = _last_per_id(rows, 3)
    for i in range(0, len(rows), CHUNK):
        chunk = rows[i : i + CHUNK]
        n = len(chunk)
        sql = (
            f"UPDATE thread_message SET {_case('deleted', n)}, {_case('updated_at', n)} "
            f"WHERE id IN ({', '.join(['%s'] * n)}) "
            f"AND thread_id = CASE id {' '.join(['WHEN %s THEN %s'] * n)} END"
        )
        params = [v for deleted, _, _, mid in chunk for v in (mid, deleted)]
        params += [v for _, at, _, mid in chunk for v in (mid, at)]
        params += [mid for *_, mid in chunk]
        params += [v for _, _, tid, mid in chunk for v in (mid, tid)]
        conn.exec_driver_sql(sql, tuple(params))
