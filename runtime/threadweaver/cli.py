"""The `threadweaver` command: serve, migrate, create-tables, project.

The flags are derived from the settings dataclasses (config.py): one flag per configurable field,
with the help text and default declared there, grouped by subsystem in `--help`. Every flag also
reads an environment variable named THREADWEAVER_<FLAG> (upper case, dashes as underscores), so
Kubernetes manifests configure the runtime with env only; a flag given on the command line wins
over the variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from . import __version__, project_command
from .config import ConfigError, Option, Settings, TableSettings, options_of

SERVE, MIGRATE, TABLES, PROJECT = "serve", "migrate", "create-tables", "project"
#: the groups of `Settings` each command takes flags for (serve: all of them); create-tables
#: also takes TableSettings, project its own flags (project_command.py)
COMMAND_GROUPS = {
    MIGRATE: ("storage", "logging"),
    TABLES: ("storage", "logging"),
    PROJECT: ("storage", "logging"),
}
#: settings a command takes under another meaning (project's --shards: ranges or a count)
COMMAND_EXCLUDES = {PROJECT: frozenset({"shards"})}


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parse(option: Option) -> Callable[[str], Any]:
    kind = option.value_type
    if kind is bool:
        return _bool
    return Path if issubclass(kind, Path) else kind


def _add(parser: argparse.ArgumentParser, section: Any, option: Option) -> None:
    """The option's flag, whose default comes from its environment variable, then from the
    option's declared default (not shown for a derived one: its help says how it is chosen)."""
    parse = _parse(option)
    default = option.default
    raw = os.environ.get(option.env)
    if raw is not None:
        try:
            default = parse(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"{option.env}={raw!r}: {exc}")
    shown = f" (default: {default})"
    if default in (None, "") or (option.setting.derived and raw is None):
        shown = ""
    section.add_argument(
        option.flag,
        type=parse,
        default=default,
        choices=option.setting.choices,
        help=f"{option.setting.help}{shown} [env {option.env}]",
    )


def _add_options(parser: argparse.ArgumentParser, command: str, options: Iterable[Option]) -> None:
    sections: dict[str, Any] = {}
    for option in options:
        if option.setting.commands and command not in option.setting.commands:
            continue
        if option.title not in sections:
            sections[option.title] = parser.add_argument_group(option.title)
        _add(parser, sections[option.title], option)


def _settings_options(command: str) -> list[Option]:
    groups = COMMAND_GROUPS.get(command)
    excluded = COMMAND_EXCLUDES.get(command, frozenset())
    return [
        o
        for o in Settings.options()
        if (groups is None or o.group in groups) and o.dest not in excluded
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="threadweaver",
        description="thread-weaver: an event-sourced, sharded chat backend (CQRS: commands go to "
        "thread aggregates whose events are journaled; queries read an SQL read model).",
        epilog="Every flag can also be set with the environment variable shown in its help.",
    )
    parser.add_argument("--version", action="version", version=f"thread-weaver {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        SERVE,
        help="run the runtime and its HTTP API",
        description="Run the runtime: thread aggregates, read-model updaters and the /v1 HTTP API.",
    )
    _add_options(serve, SERVE, _settings_options(SERVE))

    migrate = sub.add_parser(
        MIGRATE,
        help="create or upgrade the read-model schema",
        description="Create or upgrade the read-model schema to the latest "
        "revision (Alembic). Safe to run repeatedly.",
    )
    _add_options(migrate, MIGRATE, _settings_options(MIGRATE))

    tables = sub.add_parser(
        TABLES,
        help="create the DynamoDB journal tables",
        description="Create the DynamoDB journal and snapshot tables (and the "
        "shard/time index) if missing, and wait until ACTIVE.",
    )
    _add_options(tables, TABLES, _settings_options(TABLES))
    _add_options(tables, TABLES, options_of(TableSettings(), title="DynamoDB tables"))

    project = sub.add_parser(
        PROJECT,
        help="build a read model from the journal",
        description="Build a read model from the journal, from the beginning (or the "
        "checkpoints a previous run left in it) until caught up: a progress bar on a terminal, "
        "JSON lines otherwise, a summary at the end. Resumable after a kill. Writes only the "
        "target read model. Exit codes: 0 built, 1 failed, 2 usage, 3 journal unreachable, "
        "4 read model unreachable, 5 target not empty and not this journal's, 130 interrupted.",
    )
    _add_options(project, PROJECT, _settings_options(PROJECT))
    project_command.add_flags(project)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The resolved settings of the parsed flags (flags a command has not keep their defaults)."""
    dests = {option.dest for option in Settings.options()}
    values = {k: v for k, v in vars(args).items() if k in dests and v is not None}
    return Settings.from_options(values).resolved()


def table_settings_from(args: argparse.Namespace) -> TableSettings:
    return TableSettings(**{o.field: getattr(args, o.dest) for o in options_of(TableSettings())})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from . import logs

    logs.configure(args.log_level, args.log_format)
    shards: list[int] = []
    if args.command == PROJECT:
        try:
            project_command.check_flags(args)
            args.shards, shards = project_command.shard_selection(args.shard_set, args.shard_count)
        except ValueError as exc:
            parser.exit(2, f"threadweaver project: error: {exc}\n")
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        parser.exit(2, f"threadweaver: error: {exc}\n")
    if args.command == PROJECT:
        return project_command.run(settings, args, shards)
    from .server import run, serve

    if args.command == SERVE:
        run(serve(settings))
        return 0
    if args.command == MIGRATE:
        run(_migrate(settings))
        return 0
    if args.command == TABLES:
        run(_create_tables(settings, table_settings_from(args)))
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


async def _migrate(settings: Settings) -> None:
    import sqlalchemy as sa

    from .adapters.readmodel import SqlReadModel
    from .adapters.readmodel.sql import redact_url

    url = settings.storage.read_model
    rm = SqlReadModel(url)
    try:
        try:
            await rm.migrate()
        except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as exc:
            raise SystemExit(
                f"threadweaver migrate: cannot reach the read model "
                f"{redact_url(url)}: {exc.__class__.__name__}: "
                f"{getattr(exc, 'orig', exc)}"
            ) from None
        print(f"read model {redact_url(url)} is at the latest schema revision")
    finally:
        await rm.close()


async def _create_tables(settings: Settings, tables: TableSettings) -> None:
    journal = settings.storage.journal
    if not journal.startswith("dynamodb:"):
        raise SystemExit("create-tables: --journal must be a dynamodb:// URL")
    from .adapters.journal.dynamodb.settings import DynamoDBSettings
    from .adapters.journal.dynamodb.tables import create_tables
    from .application.ports import JournalError

    try:
        names = await create_tables(
            DynamoDBSettings.from_url(journal),
            billing_mode=tables.billing_mode,
            read_capacity=tables.read_capacity,
            write_capacity=tables.write_capacity,
            wait=not tables.no_wait,
            timeout=tables.timeout,
            point_in_time_recovery=tables.point_in_time_recovery,
        )
    except (JournalError, ValueError, TimeoutError) as exc:
        raise SystemExit(f"threadweaver create-tables: {exc}") from None
    print(("tables ready: " if not tables.no_wait else "tables requested: ") + ", ".join(names))


if __name__ == "__main__":
    sys.exit(main())
