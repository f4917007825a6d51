"""bench/report_template.md's fragments filled in, and the formatting of the figures that go
into them (for bench/report.py and bench/report_sections.py)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .machine import machine_line

TEMPLATE = Path(__file__).with_name("report_template.md")
_FRAGMENT = re.compile(r"^%% (\S+)\n", re.M)


def _fragments(text: str) -> dict[str, list[string.Template]]:
    """The template's fragments by name, each as its paragraphs (split at blank lines)."""
    parts = _FRAGMENT.split(text)[1:]  # [name, body, name, body, ...] after the preamble
    return {
        name: [string.Template(p) for p in body.strip("\n").split("\n\n")]
        for name, body in zip(parts[::2], parts[1::2])
    }


_FRAGMENTS = _fragments(TEMPLATE.read_text())


def fill(name: str, /, **values: Any) -> str:
    """Fragment `name` with `values` in; a paragraph that comes out blank is left out."""
    paragraphs = (p.substitute(values).rstrip("\n") for p in _FRAGMENTS[name])
    return "\n\n".join(p for p in paragraphs if p.strip())


def rows(name: str, values: Iterable[dict[str, Any]], /) -> str:
    """Fragment `name` filled once per item of `values`, one per line (a table's rows)."""
    return "\n".join(fill(name, **v) for v in values)


# -- figures ---------------------------------------------------------------------------------
def num(v: Any, fmt: str = "{:,.0f}", none: str = "—") -> str:
    """`v` formatted with `fmt`; `none` when there is no figure, the value as is when it does
    not fit the format."""
    if v is None:
        return none
    try:
        return fmt.format(v)
    except (ValueError, TypeError):
        return str(v)


def ms(us: Any) -> str:
    """Microseconds as milliseconds."""
    return num(None if us is None else us / 1000, "{:,.1f}")


def times(v: Any) -> str:
    """A ratio, as 0.26×."""
    return num(v, "{:.2f}×")


def pct(v: Any) -> str:
    return num(v, "{:.0f}%")


def verdict(value: Any, target: float, higher: bool = True) -> str:
    """Whether `value` meets `target` (at least it, or below it when not `higher`)."""
    if value is None:
        return fill("status.not_measured")
    ok = value >= target if higher else value < target
    return fill("status.met" if ok else "status.missed")


def per_cpu_second(row: dict[str, Any]) -> float | None:
    """Requests per CPU-second of the server: the row's own figure, else from its CPU share."""
    if row.get("rps_per_cpu_s"):
        return row["rps_per_cpu_s"]
    cpu = row.get("server_cpu_pct")
    return row["rps"] / (cpu / 100) if cpu else None


def worst_of(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def cell(text: str) -> str:
    """`text` safe inside a table cell's code span."""
    return text.replace("|", "/").replace("`", "'").replace("\n", " ")


def code(name: str | None) -> str:
    return f"`{name}`" if name else ""


def caption(w: dict[str, Any]) -> str:
    """The line under a workload's tables: command, commit, when, on what machine."""
    m = w.get("machine") or {}
    inv = w.get("invocation")
    command = w.get("command", "?")
    if inv and "--only" in inv:
        cmd = fill("caption.this_table", command=command, invocation=inv)
    else:
        cmd = fill("caption.command", command=command)
    if w.get("git_commit"):
        cmd = fill("caption.with_commit", command=cmd, commit=w["git_commit"])
    return fill(
        "caption",
        command=cmd,
        measured_at=w.get("measured_at", "?"),
        machine=machine_line(m) if m else "?",
    )


def part_caption(w: dict[str, Any], part: str) -> str:
    """`caption` of one part of a workload made of parts (workload 6): the command, commit and
    time it was measured with, which may be an earlier run's (bench/__main__.py keeps the parts
    a run did not measure)."""
    meta = (w.get(part) or {}).get("meta") or {}
    return caption({**w, **meta})


def error(w: dict[str, Any]) -> str:
    """The workload's failure, if it failed (else nothing)."""
    return fill("error", error=w["error"][:500]) if "error" in w else ""
