"""`threadweaver project`: build a read model from the journal, from the beginning (or its
checkpoints) until caught up (application/projection_build.py does the work).

Steps: open the journal (a missing SQLite file or unreachable DynamoDB tables: exit 3), open the
target read model (unreachable: exit 4), refuse a target that holds something else
(projection_target.py: exit 5), migrate it to the latest schema, build, print the summary.
Progress goes to stdout every `--progress-interval` seconds (progress_report.py). A kill, even
-9, loses nothing: the checkpoints are in the target, the next run resumes from them. Only the
target is written, so it can run beside a cluster whose RMUs serve another database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from .application.ports import JournalError
from .application.projection_build import BuildError, BuildSettings, ProjectionBuild
from .config import ENV_PREFIX, Settings
from .progress_report import Reporter
from .shards import RangeSet
from .shards.hashing import DEFAULT_SHARDS

log = logging.getLogger(__name__)

PROJECT = "project"

EXIT_OK = 0
EXIT_FAILED = 1  # the build stopped on an error (an event it cannot decode, ...)
EXIT_USAGE = 2
EXIT_JOURNAL = 3  # the journal cannot be reached (or does not exist)
EXIT_READ_MODEL = 4  # the target read model cannot be reached
EXIT_FOREIGN = 5  # the target holds something else than this journal's read model
EXIT_INTERRUPTED = 130  # SIGINT/SIGTERM: resumable


class CommandFailed(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _env(name: str, default: str) -> str:
    return os.environ.get(ENV_PREFIX + name, default)


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The command's own flags (the storage and logging ones come from the settings)."""
    group = parser.add_argument_group("projection build")
    group.add_argument(
        "--shards",
        dest="shard_set",
        default=_env("SHARDS", ""),
        metavar="RANGES|COUNT",
        help="the shards to build: ranges such as 0-512 or 0-100,200-300 (half-open), or a "
        "shard count N for all of them (default: all shards of --shard-count) "
        f"[env {ENV_PREFIX}SHARDS]",
    )
    shards_env = _env("SHARDS", "")
    count_default = _env("SHARD_COUNT", shards_env if shards_env.isdigit() else "")
    group.add_argument(
        "--shard-count",
        type=int,
        default=int(count_default) if count_default.isdigit() else DEFAULT_SHARDS,
        help="number of shards of the journal (fixed at its creation; default: "
        f"{ENV_PREFIX}SHARDS when it is a count, else {DEFAULT_SHARDS}) "
        f"[env {ENV_PREFIX}SHARD_COUNT]",
    )
    group.add_argument(
        "--until-lag",
        type=float,
        default=float(_env("UNTIL_LAG", "1.0")),
        metavar="SECONDS",
        help="stop once a pass over the shards left at most this lag behind the journal's "
        f"head (0: until a pass finds nothing new; default: 1) [env {ENV_PREFIX}UNTIL_LAG]",
    )
    group.add_argument(
        "--batch-size",
        type=int,
        default=int(_env("BUILD_BATCH_SIZE", "2000")),
        help=f"events per read-model transaction (default: 2000) [env {ENV_PREFIX}BUILD_BATCH_SIZE]",
    )
    group.add_argument(
        "--progress-interval",
        type=float,
        default=float(_env("PROGRESS_INTERVAL", "1.0")),
        metavar="SECONDS",
        help=f"seconds between progress reports (default: 1) [env {ENV_PREFIX}PROGRESS_INTERVAL]",
    )
    group.add_argument(
        "--progress",
        choices=("auto", "bar", "json"),
        default=_env("PROGRESS", "auto"),
        help="a progress bar, JSON lines, or auto: the bar on a terminal (default: auto) "
        f"[env {ENV_PREFIX}PROGRESS]",
    )


def shard_selection(spec: str, count: int) -> tuple[int, list[int]]:
    """(shard count, the shards to build) from ``--shards`` and ``--shard-count``: a plain number
    is the count (every shard), ranges are checked against the count. Raises ValueError."""
    spec = spec.strip()
    shards_count = int(spec) if spec.isdigit() else count
    if not 1 <= shards_count <= 65536:
        raise ValueError(f"the shard count must be between 1 and 65536, got {shards_count}")
    ranges = RangeSet.parse(spec if spec and not spec.isdigit() else f"0-{shards_count}")
    shards = [s for r in sorted(ranges) for s in range(r.start, r.end)]
    if not shards:
        raise ValueError(f"--shards {spec!r} names no shard")
    if shards[-1] >= shards_count:
        raise ValueError(
            f"--shards {spec!r} goes beyond the {shards_count} shards of the journal "
            "(see --shard-count)"
        )
    return shards_count, shards


