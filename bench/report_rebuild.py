"""What workload 7 measured of the read-model rebuild (`threadweaver project`), for
docs/benchmarks.md: its section and its target rows (bench/report_template.md fragments
``rebuild*`` and ``target.rebuild``)."""

from __future__ import annotations

from typing import Any

from .report_text import caption, error, fill, num, rows, verdict

_TARGETS = (("sqlite", "SQLite", "target_sqlite"), ("mysql", "MySQL (MariaDB)", "target_mysql"))


def _rows(w7: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, name, target in _TARGETS:
        d = w7.get(key)
        if not d:
            continue
        out.append(
            {
                "target": name,
                "events": num(d.get("applied")),
                "build_s": num(d.get("build_s"), "{:,.1f}"),
                "events_per_s": num(d.get("events_per_s")),
                "cpu_s": num(d.get("cpu_s"), "{:,.1f}"),
                "cpu_pct": num(d.get("cpu_pct"), "{:.0f} %"),
                "events_per_cpu_s": num(d.get("events_per_cpu_s")),
                "passes": num(d.get("passes")),
                "lag_s": num(d.get("lag_s"), "{:.2f}"),
                "mysqld_cpu_pct": num(d.get("mysqld_cpu_pct"), "{:.0f} %"),
                "goal": num(w7.get(target)),
                "rate": d.get("events_per_s"),
                "per_cpu": d.get("events_per_cpu_s"),
            }
        )
    return out


def section(w7: dict[str, Any]) -> str:
    table = rows("rebuild.row", _rows(w7)) if w7.get("sqlite") or w7.get("mysql") else ""
    return fill(
        "rebuild",
        events_in_journal=num(w7.get("events_in_journal")),
        shards=num(w7.get("shards")),
        events_per_thread=num(w7.get("events_per_thread")),
        live_connections=w7.get("live_connections", "?"),
        live_delay_ms=w7.get("live_delay_ms", "?"),
        live_appends_per_s=num(w7.get("live_appends_per_s"), "{:,.0f}"),
        mysql_version=w7.get("mysql_version", ""),
        loadavg=w7.get("loadavg_at_end", "?"),
        error=error(w7),
        results=fill("rebuild.results", rows=table) if table else "",
        caption=caption(w7) if w7 else "",
    )


def target_rows(w7: dict[str, Any]) -> list[str]:
    return [
        fill(
            "target.rebuild",
            target=r["target"],
            events_per_s=r["events_per_s"],
            events_per_cpu_s=r["events_per_cpu_s"],
            goal=r["goal"],
            status=verdict(r["rate"], w7.get(t[2])),
        )
        for r, t in zip(_rows(w7), [t for t in _TARGETS if w7.get(t[0])])
    ]
