"""Workload 2: journal appends, SqliteJournal vs the `eventsourcing` library's SQLite recorder.

Both append the same events (one event per append call, a MessagesAdded-shaped JSON payload
serialised with orjson in the timed section) to the same number of aggregates, with the same
number of concurrent writers, each append a durable commit, on a file with the same settings
(WAL, synchronous=FULL; for eventsourcing the pragma is set on every pooled connection and
checked). Each measurement is a fresh process pinned to the server core and a fresh file.

- ours: `SqliteJournal.append(pid, expected_seq, [event])` from C asyncio tasks (the runtime's
  way: appends of concurrent commands share a group commit).
- eventsourcing: `SQLiteApplicationRecorder.insert_events([stored_event])` (the recorder an
  `eventsourcing.application.Application` uses with PERSISTENCE_MODULE=eventsourcing.sqlite,
  with a notification log, like our global ordering) from C threads: the library is
  synchronous and its connection pool is thread-safe, so threads are its own way to write
  concurrently (its pool lets one writer in at a time). Pool size = C connections.
Writer w owns aggregates w, w+C, w+2C... and appends their events in order, round-robin.

    python -m bench.w2_journal --backend ours|eventsourcing --events N --aggregates A
                                --concurrency C --path FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from .base import PYTHON, SERVER_CORE, log
from .processes import run_json
from .profiles import Profile
from .stats import median, ratio

ACCOUNT = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"


def payload(aggregate: int, n: int) -> dict[str, Any]:
    return {
        "schema": 1,
        "threadId": f"AGG{aggregate:023d}",
        "accountId": ACCOUNT,
        "occurredAt": 1_700_000_000_000 + n,
        "messages": [
            {
                "id": f"M{aggregate:012d}{n:013d}",
                "text": f"message {n} of {aggregate}",
                "replyMessageId": None,
                "toAccountIds": [],
            }
        ],
    }


def _plan(events: int, aggregates: int, concurrency: int) -> list[list[tuple[int, int]]]:
    """Per writer: the (aggregate, version 0-based) appends it makes, in order."""
    per = events // aggregates
    plans: list[list[tuple[int, int]]] = [[] for _ in range(concurrency)]
    for v in range(per):
        for a in range(aggregates):
            plans[a % concurrency].append((a, v))
    return plans


# ---------------------------------------------------------------------------------------------
# ours
# ---------------------------------------------------------------------------------------------


async def _ours(path: Path, events: int, aggregates: int, concurrency: int) -> dict[str, Any]:
    from threadweaver.adapters.journal.sqlite import SqliteJournal
    from threadweaver.application.ports import NewEvent

    journal = SqliteJournal(path, synchronous="full")
    await journal.start()
    pids = [f"thread-AGG{a:023d}" for a in range(aggregates)]
    plans = _plan(events, aggregates, concurrency)

    async def writer(plan: list[tuple[int, int]]) -> None:
        for a, v in plan:
            await journal.append(
                pids[a], v, [NewEvent("MessagesAdded", payload(a, v))], writer="bench"
            )

    try:
        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(writer(p) for p in plans)), timeout=600)
        elapsed = time.perf_counter() - t0
        commits, appends = journal.commits, journal.appends
    finally:
        await journal.close()
    conn = sqlite3.connect(path)
    count = conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0]
    conn.close()
    return {
        "elapsed_s": elapsed,
        "events": count,
        "commits": commits,
        "appends_per_commit": appends / commits if commits else None,
        "synchronous": journal.synchronous,
    }


# ---------------------------------------------------------------------------------------------
# eventsourcing
# ---------------------------------------------------------------------------------------------


def _eventsourcing(path: Path, events: int, aggregates: int, concurrency: int) -> dict[str, Any]:
    from concurrent.futures import ThreadPoolExecutor

    from eventsourcing.persistence import StoredEvent
    from eventsourcing.sqlite import (
        SQLiteApplicationRecorder,
        SQLiteConnectionPool,
        SQLiteDatastore,
    )

    class FullSyncPool(SQLiteConnectionPool):
        """The library's pool, plus PRAGMA synchronous=FULL on each new connection (the
        library sets WAL itself and leaves synchronous at SQLite's default)."""

        def _create_connection(self):  # type: ignore[override]
            conn = super()._create_connection()
            conn._sqlite_conn.execute("PRAGMA synchronous=FULL")
            return conn

    datastore = SQLiteDatastore(
        str(path), pool_size=concurrency, max_overflow=0, pool_timeout=120.0, lock_timeout=60
    )
    datastore.pool.close()
    datastore.pool = FullSyncPool(
        db_name=str(path),
        lock_timeout=60,
        pool_size=concurrency,
        max_overflow=0,
        pool_timeout=120.0,
    )
    recorder = SQLiteApplicationRecorder(datastore)
    recorder.create_table()
    ids = [uuid.UUID(int=a + 1) for a in range(aggregates)]
    plans = _plan(events, aggregates, concurrency)
    deadline = time.monotonic() + 600

    def writer(plan: list[tuple[int, int]]) -> None:
        for a, v in plan:
            if time.monotonic() > deadline:
                raise TimeoutError("eventsourcing writer ran out of time")
            recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=ids[a],
                        originator_version=v + 1,
                        topic="bench.w2_journal:MessagesAdded",
                        state=orjson.dumps(payload(a, v)),
                    )
                ]
            )

    with ThreadPoolExecutor(concurrency) as pool:
        t0 = time.perf_counter()
        for f in [pool.submit(writer, p) for p in plans]:
            f.result()
        elapsed = time.perf_counter() - t0
    with datastore.get_connection(commit=False) as c:
        sync = c._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0]
        mode = c._sqlite_conn.execute("PRAGMA journal_mode").fetchone()[0]
    datastore.close()
    conn = sqlite3.connect(path)
    count = conn.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
    conn.close()
    return {
        "elapsed_s": elapsed,
        "events": count,
        "synchronous_pooled_conn": sync,
        "journal_mode": mode,
    }


