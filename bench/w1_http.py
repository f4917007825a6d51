"""Workload 1: HTTP commands on the embedded runtime vs the bare aiohttp handler.

`bench.bare_server` and `threadweaver serve` (sync-mode full, and normal) all run on the server
core (each idle while another is measured); wrk runs on the load core. Measurements are
interleaved run by run (bare, full, normal, bare, ...) so that the noise of a shared machine hits
every configuration alike. Per runtime:
  create   POST /v1/threads/create, unique bodies
  hot      POST .../messages/add round-robin over `hot_threads` fresh threads (many posts each)
  cold     POST .../messages/add round-robin over threads created beforehand by a previous
           process (the runtimes start on copies of the seeded files), so a first touch loads the
           thread from the journal; each run gets its own disjoint slice of the seeded threads
           (`first_touch_share` says how many posts were first touches)
Every figure is the median over runs. Failed (non-2xx) answers are counted and reported.

`--set http_modes=full,normal,full-nometrics` adds the runtime without its metrics
(bench/nometrics_server.py) to every round, beside `full`: what the metrics cost (`metrics_cost`).
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from .base import PYTHON, BenchError, log
from .client import create_threads
from .embedded_stores import drain_projection, journal_counter, journal_thread_ids
from .load import wrk, wrk_until
from .profiles import Profile
from .servers import Server, start_bare, start_runtime
from .stats import median, ratio

# The runtimes measured (`http_modes` of the profile): a sync mode, or `full-nometrics`, the
# runtime with `--sync-mode full` and without its metrics (bench/nometrics_server.py), beside
# `full` to measure what the metrics cost.
MODES = ("full", "normal")
NO_METRICS = "full-nometrics"
WORKLOADS = ("create", "hot", "cold")


def _runtime_command(mode: str) -> tuple[list[str], list[str] | None]:
    """The serve arguments and the command (None: `threadweaver serve`) of a runtime mode."""
    if mode == NO_METRICS:
        return ["--sync-mode", "full"], [PYTHON, "-m", "bench.nometrics_server", "serve"]
    if mode not in MODES:
        raise BenchError(f"w1: unknown http mode {mode!r}: {[*MODES, NO_METRICS]}")
    return ["--sync-mode", mode], None


def _wrk(
    server: Server, mode: str, p: Profile, ids_file: Path | str = "-", duration: float | None = None
) -> dict[str, Any]:
    script_mode = "create" if mode == "create" else "post"
    res = wrk(
        server.url,
        "commands.lua",
        duration=duration or p.http_duration,
        connections=p.http_connections,
        args=[script_mode, secrets.token_hex(4), str(ids_file)],
        server=server,
    )
    res["rps"] = round(res["requests"] / (res["duration_us"] / 1e6), 1)
    return res


def seed_cold(work: Path, count: int) -> tuple[Path, Path]:
    """A data dir holding `count` threads (journal + read model), and the file of their ids."""
    seed = work / "seed"
    shutil.rmtree(seed, ignore_errors=True)
    server = start_runtime(seed, ["--sync-mode", "normal"])
    try:
        wrk_until(
            server.url,
            journal_counter(seed),
            count,
            max_duration=600,
            args=["create", "cold" + secrets.token_hex(4), "-", str(count)],
        )
        drained = drain_projection(seed, 600)  # the copies must start with no backlog
        if drained["left_events"]:
            raise BenchError(f"the seeded read model did not catch up: {drained}")
    finally:
        server.stop()
    ids = journal_thread_ids(seed)
    if len(ids) < count:
        raise BenchError(f"seeding made {len(ids)} threads, not {count}")
    ids_file = work / "cold_ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    (seed / "server.log").unlink(missing_ok=True)
    return seed, ids_file


def _start_all(work: Path, seed: Path, modes: tuple[str, ...]) -> dict[str, Server]:
    """The bare app and one runtime per mode, all on the server core (idle while another
    is measured), each runtime on its own copy of the seeded files."""
    servers: dict[str, Server] = {}
    try:
        servers["bare"] = start_bare(work / "bare")
        for mode in modes:
            data = work / f"data-{mode}"
            shutil.rmtree(data, ignore_errors=True)
            shutil.copytree(seed, data)
            args, cmd = _runtime_command(mode)
            servers[mode] = start_runtime(data, args, cmd=cmd)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def _drained(server: Server, result: dict[str, Any], p: Profile) -> dict[str, Any]:
    """After a measurement: the projection backlog it left, and the (bounded) wait until the
    read model caught up, so that the next measurement does not pay for this one."""
    result["projection"] = drain_projection(server.data_dir, p.http_drain_timeout)
    return result


def _runtime_run(server: Server, cold_slice: Path, p: Profile, r: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    out["create"] = _drained(server, _wrk(server, "create", p), p)
    hot = create_threads(server.url, p.hot_threads, concurrency=4, tag=f"hot{r}")
    hot_file = server.data_dir / f"hot_ids_{r}.txt"
    hot_file.write_text("\n".join(hot) + "\n")
    out["hot"] = _drained(server, _wrk(server, "hot", p, hot_file), p)
    out["cold"] = _drained(server, _wrk(server, "cold", p, cold_slice), p)
    threads = sum(1 for line in cold_slice.read_text().splitlines() if line)
    out["cold"]["threads_available"] = threads
    out["cold"]["first_touch_share"] = round(min(1.0, threads / max(1, out["cold"]["requests"])), 3)
    return out


def _bare_run(server: Server, hot_file: Path, p: Profile) -> dict[str, Any]:
    return {"create": _wrk(server, "create", p), "post": _wrk(server, "hot", p, hot_file)}


def summarise(runs: list[dict[str, Any]], extra_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Medians (and sums of the failures) of a workload's wrk runs; `extra_keys`: more
    per-run figures to take the median of (workload 6 adds its other processes' CPU)."""
    keys = ("rps", "p50_us", "p99_us", "p999_us", "server_cpu_pct", "wrk_cpu_pct", *extra_keys)
    out: dict[str, Any] = {k: median(r.get(k) for r in runs) for k in keys}
    out["rps_per_cpu_s"] = median(
        r["rps"] / (r["server_cpu_pct"] / 100) for r in runs if r.get("server_cpu_pct")
    )
    out["non2xx"] = sum(r["non2xx"] for r in runs)
    out["errors"] = sum(
        r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"] for r in runs
    )
    out["requests"] = sum(r["requests"] for r in runs)
    if all("projection" in r for r in runs):
        out["backlog_events"] = median(r["projection"]["backlog_events"] for r in runs)
        out["drain_s"] = median(r["projection"]["drain_s"] for r in runs)
        out["drain_left_events"] = max(r["projection"]["left_events"] for r in runs)
        # sustainable rate: the requests of a run over the run plus the time the read model
        # needed to catch up with it (each request = a command and its projection)
        drained = [
            r
            for r in runs
            if r["projection"]["left_events"] <= 0.01 * r["projection"]["backlog_events"]
        ]
        out["rps_with_projection"] = (
            median(
                r["requests"] / (r["duration_us"] / 1e6 + r["projection"]["drain_s"])
                for r in drained
            )
            if len(drained) == len(runs)
            else None
        )
    out["runs"] = runs
    return out


