"""Prometheus metrics of the operator, served on a port of their own (``--metrics-port``).

Per cluster (labels ``namespace``, ``cluster``): how long reconcile passes take and why they
fail, the rebalance rounds published and the ranges they move, completed handoffs and the age of
an incomplete one, orphaned read-model updaters and the restarts requested for them, members by
Lease state, the published epoch and the cluster's phase.

Figures are taken from what a pass observed and the plan it carried out
(:meth:`OperatorMetrics.pass_done`), after ``act`` succeeded: nothing here calls the API. The
catalogue :data:`OPERATOR_METRICS` lists every family (docs/operations.md, "Monitoring"; the
alert rules' drift guard checks against it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from threadweaver.shards import SHARDMAP_KEY, ShardMap, ShardMapError

from . import names
from .kube import KubeError
from .observation import Observation
from .steps import Apply, Plan, WriteStatus
from .supervision import dead_members, member_views

__all__ = ["OPERATOR_METRICS", "OperatorMetrics", "metrics", "serve_metrics"]

log = logging.getLogger(__name__)

CLUSTER_LABELS = ("namespace", "cluster")
PHASES = (
    "Deleting",
    "Failed",
    "Provisioning",
    "Migrating",
    "Pending",
    "Rebalancing",
    "Degraded",
    "Running",
)
MEMBER_STATES = ("live", "expired")


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as queried: counters with _total
    type: str
    labels: tuple[str, ...]
    help: str


def _m(name: str, type_: str, extra: tuple[str, ...], help_: str) -> MetricSpec:
    return MetricSpec(name, type_, (*CLUSTER_LABELS, *extra), help_)


OPERATOR_METRICS: tuple[MetricSpec, ...] = (
    _m(
        "threadweaver_operator_reconcile_duration_seconds",
        "histogram",
        (),
        "Duration of one reconcile pass of the cluster (observe, plan, act).",
    ),
    _m(
        "threadweaver_operator_reconcile_errors_total",
        "counter",
        ("reason",),
        "Reconcile passes that failed, by reason (KubeApi<HTTP status>, Timeout, Connection, "
        "Unexpected); the pass is retried.",
    ),
    _m(
        "threadweaver_operator_rebalance_rounds_total",
        "counter",
        (),
        "Rebalance rounds published: shard maps of a new epoch that move ranges.",
    ),
    _m(
        "threadweaver_operator_ranges_moved_total",
        "counter",
        (),
        "Shard ranges moved by the rebalance rounds published.",
    ),
    _m(
        "threadweaver_operator_handoffs_completed_total",
        "counter",
        (),
        "Handoffs completed (every losing member acknowledged or was gone).",
    ),
    _m(
        "threadweaver_operator_handoff_in_progress",
        "gauge",
        (),
        "1 while the published shard map has an incomplete handoff, else 0.",
    ),
    _m(
        "threadweaver_operator_handoff_age_seconds",
        "gauge",
        (),
        "Seconds since this operator first saw the incomplete handoff of the published map "
        "(0 when there is none).",
    ),
    _m(
        "threadweaver_operator_orphaned_rmus",
        "gauge",
        (),
        "Read-model updaters not running: on a live member past their back-off, or on a dead "
        "member (status.orphanedRmus).",
    ),
    _m(
        "threadweaver_operator_rmu_restarts_requested_total",
        "counter",
        (),
        "Restarts of stopped read-model updaters requested in the shard map.",
    ),
    _m(
        "threadweaver_operator_members",
        "gauge",
        ("state",),
        "Members in the shard map or wanted by spec.replicas, by the state of their Lease "
        "(live: valid; expired: present but not renewed in time).",
    ),
    _m(
        "threadweaver_operator_members_dead",
        "gauge",
        (),
        "Members of the shard map judged dead (Lease expired over 30 s ago, or Pod gone with "
        "its Lease lapsed); their ranges are reassigned.",
    ),
    _m(
        "threadweaver_operator_shard_map_epoch",
        "gauge",
        (),
        "Epoch of the published shard map.",
    ),
    _m(
        "threadweaver_operator_cluster_phase",
        "gauge",
        ("phase",),
        "1 for the cluster's current status.phase, 0 for the other phases.",
    ),
    _m(
        "threadweaver_operator_cluster_ready",
        "gauge",
        (),
        "1 while the cluster's Ready condition is True, else 0.",
    ),
)

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


def error_reason(exc: BaseException) -> str:
    if isinstance(exc, KubeError):
        return f"KubeApi{exc.status}"
    if isinstance(exc, TimeoutError):
        return "Timeout"
    if isinstance(exc, OSError):
        return "Connection"
    return "Unexpected"


@dataclass
class _Handoff:
    epoch: int | None = None
    since: float = 0.0


@dataclass
class _Clusters:
    handoffs: dict[tuple[str, str], _Handoff] = field(default_factory=dict)


class OperatorMetrics:
    """The operator's families in a registry of their own (with the process collectors)."""

    def __init__(self, registry: CollectorRegistry | None = None, process: bool = True) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        if process:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                try:
                    self.registry.register(collector)
                except ValueError:  # already there (a registry given twice)
                    pass
        self._metrics: dict[str, Any] = {}
        for m in OPERATOR_METRICS:
            kind = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}[m.type]
            kwargs: dict[str, Any] = {"registry": self.registry}
            if m.type == "histogram":
                kwargs["buckets"] = _BUCKETS
            self._metrics[m.name] = kind(m.name, m.help, list(m.labels), **kwargs)
        self._state = _Clusters()

    def metric(self, name: str) -> Any:
        return self._metrics[name]

    # -- a pass -------------------------------------------------------------------------------

    @contextmanager
    def reconcile(self, namespace: str, cluster: str) -> Iterator[None]:
        """Times the pass in the ``with`` block; a failure counts as an error by its reason
        (a cancelled pass counts as neither)."""
        started = time.perf_counter()
        try:
            yield
        except Exception as exc:
            self.metric("threadweaver_operator_reconcile_errors_total").labels(
                namespace, cluster, error_reason(exc)
            ).inc()
            raise
        finally:
            self.metric("threadweaver_operator_reconcile_duration_seconds").labels(
                namespace, cluster
            ).observe(time.perf_counter() - started)

    def pass_done(self, o: Observation, plan: Plan, now: float | None = None) -> None:
        """Record what a successful pass observed and did."""
        now = time.monotonic() if now is None else now
        key = (o.namespace, o.name)
        labels = key
        before = _map_of(o.shardmap_configmap)
        published = _published_map(plan, o.name)
        after = published or before
        if published is not None and before is not None:
            if published.epoch > before.epoch and published.in_handoff and published.handoff:
                self.metric("threadweaver_operator_rebalance_rounds_total").labels(*labels).inc()
                self.metric("threadweaver_operator_ranges_moved_total").labels(*labels).inc(
                    len(published.handoff.moves)
                )
            if before.in_handoff and not published.in_handoff:
                self.metric("threadweaver_operator_handoffs_completed_total").labels(*labels).inc()
        restarts = _restart_requests(plan, o.name)
        if restarts:
            self.metric("threadweaver_operator_rmu_restarts_requested_total").labels(*labels).inc(
                restarts
            )
        # make the counters exist from the first pass on (queries find 0, not nothing)
        for name in (
            "threadweaver_operator_rebalance_rounds_total",
            "threadweaver_operator_ranges_moved_total",
            "threadweaver_operator_handoffs_completed_total",
            "threadweaver_operator_rmu_restarts_requested_total",
        ):
            self.metric(name).labels(*labels)
        self._handoff(key, after, now)
        if after is not None:
            self.metric("threadweaver_operator_shard_map_epoch").labels(*labels).set(after.epoch)
        self._members(o, before, after)
        status = _written_status(plan)
        if status is not None:
            self._status(key, status)

    def _handoff(self, key: tuple[str, str], shard_map: ShardMap | None, now: float) -> None:
        handoff = self._state.handoffs.setdefault(key, _Handoff())
        in_handoff = shard_map is not None and shard_map.in_handoff
        if not in_handoff or shard_map is None:
            handoff.epoch = None
            age = 0.0
        else:
            if handoff.epoch != shard_map.epoch:
                handoff.epoch, handoff.since = shard_map.epoch, now
            age = now - handoff.since
        self.metric("threadweaver_operator_handoff_in_progress").labels(*key).set(int(in_handoff))
        self.metric("threadweaver_operator_handoff_age_seconds").labels(*key).set(age)

    def _members(self, o: Observation, *maps: ShardMap | None) -> None:
        """Members of the observed or the published map, and those spec.replicas wants."""
        holding = {
            m
            for shard_map in maps
            if shard_map is not None
            for m, rs in shard_map.assignments.items()
            if not rs.is_empty()
        }
        wanted = set(holding)
        if o.spec is not None:
            wanted |= set(names.members(o.name, max(o.spec.replicas, 0)))
        leases = {
            lease["metadata"]["name"]: lease
            for lease in o.leases
            if (lease.get("metadata") or {}).get("name") in wanted
        }
        pods = {pod["metadata"]["name"]: pod for pod in o.pods}
        views = member_views(o.name, wanted, leases, pods, o.now)
        counts = dict.fromkeys(MEMBER_STATES, 0)
        for view in views.values():
            if view.has_lease:
                counts["live" if view.lease_valid else "expired"] += 1
        for state, count in counts.items():
            self.metric("threadweaver_operator_members").labels(o.namespace, o.name, state).set(
                count
            )
        replicas = ((o.statefulset or {}).get("spec") or {}).get("replicas")
        dead = dead_members(views, replicas) & holding
        self.metric("threadweaver_operator_members_dead").labels(o.namespace, o.name).set(len(dead))

    def _status(self, key: tuple[str, str], status: Mapping[str, Any]) -> None:
        self.metric("threadweaver_operator_orphaned_rmus").labels(*key).set(
            int(status.get("orphanedRmus") or 0)
        )
        phase = status.get("phase")
        for p in PHASES:
            self.metric("threadweaver_operator_cluster_phase").labels(*key, p).set(int(p == phase))
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        self.metric("threadweaver_operator_cluster_ready").labels(*key).set(int(ready))

    def forget(self, namespace: str, cluster: str) -> None:
        """Drop every series of a deleted cluster."""
        self._state.handoffs.pop((namespace, cluster), None)
        for metric in self._metrics.values():
            for labels in list(_label_sets(metric)):
                if labels[:2] == (namespace, cluster):
                    metric.remove(*labels)


