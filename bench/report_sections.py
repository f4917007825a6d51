"""Sections 1 to 5 and the Profile of docs/benchmarks.md, one function per workload: each
computes the figures of its results (bench/results/latest.json) and fills them into
bench/report_template.md's fragments (section 6: bench/report_production.py)."""

from __future__ import annotations

from typing import Any

from .report_text import caption, error, fill, ms, num, pct, per_cpu_second, rows, times
from .stats import ratio

_HTTP_ROWS = (
    "bare.create",
    "bare.post",
    "full.create",
    "full.hot",
    "full.cold",
    "normal.create",
    "normal.hot",
    "normal.cold",
    "full-nometrics.create",
    "full-nometrics.hot",
    "full-nometrics.cold",
)
_HTTP_SERVERS = {"full-nometrics": "full, without metrics"}  # the rows' names, where not a mode


# -- 1 ---------------------------------------------------------------------------------------
def http(w1: dict[str, Any]) -> str:
    return fill(
        "http",
        hot_threads=w1.get("hot_threads", "?"),
        cold_threads=num(w1.get("cold_threads")),
        connections=w1.get("connections", "?"),
        duration_s=num(w1.get("duration_s"), "{:g}"),
        runs=w1.get("runs", "?"),
        error=error(w1),
        results=_http_results(w1) if w1.get("summary") else "",
        caption=caption(w1),
    )


def _http_results(w1: dict[str, Any]) -> str:
    s = w1["summary"]
    table, backlog = [], []
    for key in _HTTP_ROWS:
        row = s.get(key)
        if not row:
            continue
        server, workload = key.split(".")
        base = s.get("bare.create" if workload == "create" else "bare.post", {})
        figures = {
            "server": _HTTP_SERVERS.get(server, server),
            "workload": workload,
            "rps": num(row["rps"]),
            "p50": ms(row["p50_us"]),
            "p99": ms(row["p99_us"]),
            "p999": ms(row["p999_us"]),
            "server_cpu": pct(row["server_cpu_pct"]),
            "wrk_cpu": pct(row["wrk_cpu_pct"]),
            "rps_per_cpu_s": num(per_cpu_second(row)),
            "baseline_rps": num(base.get("rps")),
            "ratio": times(ratio(row["rps"], base.get("rps"))),
            "ratio_per_cpu_s": times(ratio(per_cpu_second(row), per_cpu_second(base))),
            "non2xx": row["non2xx"],
        }
        table.append(fill("http.baseline_row" if server == "bare" else "http.row", **figures))
        if server != "bare" and row.get("backlog_events") is not None:
            backlog.append(
                {
                    "server": _HTTP_SERVERS.get(server, server),
                    "workload": workload,
                    "rps": num(row["rps"]),
                    "backlog": num(row["backlog_events"]),
                    "drain_s": num(row["drain_s"], "{:.1f}"),
                    "left": num(row["drain_left_events"]),
                    "rps_with_projection": num(row.get("rps_with_projection")),
                    "ratio": times(ratio(row.get("rps_with_projection"), base.get("rps"))),
                }
            )
    return fill(
        "http.results",
        rows="\n".join(table),
        backlog_rows=rows("http.backlog_row", backlog),
        quick_note=fill("http.quick_note") if w1.get("drain_timeout_s") == 0 else "",
        metrics_cost=_metrics_cost(w1.get("metrics_cost") or []),
    )


def _metrics_cost(cost: list[dict[str, Any]]) -> str:
    """What the runtime's metrics cost: `full` against `full-nometrics` (bench/w1_http.py)."""
    if not cost:
        return ""
    table = [
        {
            "workload": c["workload"],
            "rps": num(c.get("rps")),
            "rps_off": num(c.get("rps_off")),
            "rps_ratio": times(c.get("rps_ratio")),
            "per_cpu_s": num(c.get("rps_per_cpu_s")),
            "per_cpu_s_off": num(c.get("rps_per_cpu_s_off")),
            "per_cpu_s_ratio": times(c.get("rps_per_cpu_s_ratio")),
            "per_cpu_s_ratios": ", ".join(
                f"{x:.2f}" for x in c.get("rps_per_cpu_s_ratios") or [] if x is not None
            ),
            "p50": ms(c.get("p50_us")),
            "p50_off": ms(c.get("p50_us_off")),
            "p99": ms(c.get("p99_us")),
            "p99_off": ms(c.get("p99_us_off")),
        }
        for c in cost
    ]
    return fill(
        "http.metrics_cost",
        rounds=cost[0].get("rounds", "?"),
        rows=rows("http.metrics_cost_row", table),
    )


