"""The machine a run measured on, and the commit of the code it measured."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .base import REPO
from .load import wrk_version


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "loadavg_at_start": [round(x, 2) for x in load],
        "wrk": wrk_version(),
    }


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['nproc']} × {m['cpu_model']}, {m['memory_gib']} GiB, Python {m['python']}, "
        f"SQLite {m['sqlite']}, Linux {m['kernel']}"
    )


def git_commit() -> str:
    """HEAD, plus "+dirty" when runtime/ has uncommitted changes (the code measured is the
    working tree's: other work may be in progress in the same checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            timeout=10,
            capture_output=True,
            text=True,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "runtime"],
            cwd=REPO,
            timeout=10,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except Exception:
        return ""
