"""What workload 6 measured of the DynamoDB journal's cost, for docs/benchmarks.md: requests and
runtime CPU per command (6A), idle requests per second, the client micro-benchmark (6C), the
projection lag on the production backends (6D) and the target rows of these figures (bench/report_template.md fragments ``dynamodb.*`` and
``target.dynamodb_*``)."""

from __future__ import annotations

from typing import Any

from .report_text import fill, num, part_caption, pct, rows, times, verdict
from .stats import ratio

_WORKLOADS = ("create", "hot", "cold")
_NAMES = {"hot": "warm posts", "cold": "cold posts", "create": "creates"}
# target: requests per warm command, CPU per command against the embedded runtime, idle req/s
MAX_WARM_REQUESTS, MAX_CPU_RATIO, MAX_IDLE_RPS = 1.1, 2.0, 5.0


def _production_servers(c: dict[str, Any]) -> list[str]:
    return [s for s in c.get("servers") or [] if s != "embedded"]


def _by_operation(row: dict[str, Any]) -> str:
    ops = row.get("dynamodb_per_command_by_operation") or {}
    return ", ".join(f"{op} {v:.2f}" for op, v in ops.items()) or "—"


def cost(c: dict[str, Any]) -> str:
    """6A's table of DynamoDB requests and runtime CPU per command, and the idle requests."""
    s = c.get("summary") or {}
    table = []
    for server in _production_servers(c):
        for w in _WORKLOADS:
            row, base = s.get(f"{server}.{w}"), s.get(f"embedded.{w}") or {}
            if not row:
                continue
            table.append(
                {
                    "server": server,
                    "workload": _NAMES[w],
                    "requests": num(row.get("dynamodb_per_command"), "{:.2f}"),
                    "by_operation": _by_operation(row),
                    "cpu_ms": num(row.get("cpu_ms_per_command"), "{:.2f}"),
                    "embedded_cpu_ms": num(base.get("cpu_ms_per_command"), "{:.2f}"),
                    "ratio": times(
                        ratio(row.get("cpu_ms_per_command"), base.get("cpu_ms_per_command"))
                    ),
                }
            )
    if not table:
        return ""
    idle = [
        fill(
            "dynamodb.idle_note",
            server=name,
            rps=num(v.get("requests_per_s"), "{:.2f}"),
            seconds=num(v.get("seconds"), "{:.0f}"),
            by_operation=", ".join(f"{op} {n}" for op, n in (v.get("by_operation") or {}).items())
            or "none",
            cpu=num(v.get("runtime_cpu_pct"), "{:.1f}%"),
        )
        for name, v in (c.get("idle") or {}).items()
    ]
    return fill(
        "dynamodb.cost",
        rows=rows("dynamodb.cost_row", table),
        idle=" ".join(idle),
    )


def clients(w6: dict[str, Any]) -> str:
    """6C: client CPU per DynamoDB call, and a group commit's transaction against puts."""
    k = w6.get("clients") or {}
    if not k:
        return ""
    if "error" in k:
        return fill("production.part_failed", part="C", error=k["error"][:1500])
    variants = k.get("variants") or {}
    table = [
        {
            "variant": name,
            "cpu_us": num(v.get("cpu_us_per_call"), "{:,.0f}"),
            "runs": ", ".join(f"{x:,.0f}" for x in v.get("runs_us") or []),
            "ratio": times(v.get("ratio_to_sdk")),
        }
        for name, v in variants.items()
    ]
    g = k.get("group_commit") or {}
    return fill(
        "dynamodb.clients",
        calls=num(k.get("calls")),
        rounds=k.get("rounds", "?"),
        concurrency=k.get("concurrency", "?"),
        rows=rows("dynamodb.clients_row", table),
        group=fill(
            "dynamodb.group",
            group=g.get("group", "?"),
            puts=num(g.get("puts_cpu_us_per_event"), "{:,.0f}"),
            transaction=num(g.get("transaction_cpu_us_per_event"), "{:,.0f}"),
            ratio=times(g.get("ratio")),
        )
        if g
        else "",
        caption=part_caption(w6, "clients"),
    )


