"""The system under test as a server: `threadweaver serve` or the bare aiohttp app on a free
port of 127.0.0.1, pinned to the server core, answering before it is used."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import HOST, PYTHON, SERVER_CORE, THREADWEAVER, BenchError
from .processes import proc_cpu_seconds, proc_memory, spawn, stop, tail

_handed_out: set[int] = set()


def free_port() -> int:
    """A free port of 127.0.0.1: any (the kernel's choice), or one of BENCH_PORTS
    (`27600-27699`) when set, for a machine whose users keep to port ranges of their own."""
    span = os.environ.get("BENCH_PORTS", "").strip()
    if not span:
        with socket.socket() as s:
            s.bind((HOST, 0))
            return s.getsockname()[1]
    first, _, last = span.partition("-")
    for port in range(int(first), int(last or first) + 1):
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise BenchError(f"no free port left in BENCH_PORTS={span}")


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    assert url.startswith(f"http://{HOST}:"), url
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_http(url: str, proc: subprocess.Popen | None, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{url}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.05)
    raise BenchError(f"{url} not ready after {timeout}s\n{tail(log)}")


@dataclass
class Server:
    """`threadweaver serve` (or the bare app) on a free port, pinned to the server core."""

    proc: subprocess.Popen
    port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        stop(self.proc, timeout=20.0)

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid)

    def rss(self) -> dict[str, int]:
        return proc_memory(self.proc.pid)


def start_runtime(
    data_dir: Path,
    args: Sequence[str] = (),
    *,
    timeout: float = 60.0,
    cmd: Sequence[str] | None = None,
) -> Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = data_dir / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THREADWEAVER_")}
    base = list(cmd) if cmd is not None else [THREADWEAVER, "serve"]
    full = [
        *base,
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
        "--member-name",
        "bench",
        *args,
    ]
    proc = spawn(full, core=SERVER_CORE, log=log, env=env)
    return _answering(Server(proc, port, data_dir, log), "/ready", timeout)


def start_bare(work: Path, *, timeout: float = 30.0) -> Server:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "bare.log"
    proc = spawn(
        [PYTHON, "-m", "bench.bare_server", "--host", HOST, "--port", str(port)],
        core=SERVER_CORE,
        log=log,
    )
    return _answering(Server(proc, port, work, log), "/live", timeout)


def _answering(server: Server, path: str, timeout: float) -> Server:
    """`server` once `path` answers 200; stopped if it does not in time."""
    try:
        wait_http(server.url + path, server.proc, timeout, server.log)
    except BaseException:
        server.stop()
        raise
    return server
