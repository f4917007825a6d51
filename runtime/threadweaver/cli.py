"""The `threadweaver` command: serve, migrate, create-tables.

Every flag also reads an environment variable named THREADWEAVER_<FLAG> (upper case, dashes as
underscores), so Kubernetes manifests configure the runtime with env only; a flag given on the
command line wins over the variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import __version__
from .config import ConfigError, Settings

ENV_PREFIX = "THREADWEAVER_"
_DEFAULTS = Settings()


def _env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add(
    parser: argparse.ArgumentParser,
    flag: str,
    type_: Callable[[str], Any],
    help_: str,
    default: Any = None,
    **kw: Any,
) -> None:
    """A flag whose default comes from its environment variable, then from `default`."""
    env = _env_name(flag)
    raw = os.environ.get(env)
    if raw is not None:
        try:
            default = type_(raw)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"{env}={raw!r}: {exc}")
    shown = "" if default in (None, "") else f" (default: {default})"
    parser.add_argument(flag, type=type_, default=default, help=f"{help_}{shown} [env {env}]", **kw)


def _storage_flags(p: argparse.ArgumentParser) -> None:
    _add(p, "--data-dir", Path, "directory of the embedded SQLite files", _DEFAULTS.data_dir)
    _add(
        p,
        "--journal",
        str,
        "event journal URL: sqlite:///PATH (default: DATA_DIR/journal.db) or "
        "dynamodb://HOST:PORT?region=R&table-prefix=P (no host: AWS)",
        "",
    )
    _add(
        p,
        "--read-model",
        str,
        "read-model URL: sqlite+aiosqlite:///PATH (default: "
        "DATA_DIR/readmodel.db) or mysql+aiomysql://USER:PASS@HOST:PORT/DB",
        "",
    )
    _add(
        p,
        "--read-model-password-file",
        str,
        "file holding the read-model password (a mounted Secret); overrides the URL's",
        "",
    )
    _add(
        p, "--shards", int, "number of shards, fixed when the journal is created", _DEFAULTS.shards
    )
    _add(p, "--log-level", str, "debug, info, warning or error", _DEFAULTS.log_level)
    _add(p, "--log-format", str, "text or json", _DEFAULTS.log_format)


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
        "serve",
        help="run the runtime and its HTTP API",
        description="Run the runtime: thread aggregates, read-model updaters and the /v1 HTTP API.",
    )
    _add(serve, "--host", str, "address to listen on", _DEFAULTS.host)
    _add(serve, "--port", int, "TCP port of the HTTP API", _DEFAULTS.port)
    _storage_flags(serve)
    _add(
        serve,
        "--auto-migrate",
        _bool,
        "migrate the read-model schema at start "
        "(default: true for SQLite, false for MySQL, where the operator's Job migrates)",
    )
    _add(
        serve,
        "--sync-mode",
        str,
        "SQLite journal durability: full (fsync every commit; "
        "survives power loss), normal (survives a process crash), off (tests only)",
        _DEFAULTS.sync_mode,
    )
    _add(
        serve,
        "--snapshot-every",
        int,
        "events between snapshots of an aggregate, at least a tenth of its size (0: never)",
        _DEFAULTS.snapshot_every,
    )
    _add(
        serve,
        "--passivate-after",
        float,
        "seconds an idle aggregate stays in memory",
        _DEFAULTS.passivate_after,
    )
    _add(serve, "--max-entities", int, "aggregates kept in memory at most", _DEFAULTS.max_entities)
    _add(
        serve,
        "--request-timeout",
        float,
        "seconds before a command answers 503",
        _DEFAULTS.request_timeout,
    )
    _add(
        serve,
        "--max-body-bytes",
        int,
        "largest request body accepted (413 beyond)",
        _DEFAULTS.max_body_bytes,
    )
    _add(
        serve,
        "--projection-batch-size",
        int,
        "events per read-model transaction",
        _DEFAULTS.projection_batch_size,
    )
    _add(
        serve,
        "--projection-poll-interval",
        float,
        "seconds between full reads of a "
        "read-model updater's range when no append is pushed (default: 1 on SQLite, 10 on "
        "DynamoDB)",
        None,
    )
    _add(
        serve,
        "--member-name",
        str,
        "this member's name (the pod name in Kubernetes)",
        _DEFAULTS.member_name,
    )
    _add(
        serve,
        "--cluster",
        str,
        "ThreadWeaverCluster name: join that cluster's shard map "
        "(empty: embedded, this process owns every shard)",
        "",
    )
    _add(serve, "--namespace", str, "namespace of the cluster's shard map and leases", "")
    _add(serve, "--kubeconfig", str, "kubeconfig file (default: in-cluster config)", "")
    _add(
        serve,
        "--peer-address",
        str,
        "host:port other members use to forward requests here "
        "(default: pod DNS through the headless Service)",
        "",
    )
    _add(
        serve,
        "--peer-address-template",
        str,
        "address of another member when the shard map "
        "names none, with {member} (default: {member}.CLUSTER-headless.NAMESPACE.svc:PORT)",
        "",
    )
    _add(
        serve,
        "--peer-token-file",
        str,
        "file with the shared secret that forwarded commands carry (a mounted Secret)",
        "",
    )
    _add(
        serve,
        "--lease-duration",
        int,
        "seconds without renewal after which the operator considers this member gone",
        _DEFAULTS.lease_duration,
    )
    _add(
        serve,
        "--lease-renew-every",
        float,
        "seconds between lease renewals",
        _DEFAULTS.lease_renew_every,
    )
    _add(
        serve,
        "--idempotency-keys",
        int,
        "Idempotency-Keys remembered per thread, most recent first (0: the header is ignored)",
        _DEFAULTS.idempotency_keys,
    )
    _add(
        serve,
        "--idempotency-window",
        float,
        "seconds an Idempotency-Key is remembered",
        _DEFAULTS.idempotency_window,
    )
    _add(
        serve,
        "--auth",
        str,
        "authentication of the /v1 API: none, or jwt (a bearer JWT whose "
        "sub is the acting account)",
        _DEFAULTS.auth,
        choices=("none", "jwt"),
    )
    _add(
        serve,
        "--jwt-hs256-secret-file",
        str,
        "with --auth jwt: file holding the HS256 secret (at least 32 bytes; a mounted Secret)",
        "",
    )
    _add(
        serve,
        "--jwt-jwks-file",
        str,
        "with --auth jwt: JWKS JSON file with the RS256 public keys (instead of a secret)",
        "",
    )
    _add(serve, "--jwt-issuer", str, "with --auth jwt: required `iss` of the tokens", "")
    _add(serve, "--jwt-audience", str, "with --auth jwt: required `aud` of the tokens", "")

    migrate = sub.add_parser(
        "migrate",
        help="create or upgrade the read-model schema",
        description="Create or upgrade the read-model schema to the latest "
        "revision (Alembic). Safe to run repeatedly.",
    )
    _storage_flags(migrate)

    tables = sub.add_parser(
        "create-tables",
        help="create the DynamoDB journal tables",
        description="Create the DynamoDB journal and snapshot tables (and the "
        "shard/time index) if missing, and wait until ACTIVE.",
    )
    _storage_flags(tables)
    _add(tables, "--billing-mode", str, "PAY_PER_REQUEST or PROVISIONED", "PAY_PER_REQUEST")
    _add(tables, "--read-capacity", int, "read capacity units (PROVISIONED only)", None)
    _add(tables, "--write-capacity", int, "write capacity units (PROVISIONED only)", None)
    _add(tables, "--timeout", float, "seconds to wait until the tables are ACTIVE", 300.0)
    _add(tables, "--no-wait", _bool, "return without waiting until the tables are ACTIVE", False)
    _add(
        tables,
        "--point-in-time-recovery",
        _bool,
        "enable point-in-time recovery on the journal table (backups)",
        False,
    )
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    names = {f.name for f in fields(Settings)}
    values = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return Settings(**values).resolved()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from . import logs

    logs.configure(args.log_level, args.log_format)
    try:
        settings = settings_from(args)
    except ConfigError as exc:
        parser.exit(2, f"threadweaver: error: {exc}\n")
    from .server import run, serve

    if args.command == "serve":
        run(serve(settings))
        return 0
    if args.command == "migrate":
        run(_migrate(settings))
        return 0
    if args.command == "create-tables":
        run(_create_tables(settings, args))
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


async def _migrate(settings: Settings) -> None:
    import sqlalchemy as sa

    from .adapters.readmodel import SqlReadModel
    from .adapters.readmodel.sql import redact_url

    rm = SqlReadModel(settings.read_model)
    try:
        try:
            await rm.migrate()
        except (sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as exc:
            raise SystemExit(
                f"threadweaver migrate: cannot reach the read model "
                f"{redact_url(settings.read_model)}: {exc.__class__.__name__}: "
                f"{getattr(exc, 'orig', exc)}"
            ) from None
        print(f"read model {redact_url(settings.read_model)} is at the latest schema revision")
    finally:
        await rm.close()


async def _create_tables(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.journal.startswith("dynamodb:"):
        raise SystemExit("create-tables: --journal must be a dynamodb:// URL")
    from .adapters.journal.dynamodb.settings import DynamoDBSettings
    from .adapters.journal.dynamodb.tables import create_tables
    from .application.ports import JournalError

    try:
        names = await create_tables(
            DynamoDBSettings.from_url(settings.journal),
            billing_mode=args.billing_mode,
            read_capacity=args.read_capacity,
            write_capacity=args.write_capacity,
            wait=not args.no_wait,
            timeout=args.timeout,
            point_in_time_recovery=args.point_in_time_recovery,
        )
    except (JournalError, ValueError, TimeoutError) as exc:
        raise SystemExit(f"threadweaver create-tables: {exc}") from None
    print(("tables ready: " if not args.no_wait else "tables requested: ") + ", ".join(names))


if __name__ == "__main__":
    sys.exit(main())
