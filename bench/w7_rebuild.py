"""Workload 7: rebuilding the read model from the journal (`threadweaver project`), into SQLite
and into MySQL (MariaDB), one core, beside a live runtime whose RMU serves another database.

Set-up (not timed): an SQLite journal of `events` events in 1,024 shards (threads of 100
events: created, then mostly one message each, a member joining and a message removed now and
then; tests/support/journal_fill.py), written through the Journal port. The live runtime
(`threadweaver serve` on the load core, its read model a MariaDB database built beforehand with
`threadweaver project`, so its RMU is caught up) takes a steady background load of posts (wrk,
`live_connections` connections pausing `live_delay_ms` each) that appends to the same journal
while the rebuilds run.

Timed: `threadweaver project --journal J --read-model R` pinned to the server core
(`taskset -c 0`), into a new SQLite file, then into a new MariaDB database: the build's own
events/s (its summary: events applied over the build's time, process start-up excluded), the
process's CPU seconds (wait4) and events per CPU-second, the passes (the first reads the whole
journal; the next ones what the live runtime appended meanwhile, until a pass of at most 1 s).
MariaDB is a shared service, not pinned: its CPU share during the MySQL rebuild is reported.

    python -m bench.w7_rebuild --events 300000          # standalone: prints one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .base import HOST, LOAD_CORE, SERVER_CORE, THREADWEAVER, BenchError, log
from .load import ensure_wrk
from .processes import proc_cpu_seconds, spawn, stop, wait_rusage
from .profiles import Profile
from .servers import Server, _answering, free_port
from .services import MysqlDatabase, ensure_services, mysql_version, mysqld_pid

SHARDS = 1024
EVENTS_PER_THREAD = 100
TARGET_SQLITE = 20_000  # events/s
TARGET_MYSQL = 5_000
LIVE_CONNECTIONS = 4
LIVE_DELAY_MS = 20  # ~200 posts/s at most
SIZES = {"full": 300_000, "quick": 60_000}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("THREADWEAVER_")}


async def _fill(path: Path, events: int) -> list[str]:
    from tests.support.journal_fill import fill_journal
    from threadweaver.adapters.journal.sqlite import SqliteJournal

    journal = SqliteJournal(path, shards=SHARDS, synchronous="off")
    await journal.start()
    try:
        filled = await fill_journal(
            journal, events // EVENTS_PER_THREAD, EVENTS_PER_THREAD, per_append=5, concurrency=256
        )
    finally:
        await journal.close()
    return sorted(filled.seq)


def _project_cmd(journal: Path, read_model: str) -> list[str]:
    return [
        THREADWEAVER,
        "project",
        "--journal",
        f"sqlite:///{journal}",
        "--read-model",
        read_model,
        "--shard-count",
        str(SHARDS),
        "--progress",
        "json",
        "--progress-interval",
        "5",
        "--log-level",
        "warning",
    ]


def _project(journal: Path, read_model: str, core: int, log_path: Path) -> dict[str, Any]:
    """Run `threadweaver project` pinned to `core`; its summary, wall time and CPU seconds."""
    with log_path.open("wb") as out:
        t0 = time.monotonic()
        proc = spawn(_project_cmd(journal, read_model), core=core, stdout=out, env=_env())
        rc, cpu = wait_rusage(proc, 1800)
        wall = time.monotonic() - t0
    lines = [json.loads(x) for x in log_path.read_text().splitlines() if x.startswith("{")]
    if rc != 0 or not lines or lines[-1].get("event") != "summary":
        raise BenchError(f"threadweaver project failed ({rc}): {log_path.read_text()[-2000:]}")
    summary = lines[-1]
    applied = summary["applied"]
    return {
        "applied": applied,
        "build_s": summary["elapsed_seconds"],
        "events_per_s": summary["events_per_second"],
        "process_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "events_per_cpu_s": round(applied / cpu) if cpu else None,
        "cpu_pct": round(100 * cpu / wall, 1) if wall else None,
        "passes": summary["pass"],
        "lag_s": summary["lag_seconds"],
    }


def _start_live(work: Path, journal: Path, read_model: str) -> Server:
    """The live runtime on the load core: its RMU serves `read_model` (caught up)."""
    data = work / "live"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data / "server.log"
    cmd = [
        THREADWEAVER,
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--log-level",
        "warning",
        "--member-name",
        "live",
        "--journal",
        f"sqlite:///{journal}",
        "--read-model",
        read_model,
        "--shards",
        str(SHARDS),
        "--sync-mode",
        "normal",
    ]
    proc = spawn(cmd, core=LOAD_CORE, log=log_path, env=_env())
    return _answering(Server(proc, port, data, log_path), "/ready", 120)


def _journal_events(journal: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    finally:
        conn.close()


def measure(work: Path, events: int) -> dict[str, Any]:
    services = ensure_services()
    work.mkdir(parents=True, exist_ok=True)
    journal = work / "journal.db"
    log(f"w7: filling a journal of {events:,} events")
    thread_ids = asyncio.run(_fill(journal, events))
    out: dict[str, Any] = {
        "events_in_journal": _journal_events(journal),
        "shards": SHARDS,
        "events_per_thread": EVENTS_PER_THREAD,
        "mysql_version": mysql_version(services.mysql),
        "live_connections": LIVE_CONNECTIONS,
        "live_delay_ms": LIVE_DELAY_MS,
        "target_sqlite": TARGET_SQLITE,
        "target_mysql": TARGET_MYSQL,
    }
    with MysqlDatabase(services.mysql, tag="live") as live_db:
        log("w7: building the live runtime's read model (set-up)")
        _project(journal, live_db.url, LOAD_CORE, work / "live-build.log")
        live = _start_live(work, journal, live_db.url)
        hot = work / "hot_ids.txt"
        hot.write_text("\n".join(thread_ids[:16]) + "\n")
        wrk_cmd = [
            ensure_wrk(),
            "-t1",
            f"-c{LIVE_CONNECTIONS}",
            "-d3600s",
            "--timeout=10s",
            "-s",
            str(Path(__file__).with_name("lua") / "commands.lua"),
            live.url,
            "--",
            "post",
            secrets.token_hex(4),
            str(hot),
            "0",
            str(LIVE_DELAY_MS),
        ]
        background = spawn(wrk_cmd, core=LOAD_CORE, stdout=subprocess.DEVNULL)
        try:
            before = _journal_events(journal)
            t0 = time.monotonic()
            log("w7: rebuilding into SQLite")
            out["sqlite"] = _project(
                journal,
                f"sqlite+aiosqlite:///{work / 'rebuilt.db'}",
                SERVER_CORE,
                work / "sqlite-build.log",
            )
            with MysqlDatabase(services.mysql, tag="rebuild") as target:
                log("w7: rebuilding into MariaDB")
                pid = mysqld_pid()
                mysqld0 = proc_cpu_seconds(pid) if pid else None
                out["mysql"] = _project(journal, target.url, SERVER_CORE, work / "mysql-build.log")
                if pid and mysqld0 is not None:
                    used = proc_cpu_seconds(pid) - mysqld0
                    out["mysql"]["mysqld_cpu_pct"] = round(
                        100 * used / out["mysql"]["process_s"], 1
                    )
            appended = _journal_events(journal) - before
            out["live_appends_per_s"] = round(appended / (time.monotonic() - t0), 1)
            out["live_cpu_s"] = round(live.cpu_seconds(), 1)
        finally:
            stop(background)
            live.stop()
    for key, target in (("sqlite", TARGET_SQLITE), ("mysql", TARGET_MYSQL)):
        rate = out[key]["events_per_s"]
        out[key]["met"] = rate is not None and rate >= target
    out["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return out


def run(p: Profile, work: Path) -> dict[str, Any]:
    return measure(work, SIZES.get(p.name, SIZES["quick"]))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--events", type=int, default=SIZES["full"])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="threadweaver-bench-w7-"))
    print(json.dumps(measure(work, args.events)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
