"""`threadweaver replay-check`: the command around application/replay_check.py.

Opens the journal of `--journal` (an SQLite file must exist: the check never creates one),
checks a sample of its entities (`--sample N`, default 100) or all of them (`--all`) and prints
a summary: text on a terminal, one JSON object otherwise or with `--json`. `--result-file PATH`
also writes that JSON object to PATH (the operator's Job points it at the container's
termination message, /dev/termination-log).

Exit status: 0 every event checked could be read; 1 one could not (the output names it: pid,
seq, type, error); 3 the journal could not be opened or read (unreachable, missing tables, a
missing file, a shard count that is not the journal's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .config import ConfigError, Settings

DEFAULT_SAMPLE = 100
EXIT_OK, EXIT_UNREADABLE, EXIT_JOURNAL = 0, 1, 3
#: how long opening the journal may take before the check gives up (exit 3)
OPEN_TIMEOUT_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("replay check")
    which = group.add_mutually_exclusive_group()
    which.add_argument(
        "--sample",
        type=int,
        metavar="N",
        default=None,
        help=f"check N entities spread over the shards (default: {DEFAULT_SAMPLE})",
    )
    which.add_argument("--all", action="store_true", help="check every entity of the journal")
    group.add_argument(
        "--json", action="store_true", help="print JSON even on a terminal (always otherwise)"
    )
    group.add_argument(
        "--result-file",
        type=Path,
        default=None,
        help="also write the JSON result to this file (e.g. /dev/termination-log)",
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Run the check for the parsed `args`; returns the exit status."""
    from .application.replay_check import ReplayScope

    if args.sample is not None and args.sample < 1:
        raise SystemExit("threadweaver replay-check: --sample must be at least 1")
    scope = ReplayScope(None if args.all else (args.sample or DEFAULT_SAMPLE))
    as_json = args.json or not sys.stdout.isatty()
    result, status = asyncio.run(_check(settings, scope))
    if args.result_file is not None:
        try:
            args.result_file.write_text(json.dumps(result, separators=(",", ":")) + "\n")
        except OSError as exc:
            print(
                f"threadweaver replay-check: cannot write {args.result_file}: {exc}",
                file=sys.stderr,
            )
    print(json.dumps(result) if as_json else _text(result))
    return status


async def _check(settings: Settings, scope: Any) -> tuple[dict[str, Any], int]:
    from .application.ports import JournalError
    from .application.replay_check import replay_check
    from .server import build_journal

    storage = settings.storage
    where = storage.journal.split("?")[0]  # the URL without its options
    try:
        if not storage.journal.startswith("dynamodb:"):
            path = storage.sqlite_journal_path
            if not path.is_file():
                return _journal_error(where, f"no journal file at {path}")
        journal = build_journal(storage)
    except (ConfigError, ValueError) as exc:
        return _journal_error(where, str(exc))
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
            await journal.start()
        report = await replay_check(journal, scope)
    except TimeoutError:
        return _journal_error(where, f"not reachable within {OPEN_TIMEOUT_SECONDS:g} s")
    except (JournalError, OSError) as exc:
        return _journal_error(where, f"{type(exc).__name__}: {exc}")
    finally:
        await journal.close()
    result = {"journal": where, **report.to_json()}
    return result, EXIT_OK if report.ok else EXIT_UNREADABLE


def _journal_error(where: str, message: str) -> tuple[dict[str, Any], int]:
    return {"ok": False, "journal": where, "error": f"cannot read the journal: {message}"}, (
        EXIT_JOURNAL
    )


def _text(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"replay check of {result['journal']}: {result['error']}"
    summary = (
        f"{result['entities']} entities, {result['events']} events, {result['snapshots']} "
        f"snapshots checked ({result['scope']}, {result['shards']} shards) in "
        f"{result['seconds']:.2f} s"
    )
    if result["snapshotsToReplay"]:
        summary += f"; {result['snapshotsToReplay']} snapshots of another version (replayed)"
    failure = result.get("failure")
    if failure is None:
        return f"replay check of {result['journal']} passed: {summary}"
    return (
        f"replay check of {result['journal']} FAILED at {failure['pid']} seq {failure['seq']} "
        f"({failure['type']}): {failure['error']}\n  before it: {summary}"
    )
