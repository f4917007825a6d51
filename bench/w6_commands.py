"""Workload 6 A: workload 1's commands on the production backends, beside the embedded runtime.

Servers, all on the server core (taskset -c 0), interleaved run by run:
  embedded      `threadweaver serve --sync-mode full` (SQLite journal and read model)
  production    `threadweaver serve --journal dynamodb://<our dynalite> --read-model
                mysql+aiomysql://<MariaDB>/<fresh db>` with the default shard count (1024)
  production-N  the same with `--shards N` (full runs): the shard count decides how many
                queries a full read of the read-model updater's range costs (one per shard)
Each production server has its own dynalite, pinned to the server core too (see
bench/w6_production.py). While one server is measured the others are stopped (SIGSTOP of the
runtime and of its dynalite, SIGCONT before their turn, then a wait until they are idle): their
background work (a production read model's periodic read of every shard, the passivation of
idle entities, ...) would otherwise take the measured server's core.

Workloads as in workload 1 (bench/lua/commands.lua): create, hot (posts round-robin over
`hot_threads` fresh threads), cold (posts to threads created by a previous process, so a first
touch loads the thread from the journal; `prod_cold_threads` of them, a disjoint slice per run;
none in quick runs). Per measurement: wrk's req/s and latencies, non-2xx and socket errors,
CPU of the runtime, of its dynalite and of MariaDB (% of one core), the runtime's CPU per
command, and, as in workload 1, the read model's backlog after the run and the (bounded) wait
until it caught up.

A production runtime reaches its dynalite through a counting proxy (bench/w6_production.py
CountingProxy, on the load core): DynamoDB requests per acknowledged command, by operation, for
each measurement, and, after the runs, the requests per second of the idle runtime over
`prod_idle_seconds` (what its read-model updaters' polling costs).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from threadweaver.shards import DEFAULT_SHARDS

from .base import PYTHON, BenchError, log
from .client import create_threads
from .embedded_stores import drain_projection
from .load import wrk
from .processes import proc_cpu_seconds
from .profiles import Profile
from .servers import Server, start_runtime
from .services import mysql_connect
from .stats import median, ratio
from .w1_http import summarise
from .w6_production import CountingProxy, CpuMeter, Dynalite, production_backends, wait_idle

WORKLOADS = ("create", "hot", "cold")


@dataclass
class Stack:
    """One measured server: the runtime, and for production its dynalite and read model."""

    name: str
    server: Server | None = None
    dynalite: Dynalite | None = None
    proxy: CountingProxy | None = None
    read_model_url: str = ""
    shards: int | None = None
    cold_slices: list[Path] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=lambda: {"threads": 0, "messages": 0})
    idle_waits: list[float] = field(default_factory=list)
    startup_idle_s: float | None = None

    @property
    def production(self) -> bool:
        return self.dynalite is not None

    def _signal(self, sig: int) -> None:
        for proc in (
            self.server.proc if self.server else None,
            self.dynalite.proc if self.dynalite else None,
        ):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, sig)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.idle_waits.append(self.wait_idle())

    def wait_idle(self, timeout: float = 60.0) -> float:
        """Until the runtime (and its dynalite) are idle: the read model's start-up read of
        every shard, a periodic one that fell due while stopped, the passivation of idle
        entities, ... is not measured as commands."""
        if self.server is None:
            return 0.0
        pids = [self.server.proc.pid]
        if self.dynalite is not None and self.dynalite.proc is not None:
            pids.append(self.dynalite.proc.pid)
        return wait_idle(pids, timeout)


def _rows(url: str) -> tuple[int, int]:
    conn = mysql_connect(url, url.rsplit("/", 1)[1])
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT COUNT(*) FROM thread), (SELECT COUNT(*) FROM thread_message)"
            )
            t, m = cur.fetchone()
            return int(t), int(m)
    finally:
        conn.close()


def _drain_mysql(stack: Stack, timeout: float) -> dict[str, Any]:
    """Wait (bounded) until the MySQL read model holds at least the acknowledged threads and
    messages (wrk may have had a few more requests in flight when it stopped, which only makes
    the wait end later than strictly needed)."""
    t0 = time.monotonic()
    want = (stack.acked["threads"], stack.acked["messages"])

    def left() -> int:
        t, m = _rows(stack.read_model_url)
        return max(0, want[0] - t) + max(0, want[1] - m)

    backlog = remaining = left()
    while remaining > 0 and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
        remaining = left()
    return {
        "backlog_events": backlog,
        "drain_s": round(time.monotonic() - t0, 2),
        "left_events": remaining,
    }


def _measure(
    stack: Stack,
    workload: str,
    p: Profile,
    ids_file: Path | str = "-",
    duration: float | None = None,
) -> dict[str, Any]:
    assert stack.server is not None
    meter = CpuMeter(stack.dynalite)
    rows0 = _rows(stack.read_model_url) if stack.proxy is not None else (0, 0)
    if stack.proxy is not None:
        stack.proxy.reset()
    res = wrk(
        stack.server.url,
        "commands.lua",
        duration=duration or p.prod_duration,
        connections=p.http_connections,
        args=["create" if workload == "create" else "post", secrets.token_hex(4), str(ids_file)],
        server=stack.server,
        hard_timeout=p.prod_duration + 120,
    )
    res.update(meter.result())
    if not stack.production:
        res.pop("dynalite_cpu_pct", None)
    res["rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
    ok = res["requests"] - res["non2xx"]
    if res.get("server_cpu_pct") and res["rps"]:  # the runtime's own CPU (/proc of its pid)
        res["cpu_ms_per_command"] = round(10 * res["server_cpu_pct"] / res["rps"], 3)

    stack.acked["threads" if workload == "create" else "messages"] += ok
    if stack.production:
        res["projection"] = _drain_mysql(stack, p.http_drain_timeout)
    else:
        res["projection"] = drain_projection(stack.server.data_dir, p.http_drain_timeout)
    if stack.proxy is not None:
        # Once the runtime is idle again: every command it ran (those of wrk's last requests,
        # still in flight when wrk stopped, too: counted by the rows they made, a thread per
        # create, a message per post) and the reads that projected them.
        stack.wait_idle(timeout=30.0)
        rows = _rows(stack.read_model_url)
        counts = stack.proxy.counts()
        commands = rows[0] - rows0[0] if workload == "create" else rows[1] - rows0[1]
        res["dynamodb"] = counts
        res["commands_run"] = commands
        res["dynamodb_per_command"] = round(counts["total"] / max(1, commands), 3)
    return res


def _one_run(stack: Stack, p: Profile, r: int) -> dict[str, Any]:
    assert stack.server is not None
    out: dict[str, Any] = {"create": _measure(stack, "create", p)}
    hot = create_threads(stack.server.url, p.hot_threads, concurrency=p.hot_threads, tag=f"hot{r}")
    stack.acked["threads"] += len(hot)
    hot_file = stack.server.data_dir / f"hot_ids_{r}.txt"
    hot_file.write_text("\n".join(hot) + "\n")
    out["hot"] = _measure(stack, "hot", p, hot_file)
    if stack.cold_slices:
        cold = stack.cold_slices[r]
        out["cold"] = _measure(stack, "cold", p, cold)
        threads = sum(1 for line in cold.read_text().splitlines() if line)
        out["cold"]["threads_available"] = threads
        out["cold"]["first_touch_share"] = round(
            min(1.0, threads / max(1, out["cold"]["requests"])), 3
        )
    return out


def _start(stack: Stack, work: Path, args: list[str], p: Profile) -> None:
    """Seed the cold threads with a first process (when asked), then start the measured one on
    the same storage: it has never loaded them."""
    data = work / stack.name
    shutil.rmtree(data, ignore_errors=True)
    if p.prod_cold_threads:
        seeder = start_runtime(data, args)
        try:
            log(f"w6 commands: seeding {p.prod_cold_threads} cold threads ({stack.name})")
            ids = create_threads(
                seeder.url,
                p.prod_cold_threads,
                concurrency=32,
                timeout=max(60.0, p.prod_cold_threads / 20),
                tag="cold",
            )
        finally:
            seeder.stop()
        stack.acked["threads"] += len(ids)
        per_run = len(ids) // p.prod_runs
        for r in range(p.prod_runs):
            path = work / f"{stack.name}-cold-{r}.txt"
            path.write_text("\n".join(ids[r * per_run : (r + 1) * per_run]) + "\n")
            stack.cold_slices.append(path)
    stack.server = start_runtime(data, args)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out = summarise(
        runs,
        (
            "dynalite_cpu_pct",
            "mysqld_cpu_pct",
            "core0_busy_pct",
            "cpu_ms_per_command",
            "dynamodb_per_command",
        ),
    )
    if all("dynamodb" in r for r in runs):  # per operation, over all runs
        ok = sum(r["commands_run"] for r in runs)
        ops: dict[str, int] = {}
        for r in runs:
            for op, n in r["dynamodb"]["counts"].items():
                ops[op] = ops.get(op, 0) + n
        out["dynamodb_per_command_by_operation"] = {
            op: round(n / max(1, ok), 3) for op, n in sorted(ops.items())
        }
    # per CPU-second of everything on the server core that the command costs: the runtime and,
    # for production, its dynalite (MariaDB is not on that core; its share is reported apart)
    out["rps_per_stack_cpu_s"] = median(
        r["rps"] / ((r["server_cpu_pct"] + (r.get("dynalite_cpu_pct") or 0)) / 100)
        for r in runs
        if r.get("server_cpu_pct")
    )
    if "first_touch_share" in runs[0]:
        out["first_touch_share"] = median(r["first_touch_share"] for r in runs)
    return out


def _idle_requests(stack: Stack, seconds: float) -> dict[str, Any]:
    """DynamoDB requests per second of the runtime while nobody sends it anything (after it
    and its dynalite went idle), and its CPU meanwhile."""
    assert stack.proxy is not None and stack.server is not None
    stack.resume()
    try:
        stack.proxy.reset()
        cpu0 = proc_cpu_seconds(stack.server.proc.pid)
        time.sleep(seconds)
        cpu = proc_cpu_seconds(stack.server.proc.pid) - cpu0
        counts = stack.proxy.counts()
    finally:
        stack.pause()
    wall = max(1e-6, counts["seconds"])
    log(f"w6 commands: {stack.name} idle: {counts['total'] / wall:.2f} DynamoDB requests/s")
    return {
        "seconds": round(wall, 2),
        "requests_per_s": round(counts["total"] / wall, 3),
        "by_operation": counts["counts"],
        "runtime_cpu_pct": round(100 * cpu / seconds, 2),
    }


def profile_production(p: Profile, work: Path, services: Any) -> dict[str, Any]:
    """Where the production runtime's event-loop time goes under creates: the runtime under
    pyinstrument (bench/profile_server.py, as the profile of workload 1) on fresh backends."""
    data = work / "profile"
    shutil.rmtree(data, ignore_errors=True)
    dynalite = Dynalite(work / "dynalite-profile").start()
    try:
        with production_backends(services, dynalite) as backends:
            prof = data / "prof"
            server = start_runtime(
                data,
                backends.serve_args(),
                cmd=[PYTHON, "-m", "bench.profile_server", "--out", str(prof), "--", "serve"],
            )
            try:
                wait_idle([server.proc.pid, dynalite.proc.pid], 60)  # type: ignore[union-attr]
                meter = CpuMeter(dynalite)
                load = wrk(
                    server.url,
                    "commands.lua",
                    duration=p.prod_profile_duration,
                    connections=p.http_connections,
                    args=["create", secrets.token_hex(4)],
                    server=server,
                    hard_timeout=p.prod_profile_duration + 120,
                )
                cpu = meter.result()
            finally:
                server.stop()
    finally:
        dynalite.stop()
    import json

    try:
        summary = json.loads((prof / "profile.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"the profiled production runtime wrote no profile: {exc}") from None
    return {
        "tool": "pyinstrument (wall clock, event-loop thread)",
        "workload": "create",
        "duration_s": p.prod_profile_duration,
        "rps_under_profiler": round(load["requests"] / (load["duration_us"] / 1e6), 1),
        "server_cpu_pct": load["server_cpu_pct"],
        **cpu,
        "busy_s": summary.get("total_s"),
        "wall_s": summary.get("wall_s"),
        "self_by_task": summary.get("self_by_task", [])[:8],
        "self_by_component": summary.get("self_by_component", [])[:8],
        "self_by_function": summary.get("self_by_function", [])[:12],
        "inclusive_threadweaver": summary.get("inclusive_threadweaver", [])[:16],
    }


def run(p: Profile, work: Path, services: Any) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    stacks: list[Stack] = [Stack("embedded")]
    for shards in p.prod_shards:
        name = "production" if shards == DEFAULT_SHARDS else f"production-{shards}"
        stacks.append(Stack(name, shards=shards))
    backends_cms = []
    dynalite_rss: dict[str, dict[str, int]] = {}
    idle: dict[str, dict[str, Any]] = {}
    try:
        for stack in stacks:
            if stack.shards is None:
                log("w6 commands: starting embedded (sync full)")
                _start(stack, work, ["--sync-mode", "full"], p)
                stack.pause()
                continue
            stack.dynalite = Dynalite(work / f"dynalite-{stack.name}").start()
            stack.proxy = CountingProxy(work / f"proxy-{stack.name}", stack.dynalite).start()
            cm = production_backends(services, stack.dynalite)
            backends = cm.__enter__()
            backends_cms.append(cm)
            backends = replace(backends, journal_url=stack.proxy.journal_url(backends.journal_url))
            stack.read_model_url = backends.read_model_url
            log(
                f"w6 commands: starting {stack.name} (dynalite :{stack.dynalite.port}, "
                f"{stack.shards} shards)"
            )
            _start(stack, work, [*backends.serve_args(), "--shards", str(stack.shards)], p)
            stack.startup_idle_s = stack.wait_idle()
            log(f"w6 commands: {stack.name} idle {stack.startup_idle_s}s after its start")
            stack.pause()
        for stack in stacks:  # production: the start-up sweep of the read model is done
            if p.http_warmup:
                stack.resume()
                try:
                    _measure(stack, "create", p, duration=p.http_warmup)
                finally:
                    stack.pause()
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {s.name: {} for s in stacks}
        for r in range(p.prod_runs):
            for stack in stacks:
                log(f"w6 commands: run {r + 1}/{p.prod_runs}: {stack.name}")
                stack.resume()
                try:
                    res = _one_run(stack, p, r)
                finally:
                    stack.pause()
                for w, v in res.items():
                    raw[stack.name].setdefault(w, []).append(v)
        for stack in stacks:
            if stack.dynalite is not None:
                dynalite_rss[stack.name] = stack.dynalite.rss()
        for stack in stacks:
            if stack.proxy is not None and p.prod_idle_seconds:
                idle[stack.name] = _idle_requests(stack, p.prod_idle_seconds)
    finally:
        for stack in stacks:
            try:
                stack.resume()
            except Exception:
                pass
            if stack.server is not None:
                stack.server.stop()
        for cm in reversed(backends_cms):
            try:
                cm.__exit__(None, None, None)
            except Exception as exc:
                log(f"w6 commands: cleanup of the backends failed: {exc}")
        for stack in stacks:
            if stack.dynalite is not None:
                stack.dynalite.stop()
            if stack.proxy is not None:
                stack.proxy.stop()
    summary: dict[str, Any] = {}
    for stack in stacks:
        for w in WORKLOADS:
            if raw[stack.name].get(w):
                summary[f"{stack.name}.{w}"] = _summary(raw[stack.name][w])
    pairs = []
    for stack in stacks[1:]:
        for w in WORKLOADS:
            ours, base = summary.get(f"{stack.name}.{w}"), summary.get(f"embedded.{w}")
            if ours and base:
                pairs.append(
                    {
                        "server": stack.name,
                        "shards": stack.shards,
                        "workload": w,
                        "rps": ours["rps"],
                        "embedded_rps": base["rps"],
                        "ratio": ratio(ours["rps"], base["rps"]),
                        "ratio_per_stack_cpu_s": ratio(
                            ours["rps_per_stack_cpu_s"], base["rps_per_stack_cpu_s"]
                        ),
                    }
                )
    if not summary:
        raise BenchError("w6 commands: nothing measured")
    profile: dict[str, Any] = {}
    if p.prod_profile_duration:
        log(
            f"w6 commands: profiling the production runtime under creates "
            f"({p.prod_profile_duration:g}s)"
        )
        try:
            profile = profile_production(p, work, services)
        except BenchError as exc:
            profile = {"error": str(exc)[:2000]}
    return {
        "summary": summary,
        "profile": profile,
        "pairs": pairs,
        "servers": [s.name for s in stacks],
        "shards": {s.name: s.shards for s in stacks if s.shards},
        "dynalite_rss_kib": dynalite_rss,
        "idle": idle,
        "startup_idle_s": {s.name: s.startup_idle_s for s in stacks if s.production},
        "resume_idle_s": {s.name: median(s.idle_waits) for s in stacks},
        "connections": p.http_connections,
        "duration_s": p.prod_duration,
        "runs": p.prod_runs,
        "hot_threads": p.hot_threads,
        "cold_threads": p.prod_cold_threads,
        "drain_timeout_s": p.http_drain_timeout,
    }
