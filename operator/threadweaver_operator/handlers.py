"""Kopf handlers: a level-based reconcile of every ThreadWeaverCluster.

``kopf run -m threadweaver_operator.handlers`` (or the ``threadweaver-operator`` command).

One :func:`reconcile` does everything, idempotently, from observed state only, so it is correct
after an operator restart from any state. It runs on create/update/resume (fast reaction to spec
changes) and every :data:`TICK_SECONDS` from a timer (children's progress: the migration Job,
pods, member Leases). Per object, passes are serialized by a lock.

Order of a pass: validate the spec -> runtime RBAC, Services, PDB, peer-token Secret -> Secrets
check -> DynamoDB tables -> migration Job -> shard map (initialize / rebalance / complete
handoff, RMU restarts) -> StatefulSet (created or rolled to a new template only once the
migration of that template succeeded; replicas from the rebalancing decision) -> status.
Every action is an Event on the ThreadWeaverCluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from threadweaver.shards import SHARDMAP_KEY, ShardMap, ShardMapError

from . import builders, names, provisioning
from .kube import Kube, KubeError
from .rebalancing import decide, rolling_update_in_progress
from .spec import ClusterSpec, SpecError
from .status import Condition, Observed, build_status
from .supervision import member_views, supervise

__all__ = ["TICK_SECONDS", "reconcile"]

log = logging.getLogger("threadweaver_operator")

TICK_SECONDS = 5.0
RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)


@dataclass
class ClusterState:
    """In-memory per-cluster state (a cache: everything is re-derived after a restart)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    status: dict[str, Any] | None = None  # last status written
    warned: set[str] = field(default_factory=set)  # warnings already posted (no Event storms)
    restart_times: dict[str, float] = field(default_factory=dict)


class _Operator:
    kube: Kube | None = None
    clusters: dict[str, ClusterState] = {}


OP = _Operator()


async def _kube() -> Kube:
    if OP.kube is None:
        OP.kube = await Kube.connect()
    return OP.kube


def _state(uid: str) -> ClusterState:
    return OP.clusters.setdefault(uid, ClusterState())


# -- lifecycle ------------------------------------------------------------------------------


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = names.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="threadweaver.io"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="threadweaver.io", key="last-handled-configuration"
    )
    # Only warnings of Kopf's own per-object log become Events; ours are posted explicitly.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    await _kube()


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    if OP.kube is not None:
        await OP.kube.close()
        OP.kube = None


# -- events ---------------------------------------------------------------------------------


def _post(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """Post a Kubernetes Event on the cluster object (through Kopf's posting queue)."""
    try:
        kopf.event(dict(body), type=type_, reason=reason, message=message[:1000])
    except LookupError:  # outside an operator context (unit tests): logging is all we can do
        pass


def _info(body: Mapping[str, Any], reason: str, message: str) -> None:
    log.info(
        "%s/%s: %s: %s",
        body["metadata"].get("namespace"),
        body["metadata"]["name"],
        reason,
        message,
    )
    _post(body, "Normal", reason, message)


def _warn(body: Mapping[str, Any], state: ClusterState, reason: str, message: str) -> None:
    """A Warning Event, once per distinct message until the problem goes away."""
    key = f"{reason}:{message}"
    if key in state.warned:
        return
    state.warned.add(key)
    log.warning(
        "%s/%s: %s: %s",
        body["metadata"].get("namespace"),
        body["metadata"]["name"],
        reason,
        message,
    )
    _post(body, "Warning", reason, message)


def _clear_warnings(state: ClusterState, reason: str) -> None:
    state.warned = {w for w in state.warned if not w.startswith(reason + ":")}


# -- handlers -------------------------------------------------------------------------------


@kopf.on.create(*RESOURCE, id="reconcile-on-create")
@kopf.on.update(*RESOURCE, id="reconcile-on-update")
@kopf.on.resume(*RESOURCE, id="reconcile-on-resume")
async def on_change(body: kopf.Body, **_: Any) -> None:
    try:
        await reconcile(body)
    except KubeError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=10) from exc


