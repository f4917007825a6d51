"""Plan: the pure decisions of one reconcile pass, from an :class:`~.observation.Observation` to
the :mod:`.steps` that carry them out (no I/O: unit-tested without Kubernetes).

Order of a pass: check the spec -> runtime RBAC, Services, PDB, peer-token Secret,
NetworkPolicies -> the referenced Secrets -> DynamoDB tables -> migration Job -> replay-check Job
of a new image (:mod:`.replay_gate`) -> shard map (initialize / rebalance / complete a handoff,
RMU restarts) -> StatefulSet (created or rolled to a new template only once the migration of
that template succeeded and, for a new image, its replay check passed; replicas from the
rebalancing decision) -> status.
Every action is an Event on the ThreadWeaverCluster; a Warning is posted once per distinct
message until its problem goes away.

The tables are created before the plan (outside the cluster's lock, see
:mod:`.reconciler`) when :func:`tables_needed` says so: once per spec generation, as the
status remembers; the plan turns the outcome (``Observation.tables``) into the Provisioned
condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from threadweaver.shards import ShardMap

from . import builders, names
from .cluster_view import ClusterView, cluster_view, review_cluster
from .events import Event, warning_key
from .migration import migration_condition, superseded_jobs
from .monitoring import plan_monitoring
from .network_policies import API_FALLBACK_PORTS, network_policies
from .observation import Observation
from .projection_lag import cluster_lag
from .provisioning import external_tables
from .read_models import template_database
from .rebalancing import Decision
from .rebuild import RebuildOutcome, plan_rebuild
from .replay_gate import plan_gate
from .rmu_requests import RESTART_ANNOTATION, handle_restart_request
from .secret_refs import SecretProblem, Secrets, needed_by, secret_problems
from .spec import ClusterSpec
from .statefulset_drift import auth_differs, image_differs
from .status import Condition, Observed, build_status, projections_condition, status_patch
from .steps import (
    Apply,
    Create,
    CreatePeerToken,
    Delete,
    ForgetWarnings,
    Plan,
    Post,
    RememberRestarts,
    ScaleStatefulSet,
    Step,
    WriteStatus,
)
from .supervision import supervise

__all__ = ["plan", "previous_condition", "tables_needed"]


def plan(o: Observation) -> Plan:
    """The steps of the pass that observed ``o``."""
    p = _Steps(o.warned)
    spec = o.valid_spec
    if spec is None:
        _plan_invalid_spec(p, o)
    else:
        _plan_cluster(p, o, spec)
    return Plan(tuple(p.steps))


def tables_needed(
    spec: ClusterSpec, secrets: Secrets, previous: Mapping[str, Any], generation: int
) -> bool:
    """Whether this pass creates the tables: ``createTables``, the journal's Secret usable and
    no Provisioned=True for this generation in the status (re-checked once per generation)."""
    if not spec.dynamodb.create_tables or "journal" in secret_problems(spec, secrets):
        return False
    provisioned = previous_condition(previous, "Provisioned", generation)
    return provisioned is None or not provisioned.true


def previous_condition(
    previous: Mapping[str, Any], ctype: str, generation: int | None
) -> Condition | None:
    """The condition from the last status if it is about this generation (any with None)."""
    for c in previous.get("conditions") or []:
        if c.get("type") == ctype and (
            generation is None or c.get("observedGeneration") == generation
        ):
            return Condition(
                ctype, c.get("status", "Unknown"), c.get("reason", ""), c.get("message", "")
            )
    return None


class _Steps:
    """The steps of one pass, in order; Warnings deduplicated against those already posted."""

    def __init__(self, warned: frozenset[str]) -> None:
        self.steps: list[Step] = []
        self._warned = set(warned)

    def add(self, step: Step) -> None:
        self.steps.append(step)

    def info(self, reason: str, message: str) -> None:
        self.add(Post(Event("Normal", reason, message)))

    def warn(self, reason: str, message: str) -> None:
        key = warning_key(reason, message)
        if key not in self._warned:
            self._warned.add(key)
            self.add(Post(Event("Warning", reason, message), key))

    def clear_warnings(self, reason: str) -> None:
        prefix = reason + ":"
        if any(w.startswith(prefix) for w in self._warned):
            self._warned = {w for w in self._warned if not w.startswith(prefix)}
            self.add(ForgetWarnings(reason))


def _info(reason: str, message: str) -> Event:
    return Event("Normal", reason, message)


# -- the stages of a pass -------------------------------------------------------------------


def _plan_invalid_spec(p: _Steps, o: Observation) -> None:
    """Report the problems; create nothing and keep what the status says of the shard map."""
    problems = list(o.spec_problems)
    p.warn("InvalidSpec", "; ".join(problems))
    replicas = o.raw_spec.get("replicas")
    _write_status(
        p,
        o,
        Observed(
            generation=o.generation,
            replicas=replicas if isinstance(replicas, int) else 0,
            spec_problems=problems,
            selector=names.selector_string(o.name),
            epoch=o.previous.get("epoch"),
            members=o.previous.get("members") or {},
            proposed_plan=o.previous.get("proposedPlan"),
            rmu_restart_request=o.previous.get("rmuRestartRequest"),
        ),
    )


def _plan_cluster(p: _Steps, o: Observation, spec: ClusterSpec) -> None:
    p.clear_warnings("InvalidSpec")
    view = cluster_view(o, spec)
    sts = o.statefulset

    # runtime RBAC, Services, PDB, peer token: no preconditions
    for obj in builders.runtime_objects(spec, view.member_count, o.owner):
        p.add(Apply(obj))
    if not o.peer_token_exists:
        message = (
            f"created Secret {names.peer_token_secret(o.name)} for member-to-member forwarding"
        )
        p.add(CreatePeerToken(spec, o.owner, (_info("PeerTokenCreated", message),)))
    _network_policies(p, o, spec)

    problems = _check_secrets(p, spec, o.secrets)
    provisioned = _provisioned(p, o, spec, problems)
    rebuild = _rebuild(p, o, spec, view)
    serving = spec.with_database(rebuild.serving)  # the database the pods serve (rebuild.py)
    migrated, migrated_revision = _migration(
        p, o, serving, problems, provisioned, _rebuild_migrated(rebuild)
    )
    upgraded, checked_image = _replay_check(p, o, spec, provisioned.true and not problems)
    can_roll_out = provisioned.true and migrated.true and upgraded.true and not problems
    if provisioned.true and not problems:
        for step in rebuild.steps:
            p.add(step)

    shard_map = _shard_map(p, o, spec, view, rebuild)
    statefulset_exists = _statefulset(
        p, o, serving, can_roll_out and shard_map.shard_map is not None, shard_map.decision
    )

    monitoring = _monitoring(p, o, spec)

    sts_status = (sts or {}).get("status") or {}
    decision, published = shard_map.decision, shard_map.shard_map
    _write_status(
        p,
        o,
        Observed(
            generation=o.generation,
            replicas=spec.replicas,
            provisioned=provisioned,
            migrated=migrated,
            statefulset_exists=statefulset_exists,
            pods=int(sts_status.get("replicas") or 0),
            ready_pods=int(sts_status.get("readyReplicas") or 0),
            epoch=published.epoch if published else None,
            members=published.counts() if published else {},
            rebalancing=bool(decision and decision.rebalancing) or bool(view.map_error),
            rebalance_reason=(
                "ShardMapInvalid" if view.map_error else decision.reason if decision else "Pending"
            ),
            rebalance_message=(view.map_error or (decision.message if decision else "")),
            dead=shard_map.dead,
            orphaned=shard_map.orphaned,
            rmu_reports=shard_map.reports,
            restarted_total=shard_map.restarted_total,
            selector=names.selector_string(o.name),
            table_prefix=spec.table_prefix,
            migrated_revision=migrated_revision,
            upgraded=upgraded,
            replay_checked_image=checked_image,
            read_model=rebuild.status,
            rebuild=rebuild.condition,
            monitoring=monitoring,
            proposed_plan=shard_map.plan_status,
            rmu_restart_request=shard_map.rmu_request,
            lag=cluster_lag(published, view.views),
            max_lag_seconds=spec.projections.max_lag_seconds,
        ),
        shard_map.status_events,
    )


def _lag_events(o: Observation, observed: Observed) -> tuple[Event, ...]:
    """A Warning when ProjectionsHealthy turns Lagging, a Normal Event when that ends (only
    where the lag was observed)."""
    if observed.lag is None:
        return ()
    now = projections_condition(observed)
    before = previous_condition(o.previous, "ProjectionsHealthy", None)
    was_lagging = before is not None and before.reason == "Lagging"
    if now.reason == "Lagging" and not was_lagging:
        return (Event("Warning", "ProjectionsLagging", now.message),)
    if was_lagging and now.reason != "Lagging":
        return (
            _info("ProjectionsCaughtUp", f"projection lag back within the limit: {now.message}"),
        )
    return ()


def _rebuild(p: _Steps, o: Observation, spec: ClusterSpec, view: ClusterView) -> RebuildOutcome:
    """A rebuild of the read model (rebuild.py): its outcome, its Warnings."""
    if o.read_model_error:
        p.warn("ReadModelDirectiveInvalid", o.read_model_error)
    outcome = plan_rebuild(o, spec, view.views, view.current)
    if outcome.warning is not None:
        p.warn(*outcome.warning)
    else:
        p.clear_warnings("RebuildFailed")
    return outcome


def _rebuild_migrated(rebuild: RebuildOutcome) -> str | None:
    """The migration revision a rebuild's Job completed (the served database's once switched:
    the rollout gate need not run it again)."""
    last = rebuild.status.get("rebuild") or {}
    return last.get("revision") if last.get("migrated") else None


def _monitoring(p: _Steps, o: Observation, spec: ClusterSpec) -> Condition | None:
    """spec.monitoring.podMonitor (see :mod:`.monitoring`): the PodMonitor and its condition."""
    planned = plan_monitoring(spec, o.owner, o.pod_monitor_api, o.pod_monitor)
    for step in planned.steps:
        p.add(step)
    if planned.warning is not None:
        p.warn(planned.warning.reason, planned.warning.message)
    else:
        p.clear_warnings("PodMonitorApiMissing")
    return planned.condition


def _network_policies(p: _Steps, o: Observation, spec: ClusterSpec) -> None:
    """Apply the cluster's NetworkPolicies (spec.network), or delete them when turned off."""
    existing = {np["metadata"]["name"] for np in o.network_policies}
    if not spec.network.policy:
        for name in sorted(existing):
            message = f"deleted NetworkPolicy {name} (spec.network.policy is false)"
            p.add(Delete("NetworkPolicy", name, (_info("NetworkPolicyDeleted", message),)))
        return
    if o.kubernetes_api_error:
        ports = " and ".join(map(str, API_FALLBACK_PORTS))
        p.warn(
            "KubernetesApiUnknown",
            f"cannot read the Kubernetes API's endpoints ({o.kubernetes_api_error}): the "
            f"runtime's NetworkPolicy allows egress to ports {ports} of any address instead",
        )
    else:
        p.clear_warnings("KubernetesApiUnknown")
    for policy in network_policies(spec, o.kubernetes_api, o.owner):
        name = policy["metadata"]["name"]
        events: tuple[Event, ...] = ()
        if name not in existing:
            events = (_info("NetworkPolicyCreated", f"created NetworkPolicy {name}"),)
        p.add(Apply(policy, events))