def fsync_probe(directory: Path, n: int = 30) -> float:
    """Median seconds of a 4 KiB write + fsync in `directory` right now: the storage's commit
    latency, which decides how much group commit matters (it varies on a shared machine)."""
    import os
    import statistics

    path = directory / ".fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=("ours", "eventsourcing"), required=True)
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--aggregates", type=int, required=True)
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--path", type=Path, required=True)
    a = p.parse_args()
    for suffix in ("", "-wal", "-shm"):
        Path(str(a.path) + suffix).unlink(missing_ok=True)
    a.path.parent.mkdir(parents=True, exist_ok=True)
    fsync_before = fsync_probe(a.path.parent)
    if a.backend == "ours":
        try:
            import uvloop

            res = uvloop.run(_ours(a.path, a.events, a.aggregates, a.concurrency))
        except ImportError:
            res = asyncio.run(_ours(a.path, a.events, a.aggregates, a.concurrency))
    else:
        res = _eventsourcing(a.path, a.events, a.aggregates, a.concurrency)
    expected = (a.events // a.aggregates) * a.aggregates
    if res["events"] != expected:
        raise SystemExit(f"{a.backend}: {res['events']} events stored, expected {expected}")
    res["events_per_s"] = res["events"] / res["elapsed_s"]
    res["fsync_ms"] = round(1000 * (fsync_before + fsync_probe(a.path.parent)) / 2, 3)
    for suffix in ("", "-wal", "-shm"):
        Path(str(a.path) + suffix).unlink(missing_ok=True)
    print(json.dumps(res))
    return 0


def run(p: Profile, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for conc in p.journal_concurrency:
        raw: dict[str, list[dict[str, Any]]] = {"ours": [], "eventsourcing": []}
        for r in range(p.journal_runs):
            for backend in ("ours", "eventsourcing"):  # interleaved against noise
                log(f"w2: run {r + 1}/{p.journal_runs} {backend} concurrency {conc}")
                raw[backend].append(
                    run_json(
                        [
                            PYTHON,
                            "-m",
                            "bench.w2_journal",
                            "--backend",
                            backend,
                            "--events",
                            str(p.journal_events),
                            "--aggregates",
                            str(p.journal_aggregates),
                            "--concurrency",
                            str(conc),
                            "--path",
                            str(work / f"{backend}.db"),
                        ],
                        core=SERVER_CORE,
                        timeout=900,
                    )
                )
        ours = median(x["events_per_s"] for x in raw["ours"])
        es = median(x["events_per_s"] for x in raw["eventsourcing"])
        rows.append(
            {
                "concurrency": conc,
                "ours_events_per_s": ours,
                "eventsourcing_events_per_s": es,
                "ratio": ratio(ours, es),
                "ours_appends_per_commit": median(x["appends_per_commit"] for x in raw["ours"]),
                "fsync_ms": median(x.get("fsync_ms") for x in raw["ours"] + raw["eventsourcing"]),
                "runs": raw,
            }
        )
    return {
        "events": p.journal_events,
        "aggregates": p.journal_aggregates,
        "rows": rows,
        "target_ratio": 3.0,
    }


if __name__ == "__main__":
    sys.exit(main())
