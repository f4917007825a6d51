"""Section 6 of docs/benchmarks.md (workload 6: the production backends and the handoff): its
figures computed from bench/results/latest.json, filled into bench/report_template.md."""

from __future__ import annotations

from typing import Any

from . import report_dynamodb
from .report_text import cell, code, error, fill, ms, num, part_caption, pct, rows, times, worst_of
from .stats import ratio

_WORKLOADS = ("create", "hot", "cold")


def production(w6: dict[str, Any]) -> str:
    if not w6:
        body = fill("production.not_measured")
    elif "error" in w6:
        body = ""
    else:
        c = w6.get("commands") or {}
        if "error" in c:
            commands_error = fill("production.part_failed", part="A", error=c["error"][:500])
        else:
            commands_error = ""
        body = fill(
            "production.measured",
            dynalite_version=w6.get("dynalite_version", "?"),
            node_version=w6.get("node_version", "?"),
            mysql_version=w6.get("mysql_version", "?"),
            commands_error=commands_error,
            commands=_commands(w6, c) if c.get("summary") else "",
            handoff=_handoff(w6, w6.get("handoff") or {}),
            clients=report_dynamodb.clients(w6),
            lag=report_dynamodb.lag(w6),
        )
    return fill("production", error=error(w6), body=body)


# -- 6A --------------------------------------------------------------------------------------
def _commands(w6: dict[str, Any], c: dict[str, Any]) -> str:
    s = c["summary"]
    servers = c.get("servers") or []
    table, backlog = [], []
    for server in servers:
        for w in _WORKLOADS:
            row = s.get(f"{server}.{w}")
            if not row:
                continue
            base = s.get(f"embedded.{w}", {})
            table.append(
                fill(
                    "production.baseline_row" if server == "embedded" else "production.row",
                    server=server,
                    workload=w,
                    rps=num(row["rps"]),
                    p50=ms(row["p50_us"]),
                    p99=ms(row["p99_us"]),
                    p999=ms(row["p999_us"]),
                    server_cpu=pct(row["server_cpu_pct"]),
                    dynalite_cpu=pct(row.get("dynalite_cpu_pct")),
                    mysqld_cpu=pct(row.get("mysqld_cpu_pct")),
                    core0_busy=pct(row.get("core0_busy_pct")),
                    rps_per_cpu_s=num(row.get("rps_per_cpu_s")),
                    rps_per_stack_cpu_s=num(row.get("rps_per_stack_cpu_s")),
                    ratio=times(ratio(row["rps"], base.get("rps"))),
                    ratio_per_stack_cpu_s=times(
                        ratio(row.get("rps_per_stack_cpu_s"), base.get("rps_per_stack_cpu_s"))
                    ),
                    non2xx=row["non2xx"],
                    errors=row["errors"],
                )
            )
            backlog.append(
                {
                    "server": server,
                    "workload": w,
                    "backlog": num(row.get("backlog_events")),
                    "drain_s": num(row.get("drain_s"), "{:.1f}"),
                    "left": num(row.get("drain_left_events")),
                    "rps_with_projection": num(row.get("rps_with_projection")),
                }
            )
    if c.get("cold_threads"):
        cold = fill("production.cold", cold_threads=num(c.get("cold_threads")))
    else:
        cold = fill("production.no_cold")
    return fill(
        "production.commands",
        connections=c.get("connections", "?"),
        duration_s=num(c.get("duration_s"), "{:g}"),
        runs=c.get("runs", "?"),
        shards=", ".join(
            fill("production.shards", name=n, shards=v) for n, v in (c.get("shards") or {}).items()
        ),
        cold=cold,
        rows="\n".join(table),
        backlog_rows=rows("production.backlog_row", backlog),
        cost=report_dynamodb.cost(c),
        cpu=_where_the_cpu_went(c, servers),
        quick_note=fill("production.quick_note") if c.get("drain_timeout_s") == 0 else "",
        profile=_profile(c.get("profile") or {}),
        caption=part_caption(w6, "commands"),
    )


