"""Observe: everything one pass knows, read from the API once (each object one request).

An :class:`Observation` is a plain value: the cluster object, what the operator remembers of it
(:mod:`.state`), the referenced user Secrets, the outcome of this pass's table provisioning, the
objects the operator manages (StatefulSet, shard-map ConfigMap, migration Job, the replay-check
Job of a new image and its pods, peer-token Secret, NetworkPolicies), the Kubernetes API's endpoints (for the NetworkPolicy) and the
members' Leases and Pods, with the two clocks of the pass.
:func:`.planning.plan` decides from it alone.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from threadweaver.shards import ReadModelDirective

from . import builders, monitoring, names
from .kube import Kube, KubeError
from .migration import job_state
from .network_policies import COMPONENT, ApiEndpoint, kubernetes_api_endpoints
from .read_models import published_directive, rebuild_jobs, serving_database
from .replay_gate import check_needed
from .replay_gate import job_name as replay_check_job_name
from .secret_refs import Secrets
from .spec import ClusterSpec, SpecError
from .state import ClusterState
from .status import Condition

__all__ = ["Observation", "observe", "previous_status", "read_spec"]


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    generation: int
    raw_spec: Mapping[str, Any]  # the object's spec as written (for an invalid one)
    spec: ClusterSpec | None  # None: unreadable (see spec_problems)
    spec_problems: tuple[str, ...]
    owner: Mapping[str, Any]  # the ownerReference of every child
    previous: Mapping[str, Any]  # the last status (see previous_status)
    annotations: Mapping[str, str] = field(default_factory=dict)  # the cluster object's
    warned: frozenset[str] = frozenset()
    restart_times: Mapping[str, float] = field(default_factory=dict)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))  # Lease expiry, status
    monotonic: float = 0.0  # RMU restart cooldowns
    secrets: Secrets = field(default_factory=dict)
    tables: Condition | None = None  # this pass's table provisioning (None: it did not run)
    peer_token_exists: bool = False
    statefulset: Mapping[str, Any] | None = None
    shardmap_configmap: Mapping[str, Any] | None = None
    migration_job: Mapping[str, Any] | None = None  # of this revision, read while not migrated
    migration_jobs: tuple[Mapping[str, Any], ...] = ()  # all of them, once this one succeeded
    # the replay check of spec.image (replay_gate.py), read while it gates a rollout; its pods
    # only once it failed (their termination message names the first unreadable event)
    replay_check_job: Mapping[str, Any] | None = None
    replay_check_pods: tuple[Mapping[str, Any], ...] = ()
    leases: tuple[Mapping[str, Any], ...] = ()  # every Lease of the namespace
    pods: tuple[Mapping[str, Any], ...] = ()  # the runtime pods
    # spec.monitoring.podMonitor (looked up only while asked for, or to delete one)
    pod_monitor_api: bool | None = None  # monitoring.coreos.com/v1 served (None: not looked up)
    pod_monitor: Mapping[str, Any] | None = None
    network_policies: tuple[Mapping[str, Any], ...] = ()  # the cluster's (network_policies.py)
    kubernetes_api: tuple[ApiEndpoint, ...] = ()  # read while spec.network.policy is on
    kubernetes_api_error: str | None = None  # why kubernetes_api could not be read
    # a rebuild of the read model (read_models.py, rebuild.py)
    read_model_directive: ReadModelDirective | None = None  # published beside the shard map
    read_model_error: str | None = None  # why the published directive is unreadable
    rebuild_migration_job: Mapping[str, Any] | None = None  # read while rebuilding
    project_job: Mapping[str, Any] | None = None

    @property
    def valid_spec(self) -> ClusterSpec | None:
        return self.spec if self.spec is not None and not self.spec_problems else None


def read_spec(body: Mapping[str, Any]) -> tuple[ClusterSpec | None, tuple[str, ...]]:
    """The parsed spec and its problems (no API call)."""
    meta = body["metadata"]
    try:
        spec = ClusterSpec.from_resource(meta["name"], meta["namespace"], body.get("spec"))
    except SpecError as exc:
        return None, (str(exc),)
    return spec, tuple(spec.problems())


def previous_status(body: Mapping[str, Any], state: ClusterState) -> dict[str, Any]:
    """The status this operator wrote last, else the object's (after a restart). The body of a
    timer may lag behind a status just written."""
    return state.status if state.status is not None else dict(body.get("status") or {})


async def observe(
    kube: Kube,
    body: Mapping[str, Any],
    state: ClusterState,
    spec: ClusterSpec | None,
    spec_problems: tuple[str, ...],
    secrets: Secrets,
    tables: Condition | None,
) -> Observation:
    """Read what the pass needs; nothing beyond the object itself for an invalid spec."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    previous = previous_status(body, state)
    base = Observation(
        name=name,
        namespace=namespace,
        generation=meta.get("generation", 0),
        raw_spec=body.get("spec") or {},
        spec=spec,
        spec_problems=spec_problems,
        owner=builders.owner_reference(body),
        previous=previous,
        annotations=dict(meta.get("annotations") or {}),
        warned=frozenset(state.warned),
        restart_times=dict(state.restart_times),
        now=datetime.now(UTC),
        monotonic=time.monotonic(),
    )
    if spec is None or spec_problems:
        return base
    job, jobs = await _migration_jobs(kube, spec, previous.get("migratedRevision"))
    api, pod_monitor = await _pod_monitor(kube, spec, previous)
    peer_token = await kube.get("Secret", namespace, names.peer_token_secret(name))
    statefulset = await kube.get("StatefulSet", namespace, names.statefulset(name))
    replay_job, replay_pods = await _replay_check(
        kube, spec, statefulset, previous.get("replayCheckedImage")
    )
    configmap = await kube.get("ConfigMap", namespace, names.shardmap_configmap(name))
    directive, directive_error = published_directive(configmap)
    return replace(
        base,
        secrets=secrets,
        tables=tables,
        peer_token_exists=peer_token is not None,
        statefulset=statefulset,
        shardmap_configmap=configmap,
        read_model_directive=directive,
        read_model_error=directive_error,
        **(await _rebuild_jobs(kube, spec, directive, statefulset)),
        migration_job=job,
        migration_jobs=jobs,
        replay_check_job=replay_job,
        replay_check_pods=replay_pods,
        leases=tuple(await kube.list("Lease", namespace)),
        pods=tuple(await kube.list("Pod", namespace, label_selector=names.selector_string(name))),
        pod_monitor_api=api,
        pod_monitor=pod_monitor,
        network_policies=tuple(
            await kube.list(
                "NetworkPolicy",
                namespace,
                label_selector=names.selector_string(name, COMPONENT),
            )
        ),
        **(await _kubernetes_api(kube) if spec.network.policy else {}),
    )