def _metrics_cost(raw: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The runtime with its metrics against the one without (`full` vs `full-nometrics`), per
    workload: medians of each, and the median of the run-by-run ratios (the two ran back to
    back in each round, so a ratio compares measurements the machine's drift hit alike)."""
    out = []
    for w in WORKLOADS:
        on, off = raw.get(f"full.{w}") or [], raw.get(f"{NO_METRICS}.{w}") or []
        pairs = list(zip(on, off))
        if not pairs:
            continue

        def per_cpu_s(r: dict[str, Any]) -> float | None:
            cpu = r.get("server_cpu_pct")
            return r["rps"] / (cpu / 100) if cpu else None

        out.append(
            {
                "workload": w,
                "rounds": len(pairs),
                "rps": median(a["rps"] for a, _ in pairs),
                "rps_off": median(b["rps"] for _, b in pairs),
                "rps_ratio": median(ratio(a["rps"], b["rps"]) for a, b in pairs),
                "rps_per_cpu_s": median(per_cpu_s(a) for a, _ in pairs),
                "rps_per_cpu_s_off": median(per_cpu_s(b) for _, b in pairs),
                "rps_per_cpu_s_ratio": median(ratio(per_cpu_s(a), per_cpu_s(b)) for a, b in pairs),
                "rps_per_cpu_s_ratios": [
                    None if (x := ratio(per_cpu_s(a), per_cpu_s(b))) is None else round(x, 3)
                    for a, b in pairs
                ],
                "p50_us": median(a["p50_us"] for a, _ in pairs),
                "p50_us_off": median(b["p50_us"] for _, b in pairs),
                "p99_us": median(a["p99_us"] for a, _ in pairs),
                "p99_us_off": median(b["p99_us"] for _, b in pairs),
            }
        )
    return out


def run(p: Profile, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    modes = p.http_modes
    log(f"w1: seeding {p.cold_threads} cold threads")
    seed, cold_ids = seed_cold(work, p.cold_threads)
    ids = [line for line in cold_ids.read_text().splitlines() if line]
    per_run = len(ids) // p.http_runs
    slices = []
    for r in range(p.http_runs):  # disjoint: every run touches threads never loaded
        path = work / f"cold_ids_{r}.txt"
        path.write_text("\n".join(ids[r * per_run : (r + 1) * per_run]) + "\n")
        slices.append(path)
    fake_hot = work / "bare_ids.txt"
    fake_hot.write_text(
        "\n".join("01H8XGJWBWBAQ4Z4G2V6K8M3P" + c for c in "ABCDEFGHJKMNPQRS") + "\n"
    )
    raw: dict[str, list[dict[str, Any]]] = {"bare.create": [], "bare.post": []}
    for mode in modes:
        for w in WORKLOADS:
            raw[f"{mode}.{w}"] = []
    log(f"w1: starting the bare app and the runtimes ({', '.join(modes)})")
    servers = _start_all(work, seed, modes)
    try:
        if p.http_warmup:
            for name, server in servers.items():
                _wrk(server, "create", p, duration=p.http_warmup)
                if name != "bare":
                    drain_projection(server.data_dir, p.http_drain_timeout)
        for r in range(p.http_runs):
            log(f"w1: run {r + 1}/{p.http_runs}: bare, {', '.join(modes)}")
            b = _bare_run(servers["bare"], fake_hot, p)
            raw["bare.create"].append(b["create"])
            raw["bare.post"].append(b["post"])
            for mode in modes:
                res = _runtime_run(servers[mode], slices[r], p, r)
                for w in WORKLOADS:
                    raw[f"{mode}.{w}"].append(res[w])
    finally:
        for server in servers.values():
            server.stop()
    shutil.rmtree(seed, ignore_errors=True)
    for mode in modes:
        shutil.rmtree(work / f"data-{mode}", ignore_errors=True)
    summary = {k: summarise(v) for k, v in raw.items()}
    pairs = []
    for mode in (m for m in MODES if m in modes):
        for w in WORKLOADS:
            base = "bare.create" if w == "create" else "bare.post"
            ours = summary[f"{mode}.{w}"]
            pairs.append(
                {
                    "workload": w,
                    "sync_mode": mode,
                    "rps": ours["rps"],
                    "baseline": base,
                    "baseline_rps": summary[base]["rps"],
                    "ratio": ratio(ours["rps"], summary[base]["rps"]),
                }
            )
    return {
        "summary": summary,
        "pairs": pairs,
        "modes": list(modes),
        "metrics_cost": _metrics_cost(raw),
        "target_ratio": 0.5,
        "connections": p.http_connections,
        "duration_s": p.http_duration,
        "runs": p.http_runs,
        "hot_threads": p.hot_threads,
        "cold_threads": p.cold_threads,
        "drain_timeout_s": p.http_drain_timeout,
    }