def _where_the_cpu_went(c: dict[str, Any], servers: list[str]) -> str:
    s = c["summary"]
    notes = []
    for server in servers:
        row = s.get(f"{server}.create")
        if server == "embedded" or not row:
            continue
        busy = (row.get("server_cpu_pct") or 0) + (row.get("dynalite_cpu_pct") or 0)
        other = (row.get("core0_busy_pct") or busy) - busy
        notes.append(
            fill(
                "production.cpu_note",
                server=server,
                server_cpu=pct(row.get("server_cpu_pct")),
                dynalite_cpu=pct(row.get("dynalite_cpu_pct")),
                together=f"{busy:.0f}",
                other=f"{max(0.0, other):.0f}",
                mysqld_cpu=pct(row.get("mysqld_cpu_pct")),
            )
        )
    if not notes:
        return ""
    startup = " ".join(
        fill(
            "production.startup",
            name=n,
            shards=(c.get("shards") or {}).get(n),
            seconds=num(v, "{:.1f}"),
        )
        for n, v in (c.get("startup_idle_s") or {}).items()
        if v is not None
    )
    return fill("production.cpu", notes="; ".join(notes), startup=startup)


def _profile(prof: dict[str, Any]) -> str:
    if not prof:
        return ""
    if "error" in prof:
        return fill("production.profile_failed", error=prof["error"][:300])
    inclusive = [
        f for f in prof.get("inclusive_threadweaver", []) if not f["function"].startswith("run (")
    ][:12]
    own = prof.get("self_by_function", [])[:12]
    table = []
    for i in range(max(len(inclusive), len(own))):
        a = inclusive[i] if i < len(inclusive) else None
        b = own[i] if i < len(own) else None
        table.append(
            {
                "inclusive_function": code(a and a["function"]),
                "inclusive_pct": num(a and a["pct"], "{:.1f}", ""),
                "self_function": code(b and b["function"]),
                "self_pct": num(b and b["pct"], "{:.1f}", ""),
            }
        )
    return fill(
        "production.profile",
        tool=prof.get("tool"),
        duration_s=num(prof.get("duration_s"), "{:g}"),
        rps=num(prof.get("rps_under_profiler")),
        busy_s=num(prof.get("busy_s"), "{:.1f}"),
        wall_s=num(prof.get("wall_s"), "{:.1f}"),
        server_cpu=pct(prof.get("server_cpu_pct")),
        dynalite_cpu=pct(prof.get("dynalite_cpu_pct")),
        rows=rows("production.profile_row", table),
        tasks=", ".join(
            f"{t['task']} {t['pct']:.0f}%"
            for t in prof.get("self_by_task", [])
            if t.get("pct", 0) >= 1
        ),
        components=", ".join(
            f"{c['component']} {c['pct']:.0f}%"
            for c in prof.get("self_by_component", [])
            if c.get("pct", 0) >= 1
        ),
    )


# -- 6B --------------------------------------------------------------------------------------
def _handoff(w6: dict[str, Any], h: dict[str, Any]) -> str:
    if "error" in h:
        return fill("production.part_failed", part="B", error=h["error"][:1500])
    if not h:
        return ""
    moves = h.get("moves") or []
    sm, so = h.get("steady_moving") or {}, h.get("steady_other") or {}
    threads = h.get("threads") or {}
    return fill(
        "production.handoff",
        shards=h.get("shards"),
        range=h.get("range"),
        range_shards=h.get("range_shards"),
        warmup_s=num(h.get("warmup_s"), "{:g}"),
        settle_s=num(h.get("settle_s"), "{:g}"),
        rate=num(h.get("rate"), "{:g}"),
        moving_threads=threads.get("moving", "?"),
        other_threads=threads.get("other", "?"),
        rows=rows("production.move_row", (_move(i, m) for i, m in enumerate(moves, 1))),
        duration_median=num(h.get("duration_s_median"), "{:.2f}"),
        duration_worst=num(h.get("duration_s_worst"), "{:.2f}"),
        acked_median=num(h.get("acked_s_median"), "{:.2f}"),
        moving_max_median=num(h.get("moving_max_ms_median"), "{:,.0f}"),
        moving_max_worst=num(h.get("moving_max_ms_worst"), "{:,.0f}"),
        moving_p99_median=num(h.get("moving_p99_ms_median"), "{:,.0f}"),
        moving_p99_worst=num(h.get("moving_p99_ms_worst"), "{:,.0f}"),
        steady_moving_p50=num(sm.get("p50_ms"), "{:,.0f}"),
        steady_moving_p99=num(sm.get("p99_ms"), "{:,.0f}"),
        steady_other_p50=num(so.get("p50_ms"), "{:,.0f}"),
        steady_other_p99=num(so.get("p99_ms"), "{:,.0f}"),
        failed=num(h.get("failed")),
        requests=num(h.get("requests")),
        failed_statuses=h.get("failed_statuses") or fill("none"),
        failed_outside_moves=num(h.get("failed_outside_moves")),
        achieved_rps=num(h.get("achieved_rps"), "{:.0f}"),
        load_s=num(h.get("load_s"), "{:.0f}"),
        member_cpu=", ".join(f"{n} {v:.0f}%" for n, v in (h.get("member_cpu_pct") or {}).items()),
        dynalite_cpu=pct(h.get("dynalite_cpu_pct")),
        core0_busy=pct(h.get("core0_busy_pct")),
        core0_others=pct(h.get("core0_others_pct")),
        mysqld_cpu=pct(h.get("mysqld_cpu_pct")),
        startup_idle_s=num(h.get("startup_idle_s"), "{:.1f}"),
        idle=_idle(h["idle"]) if h.get("idle") else "",
        others_slow=_others_slow(moves, so),
        failures=_failures(h.get("failures") or []),
        log_problems=_log_problems(h.get("member_log_problems") or {}),
        caption=part_caption(w6, "handoff"),
    )