def _check_secrets(p: _Steps, spec: ClusterSpec, secrets: Secrets) -> dict[str, SecretProblem]:
    problems = secret_problems(spec, secrets)
    for purpose, problem in problems.items():
        p.warn(problem.reason, f"{problem} (needed by {needed_by(spec, purpose)})")
    if not problems:
        p.clear_warnings("SecretNotFound")
        p.clear_warnings("SecretKeyMissing")
    return problems


def _provisioned(
    p: _Steps, o: Observation, spec: ClusterSpec, problems: Mapping[str, SecretProblem]
) -> Condition:
    """The Provisioned condition: the status's for this generation, else this pass's outcome
    (an Event only when it changes)."""
    if "journal" in problems:
        problem = problems["journal"]
        return Condition("Provisioned", "False", problem.reason, str(problem))
    provisioned = previous_condition(o.previous, "Provisioned", o.generation)
    if provisioned is not None and provisioned.true:
        return provisioned
    if not spec.dynamodb.create_tables:
        outcome = external_tables(spec)
    elif o.tables is None:
        # Not run by this pass (a concurrent pass changed the status meanwhile): the next does.
        return provisioned or Condition("Provisioned", "Unknown", "Pending", "not checked yet")
    else:
        outcome = o.tables
    was = previous_condition(o.previous, "Provisioned", None)
    if outcome.true:
        p.clear_warnings("ProvisioningFailed")
        if was is None or not was.true or was.message != outcome.message:
            p.info("Provisioned", outcome.message)
    else:
        p.warn(outcome.reason, outcome.message)
    return outcome


