"""Pure status: conditions and the phase from what one reconcile observed.

Conditions (``type``: meaning of ``True``):

* ``Provisioned``: the DynamoDB tables exist (or ``createTables: false``: they are external);
* ``Migrated``: the read-model schema is at the image's revision (the migration Job succeeded,
  or ``migrate: false``);
* ``Rebalancing``: shards are moving or waiting to move (a handoff is incomplete, members are
  being drained or awaited);
* ``ProjectionsHealthy``: every served range has a running read-model updater (else reason
  ``OrphanedRmus``) whose lag is at most ``spec.projections.maxLagSeconds`` (else ``Lagging``;
  :mod:`.projection_lag`);
* ``Ready``: the cluster serves: provisioned, migrated, the shard map published and all
  ``spec.replicas`` pods Ready. Rebalancing does not make it unready.
* ``Upgraded``: the image of ``spec.image`` may roll out: it passed the replay check of the
  journal, or needs none (the cluster's first image, ``spec.upgrade.replayCheck: off``); False
  while the check runs or after it failed (``ReplayCheckFailed``), the old pods serving
  (:mod:`.replay_gate`). It changes neither Ready nor the phase.
* ``Monitoring`` (only with ``spec.monitoring.podMonitor: true``): the PodMonitor is applied;
  False where the monitoring.coreos.com API is not served (:mod:`.monitoring`). It changes
  neither Ready nor the phase.
* ``Rebuilding`` (only once a rebuild of the read model started, :mod:`.rebuild`): True while
  one runs; False once switched (``Switched``), failed (``RebuildFailed``: the old database keeps
  serving) or cancelled. It changes neither Ready nor the phase.

``phase`` summarizes them for ``kubectl get twc``, first match wins: Deleting, Failed (a spec
the operator cannot run, a missing Secret, a failed migration), Provisioning, Migrating,
Pending (pods not Ready yet), Rebalancing, Degraded (fewer Ready pods than wanted, dead
members, orphaned RMUs), Running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .projection_lag import DEFAULT_MAX_LAG_SECONDS, ClusterLag

__all__ = [
    "CONDITION_TYPES",
    "Condition",
    "Observed",
    "build_status",
    "conditions",
    "merge_conditions",
    "phase",
    "projections_condition",
    "status_patch",
]

CONDITION_TYPES = (
    "Ready",
    "Provisioned",
    "Migrated",
    "Rebalancing",
    "ProjectionsHealthy",
    "Upgraded",
)
FAILED_REASONS = frozenset(
    {"InvalidSpec", "SecretNotFound", "SecretKeyMissing", "JobFailed", "ShardsMismatch"}
)


@dataclass(frozen=True)
class Condition:
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str
    message: str = ""

    @property
    def true(self) -> bool:
        return self.status == "True"


@dataclass(frozen=True)
class Observed:
    """Everything the status depends on, gathered by the handler."""

    generation: int = 0
    replicas: int = 0  # spec.replicas
    deleting: bool = False
    spec_problems: Sequence[str] = ()
    provisioned: Condition | None = None
    migrated: Condition | None = None
    statefulset_exists: bool = False
    pods: int = 0  # StatefulSet status.replicas
    ready_pods: int = 0
    epoch: int | None = None
    members: Mapping[str, int] = field(default_factory=dict)
    rebalancing: bool = False
    rebalance_reason: str = "Balanced"
    rebalance_message: str = ""
    dead: Sequence[str] = ()
    orphaned: int = 0
    rmu_reports: int = 0
    restarted_total: int = 0
    selector: str = ""
    table_prefix: str = ""
    migrated_revision: str | None = None
    read_model: Mapping[str, Any] | None = None  # status.readModel (rebuild.py)
    rebuild: Condition | None = None  # the Rebuilding condition (absent: never rebuilt)
    monitoring: Condition | None = None  # spec.monitoring.podMonitor (absent: not asked for)
    upgraded: Condition | None = None  # the replay-check gate (absent: an invalid spec)
    replay_checked_image: str | None = None  # the last image that passed the replay check
    proposed_plan: Mapping[str, Any] | None = None  # spec.rebalance.mode manual (review.py)
    rmu_restart_request: str | None = None  # the last restart-rmu annotation handled
    lag: ClusterLag | None = None  # the members' largest projection lag (None: not observed)
    max_lag_seconds: int = DEFAULT_MAX_LAG_SECONDS  # spec.projections.maxLagSeconds


def conditions(o: Observed) -> list[Condition]:
    """The five conditions, in :data:`CONDITION_TYPES` order (then Upgraded, and Monitoring when
    asked for)."""
    provisioned = o.provisioned or Condition("Provisioned", "Unknown", "Pending", "not checked yet")
    migrated = o.migrated or Condition("Migrated", "Unknown", "Pending", "not checked yet")
    if o.spec_problems:
        invalid = "; ".join(o.spec_problems)
        provisioned = (
            provisioned
            if provisioned.reason != "Pending"
            else Condition("Provisioned", "False", "InvalidSpec", invalid)
        )
        migrated = (
            migrated
            if migrated.reason != "Pending"
            else Condition("Migrated", "False", "InvalidSpec", invalid)
        )
    if o.rebalancing:
        rebalancing = Condition("Rebalancing", "True", o.rebalance_reason, o.rebalance_message)
    else:
        rebalancing = Condition(
            "Rebalancing", "False", o.rebalance_reason or "Balanced", o.rebalance_message
        )
    projections = projections_condition(o)
    ready = _ready(o, provisioned, migrated)
    out = [ready, provisioned, migrated, rebalancing, projections]
    if o.upgraded is not None:
        out.append(o.upgraded)
    if o.monitoring is not None:
        out.append(o.monitoring)
    return out


def projections_condition(o: Observed) -> Condition:
    """ProjectionsHealthy: orphaned RMUs first, then a lag above the threshold."""
    if o.orphaned:
        return Condition(
            "ProjectionsHealthy",
            "False",
            "OrphanedRmus",
            f"{o.orphaned} read-model updater(s) not running"
            + (f"; dead members: {', '.join(o.dead)}" if o.dead else ""),
        )
    if o.lag is not None and o.lag.seconds > o.max_lag_seconds:
        return Condition(
            "ProjectionsHealthy",
            "False",
            "Lagging",
            f"projection lag {o.lag.status_seconds} s is above spec.projections.maxLagSeconds "
            f"({o.max_lag_seconds} s): the largest is of {o.lag.where()}",
        )
    if o.rmu_reports or o.replicas == 0:
        return Condition(
            "ProjectionsHealthy", "True", "AllRunning", "every served range has a running RMU"
        )
    return Condition(
        "ProjectionsHealthy", "Unknown", "NoReports", "no member reported its RMUs yet"
    )


def _ready(o: Observed, provisioned: Condition, migrated: Condition) -> Condition:
    if o.deleting:
        return Condition("Ready", "False", "Deleting", "the cluster is being deleted")
    if o.spec_problems:
        return Condition("Ready", "False", "InvalidSpec", "; ".join(o.spec_problems))
    if not provisioned.true:
        return Condition("Ready", "False", provisioned.reason, provisioned.message)
    if not migrated.true:
        return Condition("Ready", "False", migrated.reason, migrated.message)
    if o.epoch is None:
        return Condition("Ready", "False", "NoShardMap", "the shard map is not published yet")
    if not o.statefulset_exists:
        return Condition("Ready", "False", "Pending", "the runtime StatefulSet is not created yet")
    if o.ready_pods < o.replicas:
        return Condition(
            "Ready", "False", "PodsNotReady", f"{o.ready_pods}/{o.replicas} runtime pods are Ready"
        )
    return Condition(
        "Ready",
        "True",
        "ClusterReady",
        f"{o.ready_pods}/{o.replicas} runtime pods Ready, epoch {o.epoch}",
    )


def phase(o: Observed, conds: Sequence[Condition]) -> str:
    by = {c.type: c for c in conds}
    if o.deleting:
        return "Deleting"
    if (
        o.spec_problems
        or any(c.reason in FAILED_REASONS for c in conds if not c.true and c.type != "Rebalancing")
        or by["Rebalancing"].reason == "ShardsMismatch"
    ):
        return "Failed"
    if not by["Provisioned"].true:
        return "Provisioning"
    if not by["Migrated"].true:
        return "Migrating"
    if not o.statefulset_exists or (o.replicas > 0 and o.ready_pods == 0):
        return "Pending"
    if by["Rebalancing"].true:
        return "Rebalancing"
    if o.ready_pods < o.replicas or o.dead or o.orphaned:
        return "Degraded"
    return "Running"


def merge_conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    new: Sequence[Condition],
    generation: int,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Condition dicts for the status; ``lastTransitionTime`` moves only when ``status`` changes."""
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    old = {c.get("type"): c for c in previous or [] if isinstance(c, Mapping)}
    out = []
    for c in new:
        before = old.get(c.type)
        changed = before is None or before.get("status") != c.status
        out.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": (
                    stamp if before is None or changed else before.get("lastTransitionTime", stamp)
                ),
                "observedGeneration": generation,
            }
        )
    return out


