"""``threadweaver-operator``: run the Kopf operator for ThreadWeaverCluster objects.

    threadweaver-operator                      # all namespaces
    threadweaver-operator --namespace team-a   # only these namespaces (repeatable)

Standalone by default (one replica, Recreate strategy: no Kopf peering objects needed); pass
``--peering NAME`` to coordinate several operator processes through a KopfPeering object.
Liveness: ``--liveness http://0.0.0.0:8081/healthz`` (the Deployment's probe).
Metrics: ``--metrics-port 8082`` serves Prometheus ``/metrics`` (0 turns it off; see
:mod:`.metrics` and docs/operations.md, "Monitoring").
Every option also reads an environment variable (shown in ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def _env(name: str, default: str = "") -> str:
    return os.environ.get(f"THREADWEAVER_OPERATOR_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="threadweaver-operator",
        description="Kubernetes operator for ThreadWeaverCluster (threadweaver.io/v1alpha1).",
    )
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="watch only this namespace (repeatable; glob patterns allowed) "
        "[env THREADWEAVER_OPERATOR_NAMESPACES, comma-separated]",
    )
    p.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    p.add_argument(
        "--liveness",
        default=_env("LIVENESS", "http://0.0.0.0:8081/healthz"),
        help="liveness endpoint URL, empty to disable [env THREADWEAVER_OPERATOR_LIVENESS]",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "8082")),
        help="port of the Prometheus /metrics endpoint, 0 to disable "
        "[env THREADWEAVER_OPERATOR_METRICS_PORT]",
    )
    p.add_argument(
        "--metrics-host",
        default=_env("METRICS_HOST", "0.0.0.0"),
        help="address the /metrics endpoint listens on [env THREADWEAVER_OPERATOR_METRICS_HOST]",
    )
    p.add_argument(
        "--peering",
        default=_env("PEERING"),
        help="Kopf peering object name; empty: standalone [env THREADWEAVER_OPERATOR_PEERING]",
    )
    p.add_argument(
        "--log-level",
        default=_env("LOG_LEVEL", "info"),
        help="debug, info, warning or error [env THREADWEAVER_OPERATOR_LOG_LEVEL]",
    )
    p.add_argument(
        "--log-format",
        default=_env("LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="[env THREADWEAVER_OPERATOR_LOG_FORMAT]",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    namespaces = args.namespace or [n.strip() for n in _env("NAMESPACES").split(",") if n.strip()]
    if args.all_namespaces:
        namespaces = []
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        verbose=args.log_level == "debug",
        debug=False,
        quiet=args.log_level in ("warning", "error"),
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(args.log_level.upper())
    if args.metrics_port:
        from .metrics import serve_metrics

        serve_metrics(args.metrics_host, args.metrics_port)
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not namespaces,
                namespaces=namespaces,
                standalone=not args.peering,
                peering_name=args.peering or None,
                liveness_endpoint=args.liveness or None,
            )
        )
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
