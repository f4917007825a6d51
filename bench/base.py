"""What every bench module shares: the paths, the placement (which core runs what, the one
address used), the error of a benchmark that cannot run, and the progress log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
PYTHON = sys.executable
THREADWEAVER = str(Path(sys.executable).with_name("threadweaver"))
HOST = "127.0.0.1"  # the only address any benchmark talks to
SERVER_CORE = 0  # taskset -c 0: the system under test
LOAD_CORE = 1  # taskset -c 1: wrk and the bench's own clients
ACCOUNT = "01H8XGJWBWBAQ4Z4G2V6K8M3PJ"  # the account of the requests the bench sends


class BenchError(RuntimeError):
    """A benchmark could not run (missing tool, server did not start, wrong answers)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