def _migration(
    p: _Steps,
    o: Observation,
    spec: ClusterSpec,
    problems: Mapping[str, SecretProblem],
    provisioned: Condition,
    also_migrated: str | None = None,
) -> tuple[Condition, str | None]:
    """The Migrated condition and ``status.migratedRevision``.

    The Migrated condition is the gate of a rollout: the Secret only the runtime pods need (the
    JWT key of spec.auth) holds it too, with the same reasons, so that the cluster is Failed
    with a message naming the field instead of pods stuck in ContainerCreating."""
    migrated_revision = o.previous.get("migratedRevision")
    revision = spec.migration_revision()
    if also_migrated == revision:
        migrated_revision = revision
    if "readModel" in problems:
        problem = problems["readModel"]
        migrated = Condition("Migrated", "False", problem.reason, str(problem))
    elif "auth" in problems:
        problem = problems["auth"]
        migrated = Condition(
            "Migrated", "False", problem.reason, f"{problem} (needed by {needed_by(spec, 'auth')})"
        )
    elif not provisioned.true:
        migrated = Condition(
            "Migrated", "False", "WaitingForTables", "waiting for the journal tables"
        )
    else:
        pending = spec.mysql.migrate and migrated_revision != revision
        if pending and o.migration_job is None:
            job = names.migration_job(o.name, revision)
            p.add(
                Create(
                    builders.migration_job(spec, o.owner),
                    (_info("MigrationStarted", f"created migration Job {job}"),),
                )
            )
        migrated = migration_condition(spec, o.migration_job, migrated_revision)
        if migrated.true and pending:
            migrated_revision = revision
            p.info("Migrated", migrated.message)
            for job in superseded_jobs(o.migration_jobs, revision):
                p.add(
                    Delete(
                        "Job",
                        job,
                        (_info("MigrationJobDeleted", f"deleted superseded migration Job {job}"),),
                    )
                )
        elif migrated.reason == "JobFailed":
            p.warn("MigrationFailed", migrated.message)
    if not spec.mysql.migrate:
        migrated_revision = None
    return migrated, migrated_revision


