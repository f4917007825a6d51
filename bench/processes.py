"""Child processes on pinned cores, always cleaned up, and their /proc readings.

Every child process is started in its own session and registered; `cleanup()` (called from
try/finally, atexit and the signal handlers installed by `__main__`) kills exactly those
process groups, nothing else. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import REPO, BenchError

CLK_TCK = os.sysconf("SC_CLK_TCK")

_children: list[subprocess.Popen] = []


def taskset_check() -> None:
    if shutil.which("taskset") is None:
        raise BenchError("taskset (util-linux) is required to pin the server and wrk to cores")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("the benchmarks need at least 2 cores (server on core 0, wrk on 1)")


def spawn(
    cmd: Sequence[str],
    *,
    core: int | None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    stdout: Any = None,
) -> subprocess.Popen:
    """Start `cmd` pinned to `core` (taskset execs, so the pid is the command's own), in its own
    session (so cleanup can kill its group), registered for cleanup."""
    full = (["taskset", "-c", str(core)] if core is not None else []) + list(cmd)
    out = stdout
    fh = None
    if out is None and log is not None:
        fh = open(log, "ab")  # noqa: SIM115 (closed below, once the child holds it)
        out = fh
    try:
        proc = subprocess.Popen(
            full,
            stdout=out,
            stderr=subprocess.STDOUT if out is not None and out is not subprocess.PIPE else None,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    finally:
        if fh is not None:
            fh.close()
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; only this process's own group."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    if proc in _children:
        _children.remove(proc)
    return proc.returncode


def cleanup() -> None:
    for proc in list(_children):
        try:
            stop(proc, timeout=5.0)
        except Exception:
            pass


atexit.register(cleanup)


def run_json(cmd: Sequence[str], *, core: int | None, timeout: float) -> dict[str, Any]:
    """Run a bench sub-command that prints one JSON object as its last stdout line."""
    proc = spawn(cmd, core=core, stdout=subprocess.PIPE)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise BenchError(f"{' '.join(cmd)} did not finish within {timeout:.0f}s") from None
    finally:
        if proc in _children and proc.poll() is not None:
            _children.remove(proc)
    text = out.decode(errors="replace").strip()
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{' '.join(cmd)} printed no JSON:\n{text[-3000:]}")


def wait_rusage(proc: subprocess.Popen, timeout: float) -> tuple[int, float]:
    """Wait (bounded) for a child whose output fits a pipe buffer, returning its exit code and
    the CPU seconds it used (from wait4's rusage: the load generator's own CPU)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc in _children:
                _children.remove(proc)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            stop(proc)
            raise BenchError(f"{proc.args} did not finish within {timeout:.0f}s")
        time.sleep(0.02)


def tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_memory(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) in KiB."""
    out = {"rss_kib": 0, "peak_rss_kib": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss_kib"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["peak_rss_kib"] = int(line.split()[1])
    except OSError:
        pass
    return out
