"""Shared machinery: the machine description, child processes on pinned cores (always cleaned
up), /proc readings (CPU time, RSS), wrk, and statistics.

Every child process is started in its own session and registered; `cleanup()` (called from
try/finally, atexit and the signal handlers installed by `__main__`) kills exactly those
process groups, nothing else. Every wait is bounded by a deadline.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
PYTHON = sys.executable
THREADWEAVER = str(Path(sys.executable).with_name("threadweaver"))
HOST = "127.0.0.1"  # the only address any benchmark talks to
SERVER_CORE = 0  # taskset -c 0: the system under test
LOAD_CORE = 1  # taskset -c 1: wrk and the bench's own clients
ACCOUNT = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """A benchmark could not run (missing tool, server did not start, wrong answers)."""


# ---------------------------------------------------------------------------------------------
# The machine
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------------

_children: list[subprocess.Popen] = []


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
        fh = open(log, "ab")
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
        raise BenchError(f"{' '.join(cmd)} did not finish within {timeout:.0f}s")
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


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


def tail(path: Path | None, lines: int = 30) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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


# ---------------------------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------


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


def taskset_check() -> None:
    if shutil.which("taskset") is None:
        raise BenchError("taskset (util-linux) is required to pin the server and wrk to cores")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("the benchmarks need at least 2 cores (server on core 0, wrk on 1)")


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


def journal_counter(data_dir: Path, sql: str = "SELECT MAX(ordering) FROM journal") -> Any:
    """A cheap reader of the runtime's journal file (read-only; WAL lets it read beside the
    writer): by default the number of events appended so far."""
    import sqlite3

    path = data_dir / "journal.db"

    def count() -> int:
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            try:
                return conn.execute(sql).fetchone()[0] or 0
            finally:
                conn.close()
        except sqlite3.Error:
            return 0

    return count


def projection_backlog(data_dir: Path) -> int:
    """Events appended but not yet projected: the journal's last ordering minus the highest
    offset the read model stored (the projector applies in ordering order, so everything at or
    below that offset is done; orderings are consecutive with the SQLite journal)."""
    import sqlite3

    try:
        j = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True, timeout=5)
        r = sqlite3.connect(f"file:{data_dir / 'readmodel.db'}?mode=ro", uri=True, timeout=5)
        try:
            last = j.execute("SELECT MAX(ordering) FROM journal").fetchone()[0] or 0
            done = r.execute("SELECT MAX(offset_value) FROM projection_offset").fetchone()[0] or 0
            return max(0, last - done)
        finally:
            j.close()
            r.close()
    except sqlite3.Error:
        return -1


def drain_projection(data_dir: Path, timeout: float) -> dict[str, Any]:
    """Wait (bounded) until the read model has caught up with the journal; returns the backlog
    found, the seconds it took, and what was left if the bound was hit."""
    t0 = time.monotonic()
    backlog = projection_backlog(data_dir)
    left = backlog
    while left > 0 and time.monotonic() - t0 < timeout:
        time.sleep(0.05)
        left = projection_backlog(data_dir)
    return {
        "backlog_events": backlog,
        "drain_s": round(time.monotonic() - t0, 2),
        "left_events": max(0, left),
    }


def journal_thread_ids(data_dir: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True, timeout=5)
    try:
        return [
            r[0][len("thread-") :]
            for r in conn.execute(
                "SELECT pid FROM journal WHERE seq = 1 AND type = 'ThreadCreated' ORDER BY ordering"
            )
        ]
    finally:
        conn.close()


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


# ---------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Production services (MariaDB, dynalite) and the Kubernetes control plane
# ---------------------------------------------------------------------------------------------


def _tests_support() -> None:
    """tests/support is importable from the repository root (pytest's pythonpath is ".")."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def ensure_services() -> Any:
    """MariaDB and dynalite of hack/services.sh (started when down; idempotent), exactly as the
    test suites get them (tests/support/services.py): a ServiceURLs (.mysql, .dynamodb). A
    service that cannot start is a BenchError, never a silent skip."""
    _tests_support()
    import pytest

    from tests.support.services import ensure_services as _ensure

    try:
        return _ensure()
    except pytest.fail.Exception as exc:  # the helper reports with pytest.fail
        raise BenchError(f"the production services are not available: {exc}") from None


def ensure_kube() -> str:
    """The local Kubernetes control plane (hack/controlplane.sh up, idempotent; as the e2e
    suite's conftest does) and the path of its kubeconfig."""
    _tests_support()
    from tests.support.services import parse_exports

    script = REPO / "hack" / "controlplane.sh"
    out = ""
    for args, timeout in ((["up"], 3600), (["env"], 120)):
        try:
            proc = subprocess.run(
                [str(script), *args],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchError(f"hack/controlplane.sh {args[0]} could not run: {exc}") from None
        if proc.returncode != 0:
            raise BenchError(
                f"hack/controlplane.sh {args[0]} failed ({proc.returncode}): the "
                f"handoff benchmark needs the local control plane\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )
        out = proc.stdout
    kubeconfig = parse_exports(out).get("KUBECONFIG", "")
    if not kubeconfig or not Path(kubeconfig).is_file():
        raise BenchError(f"hack/controlplane.sh env printed no usable KUBECONFIG: {out[-1000:]}")
    return kubeconfig


def _mysql_connect(url: str, database: str | None = None) -> Any:
    """A pymysql (sync) connection from a mysql+aiomysql:// URL, autocommit (every SELECT sees
    the latest committed rows)."""
    from urllib.parse import unquote, urlsplit

    import pymysql

    u = urlsplit(url)
    return pymysql.connect(
        host=u.hostname or HOST,
        port=u.port or 3306,
        user=unquote(u.username or ""),
        password=unquote(u.password or ""),
        database=database,
        autocommit=True,
        connect_timeout=5,
        read_timeout=30,
        write_timeout=30,
    )


def mysql_version(url: str) -> str:
    """`SELECT VERSION()` of the MySQL server at a mysql+aiomysql:// URL."""
    conn = _mysql_connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return str(cur.fetchone()[0])
    finally:
        conn.close()


class MysqlDatabase:
    """A fresh, migrated MariaDB database for one measurement (`with MysqlDatabase(url) as
    db: db.url`), dropped afterwards. `url` names the server (the services' URL)."""

    def __init__(self, server_url: str, tag: str = "bench") -> None:
        import secrets as _secrets

        self.server_url = server_url
        self.name = f"tw_bench_{tag}_{_secrets.token_hex(4)}"  # granted: `tw\_%`
        self.url = server_url.rsplit("/", 1)[0] + "/" + self.name

    def __enter__(self) -> MysqlDatabase:
        conn = _mysql_connect(self.server_url)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{self.name}`")
        finally:
            conn.close()
        try:
            env = {k: v for k, v in os.environ.items() if not k.startswith("THREADWEAVER_")}
            res = subprocess.run(
                [THREADWEAVER, "migrate", "--read-model", self.url],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=REPO,
                env=env,
            )
        except subprocess.TimeoutExpired:
            self.drop()
            raise BenchError(f"threadweaver migrate --read-model {self.url} timed out") from None
        if res.returncode != 0:
            self.drop()
            raise BenchError(
                f"threadweaver migrate failed ({res.returncode}):\n"
                f"{res.stderr[-2000:]}{res.stdout[-1000:]}"
            )
        return self

    def drop(self) -> None:
        try:
            conn = _mysql_connect(self.server_url)
            try:
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
            finally:
                conn.close()
        except Exception as exc:  # reported, not fatal: the database is uniquely named
            log(f"could not drop the MariaDB database {self.name}: {exc}")

    def __exit__(self, *exc: Any) -> None:
        self.drop()

    def connect(self) -> Any:
        return _mysql_connect(self.url, self.name)


def mysqld_pid() -> int | None:
    """The pid of the MariaDB server of hack/services.sh (for its CPU time), if it runs here."""
    path = REPO / ".cache" / "services" / "mariadb" / "mariadbd.pid"
    try:
        pid = int(path.read_text().strip())
        return pid if Path(f"/proc/{pid}").exists() else None
    except (OSError, ValueError):
        return None