def _replay_check(
    p: _Steps, o: Observation, spec: ClusterSpec, journal_ready: bool
) -> tuple[Condition, str | None]:
    """The Upgraded condition (the replay-check gate of a new image) and
    ``status.replayCheckedImage``; the Job it needs, and its outcome as an Event."""
    gate = plan_gate(
        spec,
        o.statefulset,
        o.previous.get("replayCheckedImage"),
        o.replay_check_job,
        o.replay_check_pods,
        journal_ready,
        o.owner,
    )
    if gate.create_job is not None:
        job = gate.create_job["metadata"]["name"]
        message = f"created Job {job} to replay-check image {spec.image}"
        p.add(Create(gate.create_job, (_info("ReplayCheckStarted", message),)))
    if gate.passed:
        p.clear_warnings("ReplayCheckFailed")
        p.info("ReplayCheckPassed", gate.condition.message)
    elif gate.failed:
        p.warn("ReplayCheckFailed", gate.condition.message)
    return gate.condition, gate.checked_image


@dataclass(frozen=True)
class _MapOutcome:
    shard_map: ShardMap | None  # the map published after this pass
    decision: Decision | None  # None: the published map is unreadable
    dead: tuple[str, ...] = ()  # dead members still holding shards
    orphaned: int = 0
    reports: int = 0
    restarted_total: int = 0
    plan_status: Mapping[str, Any] | None = None  # status.proposedPlan
    status_events: tuple[Event, ...] = ()  # of the plan, posted once the status is written
    rmu_request: str | None = None  # the last restart-rmu annotation handled


