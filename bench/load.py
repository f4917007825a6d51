"""Load generation: wrk (installed with apt-get when missing) on the load core, for a duration
or until a count of done work is reached."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .base import HOST, LOAD_CORE, LUA, BenchError
from .processes import spawn, stop, wait_rusage

if TYPE_CHECKING:
    from .servers import Server


def wrk_version() -> str:
    path = shutil.which("wrk")
    if not path:
        return ""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
        return (out.stdout or out.stderr).splitlines()[0].split(" [")[0]
    except Exception:
        return "wrk"


def ensure_wrk() -> str:
    """wrk from Debian; installed with apt-get when missing, else a clear failure."""
    path = shutil.which("wrk")
    if path:
        return path
    if shutil.which("apt-get") is None:
        raise BenchError(
            "wrk is not installed and apt-get is not available: install wrk "
            "(https://github.com/wg/wrk) and run again"
        )
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("bench: wrk missing, installing it with apt-get", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        [*sudo, "apt-get", "update", "-qq"],
        [*sudo, "apt-get", "install", "-y", "-qq", "wrk"],
    ):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{' '.join(cmd)} timed out; install wrk by hand") from None
        if res.returncode != 0:
            raise BenchError(
                f"cannot install wrk ({' '.join(cmd)} failed):\n"
                f"{res.stderr[-2000:]}\ninstall it by hand: apt-get install wrk"
            )
    path = shutil.which("wrk")
    if not path:
        raise BenchError("apt-get install wrk succeeded but wrk is not on PATH")
    return path


def wrk(
    url: str,
    script: str,
    *,
    duration: float,
    connections: int,
    args: Sequence[str] = (),
    timeout_s: float = 10.0,
    server: Server | None = None,
    hard_timeout: float | None = None,
) -> dict[str, Any]:
    """Run wrk pinned to the load core, one thread, a Lua script from bench/lua/ whose done()
    prints a JSON line; returns it plus throughput, CPU of wrk and of the server."""
    assert url.startswith(f"http://{HOST}:"), url
    cmd = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout_s:g}s",
        "--latency",
        "-s",
        str(LUA / script),
        url,
    ]
    if args:
        cmd += ["--", *args]
    cpu0 = server.cpu_seconds() if server else 0.0
    t0 = time.monotonic()
    proc = spawn(cmd, core=LOAD_CORE, stdout=subprocess.PIPE)
    rc, wrk_cpu = wait_rusage(proc, hard_timeout or duration + 60)
    wall = time.monotonic() - t0
    text = proc.stdout.read().decode(errors="replace")
    proc.stdout.close()
    result = None
    for line in text.splitlines():
        if line.startswith('{"wrk":'):
            result = json.loads(line)
    if rc != 0 or result is None:
        raise BenchError(f"wrk failed ({rc}):\n{text[-2000:]}")
    result["wall_s"] = round(wall, 3)
    result["server_cpu_pct"] = (
        round(100 * (server.cpu_seconds() - cpu0) / wall, 1) if server else None
    )
    result["wrk_cpu_pct"] = round(100 * wrk_cpu / wall, 1)
    return result


def wrk_until(
    url: str,
    count: Any,
    target: int,
    *,
    args: Sequence[str],
    max_duration: float,
    connections: int = 64,
    partial_ok: bool = False,
) -> float:
    """Drive wrk (load core) until `count()` reaches `target` (it is polled every 50 ms), then
    stop it: for set-up work of an exact size (wrk itself only knows durations; the Lua script's
    STOP_AFTER stops issuing requests). Returns the seconds it took; past max_duration it fails,
    or with `partial_ok` returns what was done (the caller reads count())."""
    assert url.startswith(f"http://{HOST}:"), url
    cmd = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{int(max_duration)}s",
        "--timeout=30s",
        "-s",
        str(LUA / "commands.lua"),
        url,
        "--",
        *args,
    ]
    t0 = time.monotonic()
    proc = spawn(cmd, core=LOAD_CORE, stdout=subprocess.DEVNULL)
    try:
        while True:
            if count() >= target:
                return time.monotonic() - t0
            if proc.poll() is not None:
                if count() >= target or partial_ok:
                    return time.monotonic() - t0
                raise BenchError(
                    f"wrk ended after {time.monotonic() - t0:.0f}s with {count()} of {target} done"
                )
            time.sleep(0.05)
    finally:
        stop(proc, timeout=5.0)