def _label_sets(metric: Any) -> Iterator[tuple[str, ...]]:
    with metric._lock:  # prometheus_client keeps the children by label values
        yield from list(metric._metrics)


def _map_of(configmap: Mapping[str, Any] | None) -> ShardMap | None:
    if configmap is None:
        return None
    try:
        return ShardMap.from_json((configmap.get("data") or {}).get(SHARDMAP_KEY) or "")
    except ShardMapError:
        return None


def _shardmap_step(plan: Plan, cluster: str) -> Apply | None:
    name = names.shardmap_configmap(cluster)
    for step in plan.steps:
        if (
            isinstance(step, Apply)
            and step.obj.get("kind") == "ConfigMap"
            and (step.obj.get("metadata") or {}).get("name") == name
        ):
            return step
    return None


def _published_map(plan: Plan, cluster: str) -> ShardMap | None:
    step = _shardmap_step(plan, cluster)
    return None if step is None else _map_of(step.obj)


def _restart_requests(plan: Plan, cluster: str) -> int:
    step = _shardmap_step(plan, cluster)
    if step is None:
        return 0
    return sum(1 for e in step.events if e.reason == "RmuRestartRequested")


def _written_status(plan: Plan) -> Mapping[str, Any] | None:
    for step in plan.steps:
        if isinstance(step, WriteStatus):
            return step.status
    return None


#: the operator process's metrics (``threadweaver-operator`` serves them)
_metrics: OperatorMetrics | None = None


def metrics() -> OperatorMetrics:
    """The operator process's :class:`OperatorMetrics` (created on first use)."""
    global _metrics
    if _metrics is None:
        _metrics = OperatorMetrics()
    return _metrics


def serve_metrics(host: str, port: int) -> bool:
    """Serve ``/metrics`` on ``host:port`` in a background thread; False (logged) if the
    port cannot be bound: the operator runs on without metrics rather than not at all."""
    try:
        start_http_server(port, addr=host, registry=metrics().registry)
    except OSError as exc:
        log.error("cannot serve metrics on %s:%d: %s", host, port, exc)
        return False
    log.info("metrics on http://%s:%d/metrics", host, port)
    return True
