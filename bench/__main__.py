"""thread-weaver benchmarks, each workload beside its baseline, in one run.

    python -m bench            # full   (= make bench)
    python -m bench --quick    # quick  (= make bench-quick; under two minutes)
    python -m bench --only w2,w4          # some workloads (merged into latest.json)
    python -m bench --only w6 --set prod_parts=commands,lag   # a size of bench/profiles.py
    python -m bench --only w1 --set http_modes=full,normal,full-nometrics   # + metrics' cost

Writes bench/results/latest.json (+ a timestamped copy) and regenerates docs/benchmarks.md.
An --only run is merged into latest.json when that holds the same profile (full or quick);
otherwise it writes only its timestamped copy and leaves latest.json and the docs alone.
The server side runs on core 0 (taskset -c 0), wrk and the bench's clients on core 1; only
127.0.0.1 is used; every loop is bounded; child processes are killed on exit or failure.

Workloads: w1 HTTP commands vs a bare aiohttp handler; w2 journal appends vs eventsourcing;
w3 projection lag, embedded SQLite and MySQL (MariaDB) read models; w4 recovery with/without
snapshots; w5 memory with/without --max-entities; w6 the production backends (DynamoDB API on
dynalite, MySQL read model on MariaDB): workload 1's commands beside the embedded runtime, and
the handoff of one shard range between two cluster members under load (the local Kubernetes
control plane); w7 the read-model rebuild (`threadweaver project`) into SQLite and MySQL beside
a live runtime; w8 live event streams: memory per idle subscriber, delivery latency of active
and fanned-out subscribers (embedded, and production backends when the services run); profile:
pyinstrument on workload 1 (full runs only, or --profile / --only).

w3 and w6 need MariaDB and dynalite (`hack/services.sh up`), w6 also the control plane
(`hack/controlplane.sh up`); the bench runs both scripts itself (they are idempotent) and fails
the workload with the scripts' output when a service cannot start.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import LOAD_CORE, RESULTS, BenchError, log
from .load import ensure_wrk
from .machine import git_commit, machine
from .processes import cleanup, taskset_check
from .profiles import PROFILES, Profile, override

WORKLOADS: dict[str, tuple[str, Callable[[], Any]]] = {
    "w1": ("http", lambda: __import__("bench.w1_http", fromlist=["run"]).run),
    "w2": ("journal", lambda: __import__("bench.w2_journal", fromlist=["run"]).run),
    "w3": ("projection_lag", lambda: __import__("bench.w3_lag", fromlist=["run"]).run),
    "w4": ("recovery", lambda: __import__("bench.w4_recovery", fromlist=["run"]).run),
    "w5": ("memory", lambda: __import__("bench.w5_memory", fromlist=["run"]).run),
    "w6": ("production", lambda: __import__("bench.w6_production", fromlist=["run"]).run),
    "w7": ("rebuild", lambda: __import__("bench.w7_rebuild", fromlist=["run"]).run),
    "w8": ("streams", lambda: __import__("bench.w8_streams", fromlist=["run"]).run),
    "profile": ("profile", lambda: __import__("bench.profile_run", fromlist=["run"]).run),
}
EXTRAS = ("profile",)  # full runs only (or --profile / --only)
# Hard ceilings per workload (seconds): a stuck workload is abandoned, the run goes on.
# (Each step inside is bounded too; this is the last line.)
CEILING = {"quick": 240, "full": 1800}


def _on_signal(signum: int, _frame: Any) -> None:
    cleanup()
    raise SystemExit(128 + signum)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (< 2 min)")
    parser.add_argument(
        "--only", default="", help="comma-separated: w1,w2,w3,w4,w5,w6,w7,w8,profile"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile workload 1 in a quick run (full runs always do)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the profile")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a size of the profile (bench/profiles.py), e.g. --set prod_parts=commands",
    )
    args = parser.parse_args(argv)
    profile: Profile = PROFILES["quick" if args.quick else "full"]
    try:
        profile = override(profile, args.set)
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        taskset_check()
        ensure_wrk()
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {LOAD_CORE})  # this process and its clients: the load core

    selected = [w.strip() for w in args.only.split(",") if w.strip()] or [
        w for w in WORKLOADS if w not in EXTRAS
    ]
    if not args.only and not args.no_profile and (profile.name == "full" or args.profile):
        selected.extend(EXTRAS)
    unknown = [w for w in selected if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {list(WORKLOADS)}")
    if "profile" in selected and not profile.profile_duration:
        profile = Profile(**{**profile.__dict__, "profile_duration": 5.0})

    command = "make bench-quick" if profile.name == "quick" else "make bench"
    invocation = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    started = time.time()
    RESULTS.mkdir(parents=True, exist_ok=True)
    latest = RESULTS / "latest.json"
    results: dict[str, Any] = {}
    # An --only run is merged into latest.json when that holds the same profile; one of another
    # profile (say `--quick --only w6` beside full figures) only writes its timestamped copy, so
    # it cannot replace the full figures of every workload with the quick ones of a few.
    keep_latest = False
    if args.only and latest.exists():
        try:
            previous = json.loads(latest.read_text())
            if previous.get("meta", {}).get("profile") == profile.name:
                results = previous
            else:
                keep_latest = True
        except (OSError, ValueError):
            results = {}
    results.setdefault("workloads", {})
    results["meta"] = {
        "command": command,
        "invocation": invocation,
        "profile": profile.name,
        "settings": profile.as_dict(),
        "machine": machine(),
        "git_commit": git_commit(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "placement": "server: taskset -c 0; wrk and bench clients: taskset -c 1",
    }
    work = Path(tempfile.mkdtemp(prefix="threadweaver-bench-"))
    failures = 0
    try:
        for key in selected:
            name, loader = WORKLOADS[key]
            t0 = time.monotonic()
            commit = git_commit()  # the code measured (working tree)
            log(f"== {key} ({name}) ==")
            try:
                result = _bounded(loader(), profile, work / key, CEILING[profile.name])
                result["elapsed_s"] = round(time.monotonic() - t0, 1)
                result["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                result["command"] = command
                result["invocation"] = invocation
                result["git_commit"] = commit
                result["machine"] = results["meta"]["machine"]
                _carry_parts(result, results["workloads"].get(name))
                results["workloads"][name] = result
                if result.get("failed_parts"):  # kept, but the run reports a failure
                    failures += 1
            except Exception as exc:  # one workload failing does not lose the others
                failures += 1
                traceback.print_exc()
                results["workloads"][name] = {
                    "error": f"{type(exc).__name__}: {exc}"[:4000],
                    "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "command": command,
                }
            finally:
                cleanup()
                shutil.rmtree(work / key, ignore_errors=True)
    finally:
        cleanup()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["meta"]["elapsed_s"] = round(time.time() - started, 1)
    results["meta"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    copy = RESULTS / f"{stamp}-{profile.name}.json"
    _write_json(copy, results)
    from .report import targets

    print("\n" + targets(results) + "\n", flush=True)  # every figure, baseline and ratio
    if keep_latest:
        log(
            f"results: {copy} ({results['meta']['elapsed_s']}s); latest.json holds another "
            f"profile's figures and is kept, docs/benchmarks.md too"
        )
        return 1 if failures else 0
    _write_json(latest, results)
    log(f"results: {latest} ({results['meta']['elapsed_s']}s)")
    if not args.no_docs:
        from .report import write_docs

        path = write_docs(results)
        log(f"docs: {path}")
    return 1 if failures else 0


_PART_META = ("command", "invocation", "git_commit", "measured_at", "machine")


def _carry_parts(result: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """A workload made of parts (`parts`, workload 6) that ran only some of them keeps the
    previous results of the others; each part carries the command, commit and time it was
    measured with (`meta`), so the report's captions stay true for every table."""
    parts = result.get("parts")
    if not parts:
        return
    meta = {k: result[k] for k in _PART_META if k in result}
    for part in parts:
        if isinstance(result.get(part), dict):
            result[part].setdefault("meta", meta)
    for part in result.get("all_parts", ()):
        value = (previous or {}).get(part)
        if part in parts or not isinstance(value, dict):
            continue
        assert previous is not None
        value.setdefault("meta", {k: previous[k] for k in _PART_META if k in previous})
        result[part] = value


def _bounded(
    run: Callable[[Profile, Path], dict[str, Any]], profile: Profile, work: Path, ceiling: float
) -> dict[str, Any]:
    """Run a workload with a wall-clock ceiling (SIGALRM in this, the main thread)."""

    def _alarm(_s: int, _f: Any) -> None:
        raise BenchError(f"workload exceeded its {ceiling:.0f}s ceiling")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(ceiling))
    try:
        return run(profile, work)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


if __name__ == "__main__":
    sys.exit(main())
