"""Workload 8's section of docs/benchmarks.md (live event streams, bench/w8_streams.py) and its
rows of the Targets table: memory per idle subscriber under 20 KB, delivery p99 under 50 ms
embedded and under 250 ms on the production backends."""

from __future__ import annotations

from typing import Any

from .report_text import caption, error, fill, num, rows, verdict

MEMORY_TARGET = 20 * 1024  # bytes per idle subscriber
P99_TARGETS_MS = {"embedded": 50.0, "production": 250.0}
STACKS = {"embedded": "embedded (SQLite)", "production": "dynalite + MariaDB"}
ms = "{:.1f}"


def target_rows(w8: dict[str, Any]) -> list[str]:
    out = []
    idle = w8.get("idle") or {}
    if idle:
        out.append(
            fill(
                "target.stream_memory",
                subscribers=num(idle.get("subscribers")),
                bytes=num(idle.get("bytes_per_subscriber")),
                status=verdict(idle.get("bytes_per_subscriber"), MEMORY_TARGET, higher=False),
            )
        )
    for stack, target in P99_TARGETS_MS.items():
        for part in ("active", "fanout"):
            r = w8.get(f"{part}_{stack}") or {}
            if r:
                out.append(
                    fill(
                        "target.stream_latency",
                        stack=STACKS[stack],
                        subscribers=num(r.get("subscribers")),
                        threads=num(r.get("threads")),
                        rate=num(r.get("rate")),
                        p99=num(r.get("p99_ms"), ms),
                        target=num(target),
                        status=verdict(r.get("p99_ms"), target, higher=False),
                    )
                )
    return out


def streams(w8: dict[str, Any]) -> str:
    if not w8:
        return fill("streams", error="", results=fill("streams.not_measured"), caption="")
    idle = w8.get("idle") or {}
    table = []
    for stack in STACKS:
        for part, label in (("active", "active"), ("fanout", "one thread fanned out")):
            r = w8.get(f"{part}_{stack}")
            if not r:
                continue
            table.append(
                {
                    "stack": STACKS[stack],
                    "part": label,
                    "subscribers": num(r.get("subscribers")),
                    "threads": num(r.get("threads")),
                    "rate": num(r.get("rate")),
                    "delivered": f"{num(r.get('samples'))} / {num(r.get('expected'))}",
                    "p50": num(r.get("p50_ms"), ms),
                    "p99": num(r.get("p99_ms"), ms),
                    "max": num(r.get("max_ms"), ms),
                    "before_ack": num(r.get("before_ack_fraction"), "{:.0%}"),
                    "send_p50": num(r.get("from_send_p50_ms"), ms),
                    "send_p99": num(r.get("from_send_p99_ms"), ms),
                    "server_cpu": num(r.get("server_cpu_ms_per_post"), ms),
                    "client_cpu": num(r.get("client_cpu_ms_per_post"), ms),
                }
            )
    results = fill(
        "streams.results",
        subscribers=num(idle.get("subscribers")),
        threads=num(idle.get("threads")),
        rss_before=num(idle.get("rss_before_mib"), "{:,.1f}"),
        rss_after=num(idle.get("rss_after_mib"), "{:,.1f}"),
        bytes=num(idle.get("bytes_per_subscriber")),
        rows=rows("streams.row", table),
    )
    return fill("streams", error=error(w8), results=results, caption=caption(w8))