def _move(i: int, m: dict[str, Any]) -> dict[str, Any]:
    mv, ot = m.get("moving", {}), m.get("others", {})
    failed = m.get("failed", 0)
    return {
        "move": i,
        "direction": m["direction"],
        "acked_s": num(m.get("acked_s"), "{:.2f}"),
        "complete_s": num(m.get("complete_s"), "{:.2f}"),
        "duration_s": num(m.get("duration_s"), "{:.2f}"),
        "count": num(mv.get("count")),
        "p50": num(mv.get("p50_ms"), "{:,.0f}"),
        "p99": num(mv.get("p99_ms"), "{:,.0f}"),
        "max": num(mv.get("max_ms"), "{:,.0f}"),
        "others_max": num(ot.get("max_ms"), "{:,.0f}"),
        "failed": f"{failed} {m.get('failed_statuses')}" if failed else failed,
        "core0_others": pct(m.get("core0_others_pct")),
    }


def _idle(idle: dict[str, Any]) -> str:
    return fill(
        "production.idle",
        seconds=num(idle.get("seconds"), "{:.0f}"),
        member_cpu=", ".join(f"{v:.0f}%" for v in (idle.get("member_cpu_pct") or {}).values()),
        dynalite_cpu=pct(idle.get("dynalite_cpu_pct")),
    )


def _others_slow(moves: list[dict[str, Any]], steady_other: dict[str, Any]) -> str:
    """Said when the other ranges' commands were slow in the windows too (over twice their
    steady p99): then the handoff is not what delayed them."""
    others_max = worst_of(m.get("others", {}).get("max_ms") for m in moves)
    steady_p99 = steady_other.get("p99_ms")
    if others_max is None or not steady_p99 or others_max <= 2 * steady_p99:
        return ""
    return fill(
        "production.others_slow", others_max=f"{others_max:,.0f}", steady_p99=f"{steady_p99:,.0f}"
    )


def _failures(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return ""
    table = [
        {
            "after_move": f.get("after_move", fill("production.before_the_first_move")),
            "sent_after_publish": num(f.get("sent_after_publish_s"), "{:.2f}"),
            "sent_after_served": num(f.get("sent_after_served_s"), "{:.2f}"),
            "member": f.get("member"),
            "group": f.get("group"),
            "latency": num(f.get("latency_ms"), "{:,.0f}"),
            "status": f.get("status"),
            "detail": cell(f.get("detail") or "")[:160],
        }
        for f in failures
    ]
    return fill("production.failures", rows=rows("production.failure_row", table))


def _log_problems(problems: dict[str, list[str]]) -> str:
    if not problems:
        return ""
    lines = "\n".join(f"{n}: {line}" for n, lines in problems.items() for line in lines)
    return fill("production.log_problems", lines=lines)
