"""docs/benchmarks.md from bench/results/latest.json (python -m bench.report to regenerate).

The prose is bench/report_template.md's; this module fills in the header and the Targets table,
bench/report_sections.py and bench/report_production.py the workloads' sections. The
hand-written analysis of the profile (bench/profile_notes.md) is appended verbatim, so
regenerating never loses it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from . import report_dynamodb, report_rebuild, report_streams
from . import report_sections as sections
from .base import REPO, RESULTS
from .machine import machine_line
from .report_production import production
from .report_text import fill, num, times, verdict
from .stats import ratio

DOC = REPO / "docs" / "benchmarks.md"
NOTES = Path(__file__).with_name("profile_notes.md")


# -- the document ----------------------------------------------------------------------------
def render(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    ws = results.get("workloads", {})
    m = meta.get("machine", {})
    return (
        fill(
            "document",
            invocation=meta.get("invocation", ""),
            run_profile=meta.get("profile", "?"),
            started=meta.get("started", "?"),
            elapsed_s=num(meta.get("elapsed_s"), "{:.0f}"),
            machine=machine_line(m) if m else "?",
            wrk=m.get("wrk", "wrk"),
            loadavg_at_start=m.get("loadavg_at_start"),
            loadavg_at_end=meta.get("loadavg_at_end"),
            targets="\n".join(_target_rows(ws)),
            http=sections.http(ws.get("http", {})),
            journal=sections.journal(ws.get("journal", {})),
            projection_lag=sections.projection_lag(ws.get("projection_lag", {})),
            recovery=sections.recovery(ws.get("recovery", {})),
            memory=sections.memory(ws.get("memory", {})),
            production=production(ws.get("production", {})),
            rebuild=report_rebuild.section(ws.get("rebuild", {})),
            streams=report_streams.streams(ws.get("streams", {})),
            profile=sections.profile(ws.get("profile", {})),
            notes=NOTES.read_text().strip() if NOTES.exists() else "",
        )
        + "\n"
    )


def _target_rows(ws: dict[str, Any]) -> list[str]:
    rows = []
    for pair in ws.get("http", {}).get("pairs", []):
        rows.append(
            fill(
                "target.http",
                workload=pair["workload"],
                sync_mode=pair["sync_mode"],
                rps=num(pair["rps"]),
                baseline_rps=num(pair["baseline_rps"]),
                ratio=times(pair["ratio"]),
                status=verdict(pair["ratio"], 0.5),
            )
        )
    for cost in ws.get("http", {}).get("metrics_cost", []):
        rows.append(
            fill(
                "target.metrics_cost",
                workload=cost["workload"],
                per_cpu_s=num(cost.get("rps_per_cpu_s")),
                per_cpu_s_off=num(cost.get("rps_per_cpu_s_off")),
                ratio=times(cost.get("rps_per_cpu_s_ratio")),
            )
        )
    for row in ws.get("journal", {}).get("rows", []):
        rows.append(
            fill(
                "target.journal",
                writers=row["concurrency"],
                ours=num(row["ours_events_per_s"]),
                eventsourcing=num(row["eventsourcing_events_per_s"]),
                ratio=times(row["ratio"]),
                status=verdict(row["ratio"], 3.0)
                if row["concurrency"] > 1
                else fill("status.no_target_for_one_writer"),
            )
        )
    w3 = ws.get("projection_lag", {})
    lag_targets = (
        ("target.projection_lag", 100, lambda level: w3.get(level, {})),
        (
            "target.projection_lag_mysql",
            w3.get("mysql_target_p99_ms", 1000),
            lambda level: (w3.get("mysql") or {}).get(level),
        ),
    )
    for name, target, figures in lag_targets:
        for level in w3.get("levels", []):
            d = figures(level)
            if d is None:
                continue
            p99 = d.get("p99_ms")
            if level == "steady":
                status = verdict(p99, target, higher=False)
            else:
                status = fill("status.informational")
            if p99 is None and d.get("not_visible"):
                status = fill("status.probes_not_visible")
            rows.append(
                fill(
                    name,
                    level=level,
                    p99=num(p99, "{:,.0f}"),
                    p50=num(d.get("p50_ms"), "{:,.0f}"),
                    status=status,
                )
            )
    w6 = ws.get("production", {})
    rows += _handoff_target_rows(w6)
    summary = ((w6.get("commands") or {}).get("summary")) or {}
    for workload in ("create", "hot", "cold"):
        prod, emb = summary.get(f"production.{workload}"), summary.get(f"embedded.{workload}")
        if prod and emb:
            rows.append(
                fill(
                    "target.production_http",
                    workload=workload,
                    rps=num(prod.get("rps")),
                    baseline_rps=num(emb.get("rps")),
                    ratio=times(ratio(prod.get("rps"), emb.get("rps"))),
                )
            )
    rows += report_dynamodb.target_rows(w6)
    rows += report_rebuild.target_rows(ws.get("rebuild", {}))
    w4 = ws.get("recovery", {})
    if "with" in w4 and "without" in w4:
        rows.append(
            fill(
                "target.recovery",
                messages=num(w4.get("messages")),
                with_ms=num(w4["with"]["load_ms"], "{:,.1f}"),
                without_ms=num(w4["without"]["load_ms"], "{:,.1f}"),
                speedup=times(w4.get("speedup_with_snapshot")),
            )
        )
    w5 = ws.get("memory", {})
    if "bounded" in w5 and "unbounded" in w5:
        rows.append(
            fill(
                "target.memory",
                threads=num(w5.get("threads")),
                bound=num(w5.get("bound"), "{}"),
                bounded=num(w5["bounded"]["peak_rss_mib"], "{:,.0f}"),
                unbounded=num(w5["unbounded"]["peak_rss_mib"], "{:,.0f}"),
                ratio=times(w5.get("peak_ratio_unbounded_over_bounded")),
            )
        )
    rows += report_streams.target_rows(ws.get("streams", {}))
    return rows


def _handoff_target_rows(w6: dict[str, Any]) -> list[str]:
    h = w6.get("handoff") or {}
    if not h or "error" in h:
        if not w6:
            return []
        status = fill("status.handoff_failed" if "error" in h else "status.not_measured")
        return [fill("target.handoff_not_measured", status=status)]
    failed = h.get("failed")
    return [
        fill(
            "target.handoff_failures",
            failed=num(failed),
            requests=num(h.get("requests")),
            moves=len(h.get("moves", [])),
            failed_statuses=num(h.get("failed_statuses") or fill("none"), "{}"),
            status=fill("status.met" if failed == 0 else "status.missed"),
        ),
        fill(
            "target.handoff_duration",
            median=num(h.get("duration_s_median"), "{:.2f}"),
            worst=num(h.get("duration_s_worst"), "{:.2f}"),
            moving_max=num(h.get("moving_max_ms_worst"), "{:,.0f}"),
        ),
    ]


def targets(results: dict[str, Any]) -> str:
    """The Targets table of `render` alone: what a run prints when it ends."""
    text = render(results)
    start = text.index("## Targets")
    return text[start : text.index("\n## ", start + 1)].strip()


def write_docs(results: dict[str, Any]) -> Path:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(results))
    return DOC


def main() -> int:
    results = json.loads((RESULTS / "latest.json").read_text())
    print(write_docs(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