# -- 2 ---------------------------------------------------------------------------------------
def journal(w2: dict[str, Any]) -> str:
    results = ""
    if w2.get("rows"):
        table = [
            {
                "writers": row["concurrency"],
                "ours": num(row["ours_events_per_s"]),
                "eventsourcing": num(row["eventsourcing_events_per_s"]),
                "ratio": times(row["ratio"]),
                "appends_per_commit": num(row["ours_appends_per_commit"], "{:.1f}"),
                "fsync_ms": num(row.get("fsync_ms"), "{:.2f}"),
            }
            for row in w2["rows"]
        ]
        results = fill("journal.results", rows=rows("journal.row", table))
    return fill(
        "journal",
        events=num(w2.get("events")),
        aggregates=num(w2.get("aggregates")),
        error=error(w2),
        results=results,
        caption=caption(w2),
    )


# -- 3 ---------------------------------------------------------------------------------------
def projection_lag(w3: dict[str, Any]) -> str:
    results = ""
    if w3.get("levels"):
        past_grace = fill("projection_lag.past_grace")
        table = []
        for kind in ("sqlite", "mysql"):
            for level in w3["levels"]:
                d = w3.get(level, {}) if kind == "sqlite" else (w3.get("mysql") or {}).get(level)
                if not d:
                    continue
                table.append(
                    {
                        "read_model": fill(f"projection_lag.read_model.{kind}"),
                        "level": level,
                        "background_rps": num(d.get("background_rps")),
                        "probes": num(d.get("probes")),
                        "p50": num(d.get("p50_ms"), "{:,.1f}", past_grace),
                        "p99": num(d.get("p99_ms"), "{:,.1f}", past_grace),
                        "p999": num(d.get("p999_ms"), "{:,.1f}", past_grace),
                        "worst_p99": num(d.get("worst_p99_ms"), "{:,.1f}", past_grace),
                        "not_visible": num(d.get("not_visible")),
                        "server_cpu": pct(d.get("server_cpu_pct")),
                        "mysqld_cpu": pct(d.get("mysqld_cpu_pct")),
                    }
                )
        results = fill("projection_lag.results", rows=rows("projection_lag.row", table))
    return fill(
        "projection_lag",
        probe_rate=num(w3.get("probe_rate"), "{:g}"),
        duration_s=num(w3.get("duration_s"), "{:g}"),
        mysql_version=w3.get("mysql_version", ""),
        steady_connections=w3.get("steady_connections", "?"),
        steady_delay_ms=w3.get("steady_delay_ms", "?"),
        runs=w3.get("runs", "?"),
        error=error(w3),
        results=results,
        caption=caption(w3),
    )


# -- 4 ---------------------------------------------------------------------------------------
def recovery(w4: dict[str, Any]) -> str:
    results = ""
    if "without" in w4:
        a, b = w4["without"], w4["with"]
        breakdown = (w4.get("breakdown_without_ms") or {}).items()
        results = fill(
            "recovery.results",
            without_ms=num(a["load_ms"], "{:,.1f}"),
            without_replayed=num(a["events_replayed"]),
            without_replayed_per_s=num(a["replayed_per_s"]),
            without_state_events_per_s=num(a["state_events_per_s"]),
            with_ms=num(b["load_ms"], "{:,.1f}"),
            with_replayed=num(b["events_replayed"]),
            with_state_events_per_s=num(b["state_events_per_s"]),
            speedup=times(w4.get("speedup_with_snapshot")),
            breakdown=", ".join(
                fill("recovery.breakdown_item", step=k.replace("_", " "), ms=v)
                for k, v in breakdown
            ),
        )
    return fill(
        "recovery",
        messages=num(w4.get("messages")),
        events_in_journal=num(w4.get("events_in_journal")),
        error=error(w4),
        results=results,
        caption=caption(w4),
    )


