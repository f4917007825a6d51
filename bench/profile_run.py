"""The profile of workload 1's hot path: `threadweaver serve` under pyinstrument (see
bench/profile_server.py) while wrk drives create-thread, then post-to-hot-threads, each for
`profile_duration` seconds; the flat summaries go into the results, the call trees into the
work directory (and bench/results/profile-*.txt, not committed)."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Any

from .base import PYTHON, RESULTS, log
from .client import create_threads
from .load import wrk
from .profiles import Profile
from .servers import start_runtime


def run(p: Profile, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tool": "pyinstrument (wall clock, event-loop thread, 0.5 ms)",
        "duration_s": p.profile_duration,
    }
    for workload in ("create", "hot"):
        log(f"profile: {workload} for {p.profile_duration:.0f}s under pyinstrument")
        data = work / f"profile-{workload}"
        shutil.rmtree(data, ignore_errors=True)
        prof = data / "prof"
        server = start_runtime(
            data,
            ["--sync-mode", "full"],
            cmd=[PYTHON, "-m", "bench.profile_server", "--out", str(prof), "--", "serve"],
        )
        try:
            if workload == "hot":
                ids = create_threads(server.url, 16, concurrency=4, tag="prof")
                ids_file = data / "hot_ids.txt"
                ids_file.write_text("\n".join(ids) + "\n")
                args = ["post", secrets.token_hex(4), str(ids_file)]
            else:
                args = ["create", secrets.token_hex(4)]
            load = wrk(
                server.url,
                "commands.lua",
                duration=p.profile_duration,
                connections=64,
                args=args,
                server=server,
            )
        finally:
            server.stop()
        import json

        summary = json.loads((prof / "profile.json").read_text())
        summary["rps_under_profiler"] = round(load["requests"] / (load["duration_us"] / 1e6), 1)
        summary["server_cpu_pct"] = load["server_cpu_pct"]
        out[workload] = summary
        try:
            RESULTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(prof / "profile.txt", RESULTS / f"profile-{workload}.txt")
        except OSError:
            pass
    return out