@kopf.timer(*RESOURCE, id="reconcile-timer", interval=TICK_SECONDS, sharp=False)
async def tick(body: kopf.Body, **_: Any) -> None:
    try:
        await reconcile(body)
    except (TimeoutError, KubeError, OSError) as exc:
        log.warning(
            "%s/%s: reconcile failed (retrying in %ss): %s",
            body.metadata.namespace,
            body.metadata.name,
            TICK_SECONDS,
            exc,
        )


@kopf.on.delete(*RESOURCE, id="finalize")
async def on_delete(body: kopf.Body, name: str, namespace: str, **_: Any) -> None:
    """Finalizer: honour ``deletionPolicy``; the children go with the owner (ownerReferences)."""
    kube = await _kube()
    state = _state(body.metadata.uid)
    try:
        await kube.merge_patch(
            "ThreadWeaverCluster", namespace, name, {"status": {"phase": "Deleting"}}, "status"
        )
    except KubeError:
        pass
    try:
        spec = ClusterSpec.from_resource(name, namespace, body.get("spec"))
    except SpecError as exc:
        _info(body, "Deleted", f"spec unreadable ({exc}): nothing to clean up")
        return
    tables = ", ".join(provisioning.table_names(spec))
    if spec.deletion_policy != "Delete":
        _info(
            body,
            "TablesRetained",
            f"deletionPolicy Retain: kept DynamoDB tables {tables} and the read model",
        )
    elif not spec.dynamodb.create_tables:
        _info(
            body,
            "TablesRetained",
            f"createTables is false: the operator does not delete external tables {tables}",
        )
    else:
        try:
            deleted = await provisioning.delete_tables(kube, spec)
        except provisioning.SecretProblem as exc:
            _warn(body, state, "DeleteTablesFailed", str(exc))
            raise kopf.TemporaryError(f"cannot delete the tables: {exc}", delay=15) from exc
        except Exception as exc:
            _warn(body, state, "DeleteTablesFailed", f"{type(exc).__name__}: {exc}")
            raise kopf.TemporaryError(f"cannot delete the tables: {exc}", delay=15) from exc
        _info(
            body,
            "TablesDeleted",
            f"deletionPolicy Delete: deleted DynamoDB tables {', '.join(deleted)}"
            if deleted
            else f"deletionPolicy Delete: tables {tables} did not exist",
        )
    OP.clusters.pop(body.metadata.uid, None)


# -- the reconcile --------------------------------------------------------------------------


