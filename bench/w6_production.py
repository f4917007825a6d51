"""Workload 6: the production backends (DynamoDB API journal, MySQL read model) and the range
handoff of a sharded cluster.

  A. commands (bench/w6_commands.py): workload 1's commands (create, hot posts, cold posts)
     against `threadweaver serve --journal dynamodb://... --read-model mysql+aiomysql://...`,
     beside the embedded runtime (`--sync-mode full`), interleaved run by run.
  B. handoff (bench/w6_handoff.py): two cluster members against the same backends and the
     local Kubernetes control plane; under a steady load sent to both, one range moves from one
     member to the other and back, a few times: how long each handoff takes, how long commands
     of the moving range waited, and how many requests failed (target: none).
  C. clients (bench/w6_clients.py): client CPU per DynamoDB call, the SDK against the journal's
     lean client, and a group commit's TransactWriteItems against one PutItem per append.
  D. lag (bench/w6_lag.py): projection lag (acknowledged -> row visible in MariaDB) of a
     production runtime under workload 3's steady load.
`--set prod_parts=commands,lag` runs some of them (the others keep their previous results).

Services. MariaDB is the one of `hack/services.sh` (started when down, found as the test suites
find it: bench/services.py), shared and not pinned; its CPU share is measured from its pid.
The DynamoDB API is a dynalite process of the bench's own (the package `hack/services.sh`
installs; `hack/services.sh up` is run first, so node and dynalite are there), pinned to the
server core beside the runtime: the journal store then competes for the same core as the
runtime, as the embedded SQLite journal does inside the runtime's process, and its CPU time is
measured apart; it is in-memory and fresh for every measurement series, and no other user's
tables or requests share it. The control plane is `hack/controlplane.sh up` (as the e2e suite's
conftest does); its processes are not pinned. Any of these failing to start is a BenchError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .base import HOST, LOAD_CORE, PYTHON, REPO, SERVER_CORE, BenchError, log
from .processes import CLK_TCK, proc_cpu_seconds, proc_memory, spawn, stop, tail
from .profiles import Profile
from .servers import free_port
from .services import (
    ProductionBackends,
    ServiceURLs,
    ensure_services,
    fresh_production_backends,
    mysql_version,
    mysqld_pid,
)

DYNALITE_CLI = REPO / ".cache" / "services" / "node_modules" / "dynalite" / "cli.js"


class Dynalite:
    """A dynalite (DynamoDB API, in memory) of the bench's own, pinned to `core`."""

    def __init__(self, work: Path, core: int | None = SERVER_CORE) -> None:
        self.work = work
        self.core = core
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = work / "dynalite.log"

    @property
    def url(self) -> str:
        return f"dynamodb://{HOST}:{self.port}?region=us-east-1"

    def start(self, timeout: float = 60.0) -> Dynalite:
        node = shutil.which("node")
        if node is None or not DYNALITE_CLI.is_file():
            raise BenchError(
                f"node or dynalite ({DYNALITE_CLI}) missing after `hack/services.sh up`"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = spawn(
            [
                node,
                str(DYNALITE_CLI),
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--createTableMs",
                "20",
                "--deleteTableMs",
                "20",
                "--updateTableMs",
                "20",
            ],
            core=self.core,
            log=self.log,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"dynalite exited with {self.proc.returncode}:\n{tail(self.log)}")
            if self._answers():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(
                    f"dynalite did not answer within {timeout:.0f}s:\n{tail(self.log)}"
                )
            time.sleep(0.1)

    def _answers(self) -> bool:
        """Any DynamoDB API answer to ListTables (dynalite wants a signature: a 400 will do)."""
        req = urllib.request.Request(
            f"http://{HOST}:{self.port}/",
            data=b"{}",
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except Exception:
            return False

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def rss(self) -> dict[str, int]:
        return proc_memory(self.proc.pid) if self.proc else {}

    def stop(self) -> None:
        stop(self.proc, timeout=10.0)


class CountingProxy:
    """tests/support/dynamo_counting_proxy.py as a process of the bench's own, on the load core,
    between a runtime and its dynalite: the DynamoDB requests the runtime makes, by operation
    (read over HTTP, so the proxy's own CPU is in neither the runtime's nor dynalite's)."""

    def __init__(self, work: Path, upstream: Dynalite, core: int | None = LOAD_CORE) -> None:
        self.work = work
        self.upstream = upstream
        self.core = core
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = work / "counting-proxy.log"

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.port}"

    def journal_url(self, journal_url: str) -> str:
        """`journal_url` (dynamodb://<dynalite>...) through this proxy."""
        return journal_url.replace(f"{HOST}:{self.upstream.port}", f"{HOST}:{self.port}", 1)

    def start(self, timeout: float = 30.0) -> CountingProxy:
        self.work.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        upstream = f"http://{HOST}:{self.upstream.port}"
        self.proc = spawn(
            [PYTHON, "-m", "tests.support.dynamo_counting_proxy", upstream, str(self.port)],
            core=self.core,
            log=self.log,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the counting proxy exited:\n{tail(self.log)}")
            try:
                self.counts()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BenchError(
                        f"the counting proxy did not answer:\n{tail(self.log)}"
                    ) from None
                time.sleep(0.1)

    def counts(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/__counts", timeout=5) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.http}/__counts/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass

    def stop(self) -> None:
        stop(self.proc, timeout=10.0)


def core_busy_seconds(core: int = SERVER_CORE) -> float:
    """Busy (non-idle, non-iowait) CPU time of one core, all processes (/proc/stat)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    except (OSError, ValueError):
        pass
    return 0.0


class CpuMeter:
    """CPU time of the processes beside the runtime (dynalite, mariadbd) over an interval, as %
    of one core, and how busy the server core was in all (anything else running there, such as
    other work on this shared machine, is the difference)."""

    def __init__(self, dynalite: Dynalite | None) -> None:
        self.dynalite = dynalite
        self.mysqld = mysqld_pid()
        self.t0 = time.monotonic()
        self.d0 = dynalite.cpu_seconds() if dynalite else 0.0
        self.m0 = proc_cpu_seconds(self.mysqld) if self.mysqld else 0.0
        self.c0 = core_busy_seconds()

    def result(self) -> dict[str, float | None]:
        wall = max(1e-6, time.monotonic() - self.t0)
        d = (self.dynalite.cpu_seconds() - self.d0) if self.dynalite else None
        m = (proc_cpu_seconds(self.mysqld) - self.m0) if self.mysqld else None
        return {
            "dynalite_cpu_pct": None if d is None else round(100 * d / wall, 1),
            "mysqld_cpu_pct": None if m is None else round(100 * m / wall, 1),
            "core0_busy_pct": round(100 * (core_busy_seconds() - self.c0) / wall, 1),
        }


def wait_idle(
    pids: list[int], timeout: float, *, threshold_pct: float = 15.0, interval: float = 0.25
) -> float:
    """Wait (bounded) until the processes `pids` together use less than `threshold_pct` of a
    core over two consecutive `interval`s: a production runtime's start-up read of every shard
    of its range (one query per shard) and its dynalite's work for it are over. Returns the
    seconds waited."""
    t0 = time.monotonic()
    quiet = 0
    last = sum(proc_cpu_seconds(pid) for pid in pids)
    while time.monotonic() - t0 < timeout:
        time.sleep(interval)
        now = sum(proc_cpu_seconds(pid) for pid in pids)
        quiet = quiet + 1 if 100 * (now - last) / interval < threshold_pct else 0
        last = now
        if quiet >= 2:
            break
    return round(time.monotonic() - t0, 2)


@contextlib.contextmanager
def production_backends(services: ServiceURLs, dynalite: Dynalite) -> Iterator[ProductionBackends]:
    """Fresh tables (unique prefix) in our dynalite and a fresh, migrated MariaDB database
    (services.fresh_production_backends), from synchronous code; removed afterwards."""
    with asyncio.Runner() as runner:
        cm = fresh_production_backends(services.mysql, dynalite.url)
        backends = runner.run(asyncio.wait_for(cm.__aenter__(), 180))
        try:
            yield backends
        finally:
            try:
                runner.run(asyncio.wait_for(cm.__aexit__(None, None, None), 60))
            except Exception as exc:  # uniquely named; reported, not fatal
                log(f"w6: removing the tables/database failed: {exc}")


def dynalite_version() -> str:
    try:
        return json.loads((DYNALITE_CLI.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


PARTS = ("commands", "lag", "handoff", "clients")


def run(p: Profile, work: Path) -> dict[str, Any]:
    from . import w6_clients, w6_commands, w6_handoff, w6_lag

    unknown = [part for part in p.prod_parts if part not in PARTS]
    if unknown or not p.prod_parts:
        raise BenchError(f"w6: prod_parts {list(p.prod_parts)}: choose from {list(PARTS)}")

    work.mkdir(parents=True, exist_ok=True)
    log("w6: hack/services.sh up (MariaDB, dynalite package)")
    services = ensure_services()
    out: dict[str, Any] = {
        "mysql_version": mysql_version(services.mysql),
        "dynalite_version": dynalite_version(),
        "node_version": subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip(),
    }
    failures = []
    modules = {
        "commands": w6_commands,
        "lag": w6_lag,
        "handoff": w6_handoff,
        "clients": w6_clients,
    }
    # the parts not run keep their previous results (bench/__main__.py, _carry_parts)
    out["parts"], out["all_parts"] = list(p.prod_parts), list(PARTS)
    parts = [(key, modules[key]) for key in PARTS if key in p.prod_parts]
    for key, module in parts:
        try:
            out[key] = module.run(p, work / key, services)
        except BenchError as exc:
            if "exceeded its" in str(exc):  # the workload's ceiling: stop here
                raise
            log(f"w6 {key} failed: {exc}")
            out[key] = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
            failures.append(key)
    if len(failures) == len(parts):
        raise BenchError(
            "w6: every part failed: " + " / ".join(out[key]["error"] for key, _ in parts)
        )
    if failures:
        out["failed_parts"] = failures  # __main__ counts the workload as failed
    return out