def check_flags(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    if args.until_lag < 0:
        raise ValueError("--until-lag must be 0 or more")
    if args.progress_interval <= 0:
        raise ValueError("--progress-interval must be more than 0")


def run(settings: Settings, args: argparse.Namespace, shards: Sequence[int]) -> int:
    """Run the command; the process's exit code."""
    mode = args.progress
    reporter = Reporter(tty=None if mode == "auto" else mode == "bar")
    code = EXIT_OK
    try:
        from .server import run as run_loop

        run_loop(_main(settings, args, shards, reporter))
    except CommandFailed as exc:
        code = exc.exit_code
        reporter.error(str(exc), code)
        print(f"threadweaver project: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        reporter.error("interrupted (run it again to resume)", code)
        print("threadweaver project: interrupted (run it again to resume)", file=sys.stderr)
    return code


async def _main(
    settings: Settings, args: argparse.Namespace, shards: Sequence[int], reporter: Reporter
) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    interrupted = False

    def interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        if task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupt)
    try:
        await _project(settings, args, shards, reporter)
    except asyncio.CancelledError:
        if interrupted:
            raise CommandFailed("interrupted (run it again to resume)", EXIT_INTERRUPTED) from None
        raise


def _describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}"


async def _project(
    settings: Settings, args: argparse.Namespace, shards: Sequence[int], reporter: Reporter
) -> None:
    import sqlalchemy as sa

    from .adapters.readmodel.sql import redact_url
    from .adapters.readmodel.target import inspect_target
    from .application.projector import PROJECTION
    from .projection_target import journal_problems, schema_problems
    from .server import build_journal, build_read_model

    storage = settings.storage
    unreachable = (sa.exc.OperationalError, sa.exc.InterfaceError, OSError, TimeoutError)
    if storage.journal.startswith("sqlite:") and not storage.sqlite_journal_path.exists():
        raise CommandFailed(
            f"the journal {storage.sqlite_journal_path} does not exist", EXIT_JOURNAL
        )
    journal = build_journal(storage)
    read_model = build_read_model(storage)
    target = redact_url(storage.read_model)
    try:
        try:
            await journal.start()
        except Exception as exc:  # JournalError, OSError, sqlite3.DatabaseError (not a journal)
            raise CommandFailed(
                f"cannot open the journal: {_describe_error(exc)}", EXIT_JOURNAL
            ) from None
        try:
            await read_model.start()
            state = await inspect_target(read_model, PROJECTION)
        except unreachable as exc:
            raise CommandFailed(
                f"cannot reach the read model {target}: {_describe_error(exc)}", EXIT_READ_MODEL
            ) from None
        try:
            problems = schema_problems(state, journal.shards) or await journal_problems(
                state, journal
            )
        except JournalError as exc:
            raise CommandFailed(
                f"cannot read the journal: {_describe_error(exc)}", EXIT_JOURNAL
            ) from None
        if problems:
            raise CommandFailed(
                f"the read model {target} is not empty and not this journal's: "
                + "; ".join(problems)
                + " (use an empty database)",
                EXIT_FOREIGN,
            )
        try:
            await read_model.migrate()
        except unreachable as exc:
            raise CommandFailed(
                f"cannot migrate the read model {target}: {_describe_error(exc)}", EXIT_READ_MODEL
            ) from None
        build = ProjectionBuild(
            journal,
            read_model,
            shards,
            BuildSettings(
                batch_size=args.batch_size, page_size=args.batch_size, until_lag=args.until_lag
            ),
        )
        log.info(
            "building the read model %s from the journal: %d shard(s)%s",
            target,
            len(build.shards),
            "" if len(build.shards) == journal.shards else f" ({args.shard_set})",
        )
        reports = asyncio.create_task(_report(build, reporter, args.progress_interval))
        try:
            await build.run()
        except BuildError as exc:
            raise CommandFailed(str(exc), EXIT_FAILED) from None
        except JournalError as exc:
            raise CommandFailed(
                f"the journal failed: {_describe_error(exc)} (run it again to resume)",
                EXIT_JOURNAL,
            ) from None
        except unreachable as exc:
            raise CommandFailed(
                f"the read model {target} failed: {_describe_error(exc)} (run it again to resume)",
                EXIT_READ_MODEL,
            ) from None
        finally:
            reports.cancel()
            await asyncio.gather(reports, return_exceptions=True)
        reporter.summary(build.progress, build.clock())
    finally:
        with contextlib.suppress(Exception):
            await read_model.close()
        with contextlib.suppress(Exception):
            await journal.close()


async def _report(build: ProjectionBuild, reporter: Reporter, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        if build.progress.passes:
            reporter.progress(build.progress, build.clock())