async def _rebuild_jobs(
    kube: Kube,
    spec: ClusterSpec,
    directive: ReadModelDirective | None,
    statefulset: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """A rebuild's two Jobs, while the target is not the database served."""
    target = spec.target_database()
    if serving_database(spec, directive, statefulset) == target:
        return {}
    migration, project = rebuild_jobs(spec, target)
    return {
        "rebuild_migration_job": await kube.get("Job", spec.namespace, migration),
        "project_job": await kube.get("Job", spec.namespace, project),
    }


async def _pod_monitor(
    kube: Kube, spec: ClusterSpec, previous: Mapping[str, Any]
) -> tuple[bool | None, dict[str, Any] | None]:
    """Whether the PodMonitor API is served and the cluster's PodMonitor: looked up while
    spec.monitoring.podMonitor is on, or while the status still has its condition (to delete
    it once turned off)."""
    asked = spec.monitoring.pod_monitor or any(
        c.get("type") == "Monitoring" for c in previous.get("conditions") or []
    )
    if not asked:
        return None, None
    if not await kube.serves(monitoring.API):
        return False, None
    return True, await kube.get("PodMonitor", spec.namespace, names.statefulset(spec.name))


async def _kubernetes_api(kube: Kube) -> dict[str, Any]:
    """The API server's endpoints for the runtime's egress rule (Service default/kubernetes and
    its EndpointSlices); an error (say, RBAC without endpointslices) is reported, not raised."""
    try:
        service = await kube.get("Service", "default", "kubernetes")
        slices = await kube.list(
            "EndpointSlice", "default", label_selector="kubernetes.io/service-name=kubernetes"
        )
    except KubeError as exc:
        return {"kubernetes_api_error": str(exc)}
    return {"kubernetes_api": kubernetes_api_endpoints(service, slices)}


async def _replay_check(
    kube: Kube,
    spec: ClusterSpec,
    statefulset: Mapping[str, Any] | None,
    checked_image: str | None,
) -> tuple[dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    """The replay-check Job of spec.image while it gates the rollout, and its pods once it
    failed."""
    if not check_needed(spec, statefulset, checked_image):
        return None, ()
    name = replay_check_job_name(spec)
    job = await kube.get("Job", spec.namespace, name)
    if job is None or job_state(job)[0] != "Failed":
        return job, ()
    pods = await kube.list("Pod", spec.namespace, label_selector=f"job-name={name}")
    return job, tuple(pods)


async def _migration_jobs(
    kube: Kube, spec: ClusterSpec, migrated_revision: str | None
) -> tuple[dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    """The Job of this revision while it has not succeeded yet, and, once it has, every
    migration Job (the superseded ones are deleted then)."""
    revision = spec.migration_revision()
    if not spec.mysql.migrate or migrated_revision == revision:
        return None, ()
    job = await kube.get("Job", spec.namespace, names.migration_job(spec.name, revision))
    if job is None or job_state(job)[0] != "Succeeded":
        return job, ()
    selector = ",".join(
        f"{k}={v}" for k, v in names.selector_labels(spec.name, "migration").items()
    )
    return job, tuple(await kube.list("Job", spec.namespace, label_selector=selector))
