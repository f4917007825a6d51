"""Workload 6 D: projection lag on the production backends (DynamoDB API journal, MySQL read
model), from a command's acknowledgement to its row in MariaDB.

Workload 3's measurement (bench/w3_lag.py: probes creating threads at `lag_probe_rate`/s, open
loop, for `lag_duration` s; a poller reading the read model every millisecond; the *steady*
background load of wrk posting to 16 threads) against `threadweaver serve --journal
dynamodb://<our dynalite> --read-model mysql+aiomysql://<MariaDB>/<fresh db> --shards N` (N the
first of `prod_shards`, 1,024 in full runs), on a fresh dynalite and database per run
(`lag_runs` of them). The runtime and its dynalite are pinned to the server core and measured
once idle after their start (the read model's first read of every shard), as in part A.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import log
from .profiles import Profile
from .servers import start_runtime
from .services import mysql_connect
from .stats import median
from .w3_lag import MysqlPoller, hot_threads, measure, summarise
from .w6_production import CpuMeter, Dynalite, production_backends, wait_idle

TARGET_P99_MS = 250  # issue 13: read-model lag p99 on dynalite + MariaDB at steady load


class _Database:
    """What MysqlPoller asks of a database: a connection to it (autocommit, pymysql)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:
        return mysql_connect(self.url, self.url.rsplit("/", 1)[1])


def one_run(p: Profile, work: Path, services: Any, r: int, shards: int) -> dict[str, Any]:
    dynalite = Dynalite(work / f"dynalite-{r}").start()
    try:
        with production_backends(services, dynalite) as backends:
            data = work / f"lag-{r}"
            server = start_runtime(data, [*backends.serve_args(), "--shards", str(shards)])
            try:
                assert dynalite.proc is not None
                startup_idle_s = wait_idle([server.proc.pid, dynalite.proc.pid], 60)
                hot = hot_threads(server, data)
                meter = CpuMeter(dynalite)
                poller = MysqlPoller(_Database(backends.read_model_url))  # type: ignore[arg-type]
                res = measure(server, poller, hot, p, saturated=False, grace=5.0)
                cpu = meter.result()
                res["dynalite_cpu_pct"] = cpu["dynalite_cpu_pct"]
                res["core0_busy_pct"] = cpu["core0_busy_pct"]
                res["startup_idle_s"] = startup_idle_s
                return res
            finally:
                server.stop()
    finally:
        dynalite.stop()


def run(p: Profile, work: Path, services: Any) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    shards = p.prod_shards[0]
    runs = []
    for r in range(p.lag_runs):
        log(f"w6 lag: steady load, dynalite + MariaDB, {shards} shards, run {r + 1}/{p.lag_runs}")
        runs.append(one_run(p, work, services, r, shards))
    out = summarise(runs)
    out.update(
        {
            "shards": shards,
            "level": "steady",
            "target_p99_ms": TARGET_P99_MS,
            "probe_rate": p.lag_probe_rate,
            "duration_s": p.lag_duration,
            "steady_connections": p.lag_background_connections,
            "steady_delay_ms": p.lag_background_delay_ms,
            "lag_runs": p.lag_runs,
            "dynalite_cpu_pct": median(r.get("dynalite_cpu_pct") for r in runs),
            "core0_busy_pct": median(r.get("core0_busy_pct") for r in runs),
        }
    )
    return out
