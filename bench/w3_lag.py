"""Workload 3: projection lag, from a command's acknowledgement to its row in the read model.

The embedded runtime (sync-mode full) runs on the server core. On the load core:
- a background load: wrk posting messages to 16 hot threads, either *steady* (N connections,
  each pausing `lag_background_delay_ms` between requests: a bounded rate well below capacity)
  or *saturated* (64 connections flat out: the server's whole core);
- probes: threads created at a steady open-loop rate (`lag_probe_rate`/s) with an HTTP client;
  the time each create is acknowledged (durable in the journal) is recorded;
- a poller thread reads the read-model database directly (SQLite, read-only, WAL lets it read
  beside the writer) every millisecond for the probes not yet visible, and records when each
  row appears. lag = visible - acknowledged (0 if it was visible before the answer arrived).
Probes still invisible `grace` seconds after the load stops count as lost to the percentiles
(reported as "> grace").

Two read models, measured interleaved run by run (embedded, MySQL, embedded, ...):
- embedded: the runtime's SQLite read model, polled read-only through the file;
- mysql: `--read-model mysql+aiomysql://...` on MariaDB (hack/services.sh, started when down; a
  fresh database migrated with `threadweaver migrate` per run, dropped afterwards; the journal
  stays the embedded SQLite one), polled with pymysql (autocommit, so every poll sees the latest
  commit) with the same query. MariaDB is a shared service, not pinned: its CPU share during the
  run is reported (`mysqld_cpu_pct`).
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from .base import HOST, log
from .client import create_body, create_threads
from .load import wrk
from .processes import proc_cpu_seconds
from .profiles import Profile
from .servers import Server, start_runtime
from .services import MysqlDatabase, ensure_services, mysql_version, mysqld_pid
from .stats import median, percentile

POLL_INTERVAL = 0.001
POLL_CHUNK = 500


class SqlitePoller:
    """Which of the given thread ids are rows of the read model (embedded SQLite)."""

    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "readmodel.db"
        self.conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=5, check_same_thread=False
        )

    def visible(self, ids: list[str]) -> list[str]:
        out: list[str] = []
        for i in range(0, len(ids), POLL_CHUNK):
            chunk = ids[i : i + POLL_CHUNK]
            marks = ",".join("?" * len(chunk))
            out.extend(
                r[0]
                for r in self.conn.execute(f"SELECT id FROM thread WHERE id IN ({marks})", chunk)
            )
        return out

    def close(self) -> None:
        self.conn.close()


class MysqlPoller:
    """The same question to the MySQL/MariaDB read model, with a sync driver (pymysql)."""

    def __init__(self, db: MysqlDatabase) -> None:
        self.conn = db.connect()

    def visible(self, ids: list[str]) -> list[str]:
        out: list[str] = []
        with self.conn.cursor() as cur:
            for i in range(0, len(ids), POLL_CHUNK):
                chunk = ids[i : i + POLL_CHUNK]
                marks = ",".join(["%s"] * len(chunk))
                cur.execute(f"SELECT id FROM thread WHERE id IN ({marks})", chunk)
                out.extend(r[0] for r in cur.fetchall())
        return out

    def close(self) -> None:
        self.conn.close()


READ_MODELS = ("sqlite", "mysql")


class Probe:
    def __init__(self, poller: SqlitePoller | MysqlPoller) -> None:
        self.poller = poller
        self.acked: dict[str, float] = {}
        self.visible: dict[str, float] = {}
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def poll_forever(self, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                pending = [i for i in self.acked if i not in self.visible]
            if pending:
                found = self.poller.visible(pending)
                now = time.monotonic()
                with self._lock:
                    for i in found:
                        self.visible.setdefault(i, now)
            time.sleep(POLL_INTERVAL)

    def all_visible(self) -> bool:
        with self._lock:
            return len(self.visible) >= len(self.acked)

    def ack(self, thread_id: str, at: float) -> None:
        with self._lock:
            self.acked[thread_id] = at
            # a row may be polled as visible before its ack is recorded
            seen = self.visible.get(thread_id)
            if seen is not None and seen < at:
                self.visible[thread_id] = at

    def stop(self) -> None:
        self._stop.set()


async def _probes(url: str, probe: Probe, rate: float, duration: float) -> None:
    assert url.startswith(f"http://{HOST}:"), url
    count = int(rate * duration)
    tag = secrets.token_hex(4)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(i: int) -> None:
            try:
                async with session.post(
                    f"{url}/v1/threads/create",
                    json=create_body(f"probe {tag} {i}", 1_700_000_000_000 + i),
                ) as r:
                    data = await r.json()
                    now = time.monotonic()
                    if r.status == 200:
                        probe.ack(data["thread_id"], now)
                    else:
                        probe.failed += 1
            except Exception:
                probe.failed += 1

        t0 = time.monotonic()
        tasks = []
        for i in range(count):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


def measure(
    server: Server,
    poller: SqlitePoller | MysqlPoller,
    hot_file: Path,
    p: Profile,
    saturated: bool,
    grace: float,
) -> dict[str, Any]:
    """One measurement of `server` (also workload 6's, bench/w6_lag.py)."""
    server_url = server.url
    probe = Probe(poller)
    mysqld = mysqld_pid() if isinstance(poller, MysqlPoller) else None
    mysqld_cpu0, t_start = (proc_cpu_seconds(mysqld) if mysqld else 0.0), time.monotonic()
    load_s = p.lag_duration + 1.0
    poll_thread = threading.Thread(
        target=probe.poll_forever, args=(time.monotonic() + load_s + grace + 30,), daemon=True
    )
    poll_thread.start()
    background: dict[str, Any] = {}

    def run_wrk() -> None:
        try:
            background.update(
                wrk(
                    server_url,
                    "commands.lua",
                    duration=load_s,
                    server=server,
                    connections=64 if saturated else p.lag_background_connections,
                    args=[
                        "post",
                        secrets.token_hex(4),
                        str(hot_file),
                        "0",
                        "0" if saturated else str(p.lag_background_delay_ms),
                    ],
                )
            )
        except Exception as exc:  # reported, not fatal to the probe
            background["error"] = str(exc)

    wrk_thread = threading.Thread(target=run_wrk, daemon=True)
    wrk_thread.start()
    time.sleep(0.5)  # the background load is on before the first probe
    try:
        asyncio.run(_probes(server_url, probe, p.lag_probe_rate, p.lag_duration))
        wrk_thread.join(load_s + 60)
        mysqld_cpu = (
            round(100 * (proc_cpu_seconds(mysqld) - mysqld_cpu0) / (time.monotonic() - t_start), 1)
            if mysqld
            else None
        )
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not probe.all_visible():
            time.sleep(0.05)
    finally:
        probe.stop()
        poll_thread.join(10)
        poller.close()
    lags = sorted(
        max(0.0, probe.visible[i] - t) for i, t in probe.acked.items() if i in probe.visible
    )
    lost = len(probe.acked) - len(lags)
    full = lags + [float("inf")] * lost
    if "requests" in background:
        background["rps"] = round(background["requests"] / (background["duration_us"] / 1e6), 1)
    return {
        "probes": len(probe.acked),
        "failed": probe.failed,
        "not_visible": lost,
        "grace_s": grace,
        "p50_ms": _ms(percentile(full, 50)),
        "p99_ms": _ms(percentile(full, 99)),
        "p999_ms": _ms(percentile(full, 99.9)),
        "max_ms": _ms(full[-1] if full else None),
        "background_rps": background.get("rps"),
        "background_error": background.get("error"),
        "background_p99_us": background.get("p99_us"),
        "server_cpu_pct": background.get("server_cpu_pct"),
        "mysqld_cpu_pct": mysqld_cpu,
    }


def _ms(v: float | None) -> float | None:
    if v is None:
        return None
    return None if v == float("inf") else round(v * 1000, 2)


def _median_inf(values: Any) -> float | None:
    """Median where None means "not visible within the grace period" (infinite)."""
    m = median(float("inf") if v is None else v for v in values)
    return None if m is None or m == float("inf") else m


def one_run(
    p: Profile, work: Path, level: str, r: int, *, mysql_url: str | None = None
) -> dict[str, Any]:
    """One measurement at `level` ("steady" or "saturated") on a fresh runtime; `mysql_url`
    (the services' MariaDB) puts the read model in a fresh MariaDB database instead of the
    embedded SQLite."""
    saturated = level == "saturated"
    kind = "mysql" if mysql_url else "sqlite"
    data = work / f"lag-{level}-{kind}-{r}"
    grace = 10.0 if saturated else 5.0
    if mysql_url is None:
        server = start_runtime(data, ["--sync-mode", "full"])
        try:
            hot_file = hot_threads(server, data)
            return measure(server, SqlitePoller(data), hot_file, p, saturated, grace)
        finally:
            server.stop()
    with MysqlDatabase(mysql_url, "lag") as db:
        server = start_runtime(data, ["--sync-mode", "full", "--read-model", db.url])
        try:
            hot_file = hot_threads(server, data)
            return measure(server, MysqlPoller(db), hot_file, p, saturated, grace)
        finally:
            server.stop()


def hot_threads(server: Server, data: Path) -> Path:
    hot = create_threads(server.url, 16, concurrency=4, tag="lag")
    hot_file = data / "hot_ids.txt"
    hot_file.write_text("\n".join(hot) + "\n")
    return hot_file


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = {
        "p50_ms": _median_inf(x["p50_ms"] for x in runs),
        "p99_ms": _median_inf(x["p99_ms"] for x in runs),
        "p999_ms": _median_inf(x["p999_ms"] for x in runs),
        "worst_p99_ms": (
            None if any(x["p99_ms"] is None for x in runs) else max(x["p99_ms"] for x in runs)
        ),
        "not_visible": sum(x["not_visible"] for x in runs),
        "probes": sum(x["probes"] for x in runs),
        "failed": sum(x.get("failed", 0) for x in runs),
        "background_rps": median(x["background_rps"] for x in runs),
        "server_cpu_pct": median(x.get("server_cpu_pct") for x in runs),
        "mysqld_cpu_pct": median(x.get("mysqld_cpu_pct") for x in runs),
        "runs": runs,
    }
    if any(x["not_visible"] for x in runs):
        out["note"] = "some probes were not visible within the grace period"
    return out


def run(p: Profile, work: Path) -> dict[str, Any]:
    services = ensure_services()  # MariaDB (hack/services.sh); a BenchError if it fails
    out: dict[str, Any] = {
        "read_model": "sqlite (embedded)",
        "probe_rate": p.lag_probe_rate,
        "duration_s": p.lag_duration,
        "runs": p.lag_runs,
        "steady_connections": p.lag_background_connections,
        "steady_delay_ms": p.lag_background_delay_ms,
        "read_models": list(READ_MODELS),
        "target_p99_ms": 100,
        "mysql_target_p99_ms": 1000,
        "mysql_version": mysql_version(services.mysql),
    }
    out["levels"] = list(p.lag_levels)
    out["mysql"] = {}
    for level in p.lag_levels:
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in READ_MODELS}
        for r in range(p.lag_runs):  # interleaved: embedded, MySQL, embedded, ...
            for kind in READ_MODELS:
                log(f"w3: {level} load, {kind} read model, run {r + 1}/{p.lag_runs}")
                runs[kind].append(
                    one_run(
                        p, work, level, r, mysql_url=services.mysql if kind == "mysql" else None
                    )
                )
        out[level] = summarise(runs["sqlite"])
        out["mysql"][level] = summarise(runs["mysql"])
    return out