def build_status(
    o: Observed, previous: Mapping[str, Any] | None, now: datetime | None = None
) -> dict[str, Any]:
    """The whole ``status`` the operator writes (a merge patch of these keys)."""
    conds = conditions(o)
    if o.rebuild is not None:  # changes neither Ready nor the phase
        conds.append(o.rebuild)
    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "phase": phase(o, conds),
        "conditions": merge_conditions(
            (previous or {}).get("conditions"), conds, o.generation, now
        ),
        "replicas": o.pods,
        "readyReplicas": o.ready_pods,
        "selector": o.selector,
        "members": dict(o.members),
        "orphanedRmus": o.orphaned,
        "restartedRmus": o.restarted_total,
    }
    if o.epoch is not None:
        status["epoch"] = o.epoch
    if o.table_prefix:
        status["tablePrefix"] = o.table_prefix
    if o.migrated_revision:
        status["migratedRevision"] = o.migrated_revision
    if o.replay_checked_image:
        status["replayCheckedImage"] = o.replay_checked_image
    if o.read_model:
        status["readModel"] = dict(o.read_model)
    if o.proposed_plan is not None:
        status["proposedPlan"] = dict(o.proposed_plan)
    if o.rmu_restart_request is not None:
        status["rmuRestartRequest"] = o.rmu_restart_request
    if o.lag is not None:
        status["projectionLagSeconds"] = o.lag.status_seconds
    return status