def _shard_map(
    p: _Steps, o: Observation, spec: ClusterSpec, view: ClusterView, rebuild: RebuildOutcome
) -> _MapOutcome:
    """Rebalance (under spec.rebalance) or complete a handoff, then supervise the RMUs of the
    resulting map and handle a restart-rmu request; publish the rebuild's directive beside it."""
    restarted_total = int(o.previous.get("restartedRmus") or 0)
    previous_plan = o.previous.get("proposedPlan")
    rmu_request = o.previous.get("rmuRestartRequest")
    if view.map_error:
        p.warn("ShardMapInvalid", view.map_error)
        return _MapOutcome(
            None,
            None,
            restarted_total=restarted_total,
            plan_status=previous_plan,
            rmu_request=rmu_request,
        )
    current = view.current
    reviewed = review_cluster(o, spec, view)
    decision = reviewed.decision
    sup = supervise(
        decision.shard_map, view.views, view.statefulset_replicas, o.monotonic, o.restart_times
    )
    if dict(sup.restart_times) != dict(o.restart_times):
        p.add(RememberRestarts(dict(sup.restart_times)))
    new_map = sup.shard_map
    restarted = list(sup.restarted)
    for err in sup.errors:
        p.warn("MemberStatusInvalid", err)
    request = o.annotations.get(RESTART_ANNOTATION)
    if request and request != rmu_request:
        outcome = handle_restart_request(new_map, request)
        new_map, rmu_request = outcome.shard_map, request
        restarted += outcome.requested
        if outcome.problem:
            p.warn("RmuRestartRefused", outcome.problem)
    directive = rebuild.directive
    directive_changed = directive is not None and directive != o.read_model_directive
    if current is None or new_map.dumps() != current.dumps() or directive_changed:
        events = list(rebuild.directive_events) if directive_changed else []
        if decision.action != "steady" and decision.changed:
            events.append(_info(_event_reason(decision.action), decision.message))
        for member, r in restarted:
            restarted_total += 1
            events.append(
                _info(
                    "RmuRestartRequested",
                    f"requested a restart of the read-model updater of shards {r} on {member}",
                )
            )
        configmap = builders.shardmap_configmap(spec, new_map, o.owner, directive)
        p.add(Apply(configmap, tuple(events)))
    if decision.reason == "ShardsMismatch":
        p.warn("ShardsMismatch", decision.message)
    return _MapOutcome(
        new_map,
        decision,
        dead=tuple(sorted(m for m in sup.dead if m in new_map.assignments)),
        orphaned=sup.orphaned,
        reports=sup.reports,
        restarted_total=restarted_total,
        plan_status=reviewed.plan_status,
        status_events=reviewed.events,
        rmu_request=rmu_request,
    )


def _event_reason(action: str) -> str:
    return {
        "initialize": "ShardMapInitialized",
        "rebalance": "RebalancePublished",
        "complete-handoff": "HandoffCompleted",
    }.get(action, "ShardMapUpdated")


def _statefulset(
    p: _Steps, o: Observation, spec: ClusterSpec, can_roll_out: bool, decision: Decision | None
) -> bool:
    """Apply the StatefulSet (or only its replicas while a template waits for its migration);
    whether it exists after the pass."""
    sts = o.statefulset
    name = names.statefulset(o.name)
    sts_replicas = (sts.get("spec") or {}).get("replicas") if sts else None
    if sts is not None and not image_differs(sts, spec):
        # the pods keep the database they started with: after a rebuild the directive beside
        # the shard map names the one they serve, and a new template would roll them for nothing
        spec = spec.with_database(template_database(sts) or spec.mysql.database)
    desired = decision.statefulset_replicas if decision else (sts_replicas or 0)
    if can_roll_out:
        if sts is None:
            event = _info(
                "StatefulSetCreated", f"created StatefulSet {name} with {desired} replica(s)"
            )
        elif sts_replicas != desired:
            event = _info("Scaled", f"StatefulSet {name}: replicas {sts_replicas} -> {desired}")
        elif image_differs(sts, spec):
            event = _info("RollingUpdate", f"StatefulSet {name}: rolling out image {spec.image}")
        elif auth_differs(sts, spec):
            mode = "jwt" if spec.auth.enabled else "none"
            event = _info("RollingUpdate", f"StatefulSet {name}: rolling out authentication {mode}")
        else:
            event = None
        events = (event,) if event else ()
        p.add(Apply(builders.statefulset(spec, desired, o.owner), events))
        return True
    if sts is not None and sts_replicas != desired:
        # A new template waits for its migration (and its Secrets); scaling does not.
        message = (
            f"StatefulSet {name}: replicas {sts_replicas} -> {desired} "
            "(a template update waits for the migration)"
        )
        p.add(ScaleStatefulSet(name, desired, (_info("Scaled", message),)))
    return sts is not None


def _write_status(
    p: _Steps, o: Observation, observed: Observed, announce: tuple[Event, ...] = ()
) -> None:
    """Write the status if it changed (a Phase Event when the phase did; ``announce``: Events
    of what the status publishes)."""
    status = build_status(observed, o.previous, o.now)
    announce = tuple(announce) + _lag_events(o, observed)
    patch = status_patch(status, o.previous)
    if patch is None:
        p.add(WriteStatus(dict(o.previous)))
        return
    events: tuple[Event, ...] = tuple(announce)
    if o.previous.get("phase") != status["phase"]:
        events += (
            Event(
                "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal",
                "Phase",
                f"phase {o.previous.get('phase') or '-'} -> {status['phase']}",
            ),
        )
    p.add(WriteStatus(status, patch, events))