async def reconcile(body: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    state = _state(meta["uid"])
    async with state.lock:
        await _reconcile(await _kube(), body, state)


def _members_from_map(shard_map: ShardMap | None) -> set[str]:
    if shard_map is None:
        return set()
    out = set(shard_map.assignments)
    if shard_map.in_handoff and shard_map.handoff is not None:
        out |= {m.source for m in shard_map.handoff.moves if m.source}
    return out


async def _reconcile(kube: Kube, body: Mapping[str, Any], state: ClusterState) -> None:
    meta = body["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation", 0)
    previous = state.status if state.status is not None else dict(body.get("status") or {})
    owner = builders.owner_reference(body)
    selector = names.selector_string(name)

    # 1. the spec
    try:
        spec = ClusterSpec.from_resource(name, namespace, body.get("spec"))
        problems = spec.problems()
    except SpecError as exc:
        spec, problems = None, [str(exc)]
    if problems or spec is None:
        _warn(body, state, "InvalidSpec", "; ".join(problems))
        replicas = (body.get("spec") or {}).get("replicas")
        await _write_status(
            kube,
            body,
            state,
            previous,
            Observed(
                generation=generation,
                replicas=replicas if isinstance(replicas, int) else 0,
                spec_problems=problems,
                selector=selector,
                epoch=previous.get("epoch"),
                members=previous.get("members") or {},
            ),
        )
        return
    _clear_warnings(state, "InvalidSpec")

    # 2. what exists
    sts = await kube.get("StatefulSet", namespace, names.statefulset(name))
    cm = await kube.get("ConfigMap", namespace, names.shardmap_configmap(name))
    current: ShardMap | None = None
    map_error: str | None = None
    if cm is not None:
        try:
            current = ShardMap.from_json((cm.get("data") or {}).get(SHARDMAP_KEY) or "")
        except ShardMapError as exc:
            map_error = (
                f"ConfigMap {names.shardmap_configmap(name)} holds an invalid shard map: {exc}"
            )
    sts_replicas = (sts.get("spec") or {}).get("replicas") if sts else None
    member_count = max(
        [spec.replicas, sts_replicas or 0]
        + [(names.ordinal(name, m) or 0) + 1 for m in _members_from_map(current)]
    )

    # 3. runtime RBAC, Services, PDB, peer token: no preconditions
    for obj in builders.runtime_objects(spec, member_count, owner):
        await kube.apply(obj)
    if await provisioning.ensure_peer_token(kube, spec, owner):
        _info(
            body,
            "PeerTokenCreated",
            f"created Secret {names.peer_token_secret(name)} for member-to-member forwarding",
        )

    # 4. Secrets, tables, migration
    secret_problems = await provisioning.check_secrets(kube, spec)
    auth_problem = await _check_auth_secret(kube, spec)
    if auth_problem is not None:
        secret_problems["auth"] = auth_problem
    for purpose, problem in secret_problems.items():
        _warn(body, state, problem.reason, f"{problem} (needed by {_secret_field(spec, purpose)})")
    if not secret_problems:
        _clear_warnings(state, "SecretNotFound")
        _clear_warnings(state, "SecretKeyMissing")

    provisioned = _previous_condition(previous, "Provisioned", generation)
    if "journal" in secret_problems:
        p = secret_problems["journal"]
        provisioned = Condition("Provisioned", "False", p.reason, str(p))
    elif provisioned is None or not provisioned.true:
        # Re-checked once per spec generation (idempotent); an Event only when it changes.
        was = _previous_condition(previous, "Provisioned", None)
        provisioned = await provisioning.provision_tables(kube, spec)
        if provisioned.true:
            _clear_warnings(state, "ProvisioningFailed")
            if was is None or not was.true or was.message != provisioned.message:
                _info(body, "Provisioned", provisioned.message)
        else:
            _warn(body, state, provisioned.reason, provisioned.message)

    migrated_revision = previous.get("migratedRevision")
    # The Migrated condition is the gate of a rollout: the Secret only the runtime pods need (the
    # JWT key of spec.auth) holds it too, with the same reasons, so that the cluster is Failed
    # with a message naming the field instead of pods stuck in ContainerCreating.
    if "readModel" in secret_problems:
        p = secret_problems["readModel"]
        migration = provisioning.MigrationResult(
            Condition("Migrated", "False", p.reason, str(p)), spec.migration_revision()
        )
    elif "auth" in secret_problems:
        p = secret_problems["auth"]
        migration = provisioning.MigrationResult(
            Condition(
                "Migrated", "False", p.reason, f"{p} (needed by {_secret_field(spec, 'auth')})"
            ),
            spec.migration_revision(),
        )
    elif not provisioned.true:
        migration = provisioning.MigrationResult(
            Condition("Migrated", "False", "WaitingForTables", "waiting for the journal tables"),
            spec.migration_revision(),
        )
    else:
        migration = await provisioning.ensure_migration(kube, spec, owner, migrated_revision)
        if migration.created:
            _info(body, "MigrationStarted", f"created migration Job {migration.job}")
        if migration.done and spec.mysql.migrate and migrated_revision != migration.revision:
            migrated_revision = migration.revision
            _info(body, "Migrated", migration.condition.message)
            for job in await provisioning.cleanup_migration_jobs(kube, spec, migration.revision):
                _info(body, "MigrationJobDeleted", f"deleted superseded migration Job {job}")
        elif migration.condition.reason == "JobFailed":
            _warn(body, state, "MigrationFailed", migration.condition.message)
    if not spec.mysql.migrate:
        migrated_revision = None
    can_roll_out = provisioned.true and migration.done and not secret_problems

    # 5. members: Leases and Pods
    now = datetime.now(UTC)
    leases = {
        l["metadata"]["name"]: l
        for l in await kube.list("Lease", namespace)
        if names.ordinal(name, l["metadata"]["name"]) is not None
        or l["metadata"]["name"] in _members_from_map(current)
    }
    pods = {
        p["metadata"]["name"]: p for p in await kube.list("Pod", namespace, label_selector=selector)
    }
    candidates = (
        set(names.members(name, member_count))
        | _members_from_map(current)
        | set(leases)
        | set(pods)
    )
    views = member_views(name, candidates, leases, pods, now)

    # 6. shard map: rebalance / handoff, then RMU supervision
    observed_dead: tuple[str, ...] = ()
    orphaned = reports = 0
    restarted_total = int(previous.get("restartedRmus") or 0)
    decision = None
    if map_error:
        _warn(body, state, "ShardMapInvalid", map_error)
    else:
        pre = (
            supervise(current, views, sts_replicas, time.monotonic(), state.restart_times)
            if current
            else None
        )
        dead = pre.dead if pre else frozenset()
        decision = decide(
            name,
            spec.shards,
            spec.replicas,
            current,
            views,
            dead,
            rolling_update_in_progress(sts),
            spec.max_ranges_per_round,
        )
        new_map = decision.shard_map
        sup = supervise(new_map, views, sts_replicas, time.monotonic(), state.restart_times)
        state.restart_times = dict(sup.restart_times)
        new_map = sup.shard_map
        observed_dead = tuple(sorted(m for m in sup.dead if m in new_map.assignments))
        orphaned, reports = sup.orphaned, sup.reports
        for err in sup.errors:
            _warn(body, state, "MemberStatusInvalid", err)
        if current is None or new_map.dumps() != current.dumps():
            await kube.apply(builders.shardmap_configmap(spec, new_map, owner))
            if decision.action != "steady" and decision.changed:
                _info(body, _event_reason(decision.action), decision.message)
            for member, r in sup.restarted:
                restarted_total += 1
                _info(
                    body,
                    "RmuRestartRequested",
                    f"requested a restart of the read-model updater of shards {r} on {member}",
                )
        if decision.reason == "ShardsMismatch":
            _warn(body, state, "ShardsMismatch", decision.message)
        current = new_map

    # 7. the StatefulSet
    desired_replicas = decision.statefulset_replicas if decision else (sts_replicas or 0)
    if can_roll_out and current is not None:
        if sts is None:
            _info(
                body,
                "StatefulSetCreated",
                f"created StatefulSet {name} with {desired_replicas} replica(s)",
            )
        elif sts_replicas != desired_replicas:
            _info(
                body, "Scaled", f"StatefulSet {name}: replicas {sts_replicas} -> {desired_replicas}"
            )
        elif _template_differs(sts, spec):
            _info(body, "RollingUpdate", f"StatefulSet {name}: rolling out image {spec.image}")
        elif _auth_differs(sts, spec):
            _info(
                body,
                "RollingUpdate",
                f"StatefulSet {name}: rolling out authentication "
                f"{'jwt' if spec.auth.enabled else 'none'}",
            )
        sts = await kube.apply(builders.statefulset(spec, desired_replicas, owner))
    elif sts is not None and sts_replicas != desired_replicas:
        # A new template waits for its migration (and its Secrets); scaling does not.
        sts = await kube.merge_patch(
            "StatefulSet", namespace, name, {"spec": {"replicas": desired_replicas}}
        )
        _info(
            body,
            "Scaled",
            f"StatefulSet {name}: replicas {sts_replicas} -> {desired_replicas} "
            "(a template update waits for the migration)",
        )

    # 8. status
    sts_status = (sts or {}).get("status") or {}
    rebalancing = bool(decision and decision.rebalancing)
    await _write_status(
        kube,
        body,
        state,
        previous,
        Observed(
            generation=generation,
            replicas=spec.replicas,
            provisioned=provisioned,
            migrated=migration.condition,
            statefulset_exists=sts is not None,
            pods=int(sts_status.get("replicas") or 0),
            ready_pods=int(sts_status.get("readyReplicas") or 0),
            epoch=current.epoch if current else None,
            members=current.counts() if current else {},
            rebalancing=rebalancing or bool(map_error),
            rebalance_reason=(
                "ShardMapInvalid" if map_error else decision.reason if decision else "Pending"
            ),
            rebalance_message=(map_error or (decision.message if decision else "")),
            dead=observed_dead,
            orphaned=orphaned,
            rmu_reports=reports,
            restarted_total=restarted_total,
            selector=selector,
            table_prefix=spec.table_prefix,
            migrated_revision=migrated_revision,
        ),
    )


async def _check_auth_secret(kube: Kube, spec: ClusterSpec) -> provisioning.SecretProblem | None:
    """With ``spec.auth.mode: jwt``: the referenced Secret and key exist (the pods mount them)."""
    ref = spec.auth.secret_ref if spec.auth.enabled else None
    if ref is None:
        return None
    try:
        await provisioning.read_secret_key(kube, spec.namespace, ref.name, ref.key)
    except provisioning.SecretProblem as exc:
        return exc
    return None


def _secret_field(spec: ClusterSpec, purpose: str) -> str:
    if purpose == "journal":
        return "spec.journal.dynamodb.credentialsSecret"
    if purpose == "auth":
        return spec.auth.secret_ref_field
    return "spec.readModel.mysql.passwordSecret"


def _event_reason(action: str) -> str:
    return {
        "initialize": "ShardMapInitialized",
        "rebalance": "RebalancePublished",
        "complete-handoff": "HandoffCompleted",
    }.get(action, "ShardMapUpdated")


def _template_differs(sts: Mapping[str, Any], spec: ClusterSpec) -> bool:
    containers = (((sts.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return not containers or containers[0].get("image") != spec.image


def _auth_settings(pod: Mapping[str, Any]) -> tuple[dict[str, Any], Any]:
    """The ``--auth``/``--jwt-*`` variables of the runtime container and the JWT key volume."""
    containers = pod.get("containers") or [{}]
    env = {
        e.get("name"): e.get("value")
        for e in containers[0].get("env") or []
        if isinstance(e, Mapping)
        and str(e.get("name", "")).startswith(("THREADWEAVER_AUTH", "THREADWEAVER_JWT_"))
    }
    volume = next(
        ((v.get("secret") or {}) for v in pod.get("volumes") or [] if v.get("name") == "jwt"), {}
    )
    return env, (volume.get("secretName"), volume.get("items"))


def _auth_differs(sts: Mapping[str, Any], spec: ClusterSpec) -> bool:
    """The StatefulSet's pods have other authentication settings (or key Secret) than the spec's."""
    pod = ((sts.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not pod.get("containers"):
        return False
    return _auth_settings(pod) != _auth_settings(
        builders.statefulset(spec, 0)["spec"]["template"]["spec"]
    )


def _previous_condition(
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


async def _write_status(
    kube: Kube,
    body: Mapping[str, Any],
    state: ClusterState,
    previous: Mapping[str, Any],
    observed: Observed,
) -> None:
    status = build_status(observed, previous)
    comparable = {k: v for k, v in status.items() if k != "conditions"}
    old_comparable = {k: previous.get(k) for k in comparable}
    if comparable == old_comparable and _same_conditions(
        previous.get("conditions"), status["conditions"]
    ):
        state.status = dict(previous)
        return
    patch = dict(status)
    # merge patch: members that left must be removed explicitly
    old_members = previous.get("members") or {}
    patch["members"] = {
        **{m: None for m in old_members if m not in status["members"]},
        **status["members"],
    }
    meta = body["metadata"]
    await kube.merge_patch(
        "ThreadWeaverCluster", meta["namespace"], meta["name"], {"status": patch}, "status"
    )
    if previous.get("phase") != status["phase"]:
        _post(
            body,
            "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal",
            "Phase",
            f"phase {previous.get('phase') or '-'} -> {status['phase']}",
        )
    state.status = status


def _same_conditions(old: Any, new: list[dict[str, Any]]) -> bool:
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
