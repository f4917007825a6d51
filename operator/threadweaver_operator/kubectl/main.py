"""The command line of ``kubectl threadweaver`` (console script ``kubectl-threadweaver``).

    kubectl threadweaver status CLUSTER [-o table|json]
    kubectl threadweaver shards CLUSTER [--thread ID] [-o table|json]
    kubectl threadweaver rebalance CLUSTER --dry-run [-o table|json]
    kubectl threadweaver approve CLUSTER PLAN_ID
    kubectl threadweaver restart-rmu CLUSTER RANGE

Every command takes ``-n/--namespace``, ``--context`` and ``--kubeconfig`` (kubectl passes its
own flags to no plugin). Exit codes: 0 done, 1 an error explained on stderr (a missing cluster,
a missing permission, an unreachable API server), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp

from threadweaver.shards import ShardMapError

from ..cluster_view import published_map
from .actions import approve, restart_rmu
from .reading import PluginError, Session, connect, observation, read_snapshot
from .rebalance_view import dry_run, render_dry_run
from .shards_view import render_shards, shard_table, thread_owner
from .status_view import cluster_status, render_status

__all__ = ["build_parser", "main"]


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (SUPPRESS: the last one wins)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace of CLUSTER")
    p.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    p.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path of the kubeconfig")
    return p


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="kubectl threadweaver",
        description="Inspect and operate ThreadWeaverClusters through the API server "
        "(your kubeconfig and RBAC; never the pods).",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = sub.add_parser(
        "status",
        parents=[common],
        help="phase, conditions, epoch, members, ranges, RMUs and lease ages",
    )
    status.add_argument("cluster", metavar="CLUSTER")
    _output(status)
    shards = sub.add_parser(
        "shards", parents=[common], help="the shard map, and which member owns a thread"
    )
    shards.add_argument("cluster", metavar="CLUSTER")
    shards.add_argument("--thread", metavar="ID", help="the thread whose owner to show")
    _output(shards)
    rebalance = sub.add_parser(
        "rebalance",
        parents=[common],
        help="the moves the operator would make now, round by round (--dry-run)",
    )
    rebalance.add_argument("cluster", metavar="CLUSTER")
    rebalance.add_argument(
        "--dry-run",
        action="store_true",
        required=True,
        help="show the plan (the only mode: the operator itself rebalances)",
    )
    _output(rebalance)
    appr = sub.add_parser(
        "approve", parents=[common], help="approve the proposed plan (spec.rebalance.mode manual)"
    )
    appr.add_argument("cluster", metavar="CLUSTER")
    appr.add_argument("plan_id", metavar="PLAN_ID")
    restart = sub.add_parser(
        "restart-rmu",
        parents=[common],
        help="restart the read-model updaters of a shard range (start-end, half-open)",
    )
    restart.add_argument("cluster", metavar="CLUSTER")
    restart.add_argument("range", metavar="RANGE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = asyncio.run(_run(args))
    except PluginError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        print(f"error: cannot reach the API server: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


async def _run(args: argparse.Namespace) -> str:
    session = await connect(
        getattr(args, "kubeconfig", None),
        getattr(args, "context", None),
        getattr(args, "namespace", None),
    )
    try:
        return await _command(session, args)
    finally:
        await session.close()


async def _command(session: Session, args: argparse.Namespace) -> str:
    now = datetime.now(UTC)
    if args.command == "status":
        snapshot = await read_snapshot(session, args.cluster)
        s = cluster_status(snapshot, now)
        return _dump(s) if args.output == "json" else render_status(s)
    if args.command == "shards":
        snapshot = await read_snapshot(session, args.cluster, members=False)
        shard_map, error = published_map(observation(snapshot, now))
        if error:
            raise PluginError(error)
        if shard_map is None:
            raise PluginError(f"{args.cluster} has no shard map yet (the operator publishes it)")
        t = shard_table(shard_map)
        try:
            owner = thread_owner(shard_map, args.thread) if args.thread else None
        except (ValueError, ShardMapError) as exc:  # pragma: no cover - shard_of is total
            raise PluginError(str(exc)) from None
        if args.output == "json":
            return _dump({**t, "thread": owner} if owner else t)
        return render_shards(t, owner)
    if args.command == "rebalance":
        snapshot = await read_snapshot(session, args.cluster, statefulset=True)
        d = dry_run(snapshot, now)
        return _dump(d) if args.output == "json" else render_dry_run(d)
    if args.command == "approve":
        return await approve(session, args.cluster, args.plan_id)
    if args.command == "restart-rmu":
        return await restart_rmu(session, args.cluster, args.range, now)
    raise AssertionError(args.command)  # pragma: no cover - argparse refuses other commands


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)