def lag(w6: dict[str, Any]) -> str:
    """6D: projection lag on the production backends at steady load (bench/w6_lag.py)."""
    d = w6.get("lag") or {}
    if not d:
        return ""
    if "error" in d:
        return fill("dynamodb.lag_failed", error=d["error"][:1500])
    return fill(
        "dynamodb.lag",
        shards=num(d.get("shards"), "{}"),
        probe_rate=num(d.get("probe_rate"), "{:g}"),
        duration_s=num(d.get("duration_s"), "{:g}"),
        connections=d.get("steady_connections", "?"),
        delay_ms=d.get("steady_delay_ms", "?"),
        runs=d.get("lag_runs", "?"),
        background_rps=num(d.get("background_rps")),
        probes=num(d.get("probes")),
        p50=num(d.get("p50_ms"), "{:,.1f}"),
        p99=num(d.get("p99_ms"), "{:,.1f}"),
        p999=num(d.get("p999_ms"), "{:,.1f}"),
        worst_p99=num(d.get("worst_p99_ms"), "{:,.1f}"),
        not_visible=num(d.get("not_visible")),
        server_cpu=pct(d.get("server_cpu_pct")),
        dynalite_cpu=pct(d.get("dynalite_cpu_pct")),
        mysqld_cpu=pct(d.get("mysqld_cpu_pct")),
        caption=part_caption(w6, "lag"),
    )


def target_rows(w6: dict[str, Any]) -> list[str]:
    out = _lag_target_rows(w6)
    c = w6.get("commands") or {}
    s = c.get("summary") or {}
    servers = _production_servers(c)
    if not servers:
        return out
    server = servers[0]
    hot = s.get(f"{server}.hot") or {}
    if hot:
        out.append(
            fill(
                "target.dynamodb_requests",
                server=server,
                requests=num(hot.get("dynamodb_per_command"), "{:.2f}"),
                by_operation=_by_operation(hot),
                status=verdict(hot.get("dynamodb_per_command"), MAX_WARM_REQUESTS + 1e-9, False),
            )
        )
    for w in _WORKLOADS:
        row, base = s.get(f"{server}.{w}"), s.get(f"embedded.{w}") or {}
        if not row or not row.get("cpu_ms_per_command"):
            continue
        r = ratio(row.get("cpu_ms_per_command"), base.get("cpu_ms_per_command"))
        out.append(
            fill(
                "target.dynamodb_cpu",
                server=server,
                workload=_NAMES[w],
                cpu_ms=num(row.get("cpu_ms_per_command"), "{:.2f}"),
                embedded_cpu_ms=num(base.get("cpu_ms_per_command"), "{:.2f}"),
                ratio=times(r),
                status=verdict(r, MAX_CPU_RATIO + 1e-9, False),
            )
        )
    idle = (c.get("idle") or {}).get(server)
    if idle:
        out.append(
            fill(
                "target.dynamodb_idle",
                server=server,
                rps=num(idle.get("requests_per_s"), "{:.2f}"),
                status=verdict(idle.get("requests_per_s"), MAX_IDLE_RPS + 1e-9, False),
            )
        )
    return out


def _lag_target_rows(w6: dict[str, Any]) -> list[str]:
    d = w6.get("lag") or {}
    if not d or "error" in d:
        return []
    p99 = d.get("p99_ms")
    status = verdict(p99, d.get("target_p99_ms", 250), higher=False)
    if p99 is None and d.get("not_visible"):
        status = fill("status.probes_not_visible")
    return [
        fill(
            "target.dynamodb_lag",
            target=num(d.get("target_p99_ms", 250)),
            shards=num(d.get("shards")),
            p99=num(p99, "{:,.0f}"),
            p50=num(d.get("p50_ms"), "{:,.0f}"),
            status=status,
        )
    ]