def status_patch(status: Mapping[str, Any], previous: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch from ``previous`` to ``status`` (None when nothing changed but the
    conditions' timestamps). Members that left are removed explicitly."""
    comparable = {k: v for k, v in status.items() if k != "conditions"}
    old_plan = previous.get("proposedPlan")
    plan_removed = isinstance(old_plan, Mapping) and "proposedPlan" not in status
    if (
        comparable == {k: previous.get(k) for k in comparable}
        and not plan_removed
        and _same_conditions(previous.get("conditions"), status["conditions"])
    ):
        return None
    patch = dict(status)
    old_members = previous.get("members") or {}
    patch["members"] = {
        **{m: None for m in old_members if m not in status["members"]},
        **status["members"],
    }
    if isinstance(old_plan, Mapping):
        if plan_removed:
            patch["proposedPlan"] = None  # the plan ran, was withdrawn or replaced by none
        else:  # a merge patch keeps the keys it does not name: drop the old plan's extra keys
            patch["proposedPlan"] = {
                **{k: None for k in old_plan if k not in status["proposedPlan"]},
                **status["proposedPlan"],
            }
    if isinstance(previous.get("readModel"), Mapping) and "readModel" in status:
        patch["readModel"] = _nested_patch(previous["readModel"], status["readModel"])
    return patch


def _nested_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """``new`` as a merge patch over ``old``: the keys it lost are set to null, at any depth."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            out[key] = _nested_patch(before, value)
        else:
            out[key] = value
    return out


def _same_conditions(old: Any, new: Sequence[Mapping[str, Any]]) -> bool:
    def key(conds: Any) -> list[tuple]:
        return sorted(
            (
                c.get("type"),
                c.get("status"),
                c.get("reason"),
                c.get("message"),
                c.get("observedGeneration"),
            )
            for c in conds or []
            if isinstance(c, Mapping)
        )

    return key(old) == key(new)