# -- 5 ---------------------------------------------------------------------------------------
def memory(w5: dict[str, Any]) -> str:
    results = ""
    if "bounded" in w5:
        table = [
            {
                "max_entities": d["max_entities"],
                "cap": num(w5.get("bound")) if name == "bounded" else num(w5.get("threads")),
                "start_rss": num(d["start_rss_mib"], "{:,.0f}"),
                "end_rss": num(d["end_rss_mib"], "{:,.0f}"),
                "peak_rss": num(d["peak_rss_mib"], "{:,.0f}"),
                "create_s": num(d["create_s"], "{:.0f}"),
            }
            for name, d in (("bounded", w5["bounded"]), ("unbounded", w5["unbounded"]))
        ]
        in_process = w5.get("in_process", {})
        results = fill(
            "memory.results",
            rows=rows("memory.row", table),
            peak_ratio=times(w5.get("peak_ratio_unbounded_over_bounded")),
            rss_bytes_per_entity=num(w5.get("rss_bytes_per_entity"), "{:,.0f}"),
            python_bytes_per_entity=num(in_process.get("bytes_per_entity"), "{:,.0f}"),
            entities=num(in_process.get("entities")),
        )
    return fill(
        "memory",
        threads=num(w5.get("threads")),
        bound=num(w5.get("bound"), "{}"),
        error=error(w5),
        results=results,
        caption=caption(w5),
    )


# -- Profile ---------------------------------------------------------------------------------
def profile(prof: dict[str, Any]) -> str:
    if prof and "error" not in prof:
        body = _profile_measured(prof)
    elif prof.get("error"):
        body = error(prof)
    else:
        body = fill("profile.not_run")
    return fill("profile", body=body)


def _profile_measured(prof: dict[str, Any]) -> str:
    def shares(key: str, field: str) -> str:
        """Percentages of busy time per `field` value, create beside hot posts, largest first."""
        by_name: dict[str, dict[str, float]] = {}
        for wl in ("create", "hot"):
            for c in prof.get(wl, {}).get(key, []):
                by_name.setdefault(c[field], {})[wl] = c["pct"]
        ordered = sorted(by_name.items(), key=lambda kv: -max(kv[1].values()))
        return rows(
            "profile.share_row",
            (
                {
                    "name": name,
                    "create": num(v.get("create"), "{:.1f}"),
                    "hot": num(v.get("hot"), "{:.1f}"),
                }
                for name, v in ordered
                if max(v.values()) >= 0.5
            ),
        )

    workloads = []
    for wl in ("create", "hot"):
        d = prof.get(wl, {})
        if not d:
            continue
        workloads.append(
            fill(
                "profile.workload",
                title=fill(f"profile.title.{wl}"),
                rps=num(d.get("rps_under_profiler")),
                busy_s=num(d.get("total_s"), "{:.1f}"),
                wall_s=num(d.get("wall_s"), "{:.1f}"),
                self_rows=_function_rows(d.get("self_by_function", [])[:15]),
                inclusive_rows=_function_rows(d.get("inclusive_threadweaver", [])[1:21]),
            )
        )
    return fill(
        "profile.measured",
        tool=prof.get("tool", "pyinstrument"),
        duration_s=num(prof.get("duration_s"), "{:g}"),
        tasks=shares("self_by_task", "task"),
        components=shares("self_by_component", "component"),
        workloads="\n\n".join(workloads),
        caption=caption(prof),
    )


def _function_rows(functions: list[dict[str, Any]]) -> str:
    return rows(
        "profile.function_row",
        ({"pct": f"{fn['pct']:.1f}", "function": fn["function"]} for fn in functions),
    )
