"""Pure functions from a :class:`ClusterSpec` to the manifests the operator applies.

No I/O: the handlers apply these dicts with server-side apply (field manager
``threadweaver-operator``), so every builder returns the *complete* desired state of the fields
the operator owns. ``owner`` (the cluster's ownerReference, see :func:`owner_reference`) makes
every object garbage-collected with the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadweaver.shards import READ_MODEL_KEY, SHARDMAP_KEY, ReadModelDirective, ShardMap

from . import names
from .spec import ClusterSpec

__all__ = [
    "JWT_HS256_FILE",
    "JWT_JWKS_FILE",
    "JWT_MOUNT",
    "PASSWORD_FILE",
    "PASSWORD_MOUNT",
    "RUNTIME_UID",
    "client_service",
    "headless_service",
    "migration_job",
    "owner_reference",
    "pod_disruption_budget",
    "project_job",
    "role",
    "role_binding",
    "runtime_env",
    "runtime_objects",
    "service_account",
    "shardmap_configmap",
    "statefulset",
]

RUNTIME_UID = 10001
"""The non-root user of the project image (see the Dockerfile)."""
PASSWORD_MOUNT = "/var/run/secrets/threadweaver/read-model"
PASSWORD_FILE = f"{PASSWORD_MOUNT}/password"
PEER_TOKEN_MOUNT = "/var/run/secrets/threadweaver/peer"
PEER_TOKEN_FILE = f"{PEER_TOKEN_MOUNT}/token"
JWT_MOUNT = "/var/run/secrets/threadweaver/jwt"
JWT_HS256_FILE = f"{JWT_MOUNT}/hs256-secret"
JWT_JWKS_FILE = f"{JWT_MOUNT}/jwks.json"
DATA_DIR = "/tmp/threadweaver"
JOB_TTL_SECONDS = 86400
JOB_BACKOFF_LIMIT = 3
JOB_DEADLINE_SECONDS = 900
TERMINATION_GRACE_SECONDS = 30

Owner = Mapping[str, Any] | None


def owner_reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The controller ownerReference pointing at a ThreadWeaverCluster object."""
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", names.API_VERSION),
        "kind": body.get("kind", names.KIND),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(
    spec: ClusterSpec,
    name: str,
    owner: Owner,
    component: str = "runtime",
    extra_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": spec.namespace,
        "labels": {**names.labels(spec.name, component), **(extra_labels or {})},
    }
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    return meta


# -- RBAC of the runtime pods ---------------------------------------------------------------


def service_account(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(spec, names.runtime_account(spec.name), owner),
    }


def role(spec: ClusterSpec, member_count: int, owner: Owner = None) -> dict[str, Any]:
    """Least privilege for the runtime pods of this cluster:

    * read (get/list/watch) the one shard-map ConfigMap, by ``resourceNames``: a watch must use
      ``fieldSelector=metadata.name=<name>-shardmap`` for the API server to authorize it;
    * ``create`` Leases: create cannot be restricted by ``resourceNames`` (the name is not
      known at authorization time), so any Lease *name* in the namespace could be created;
    * get/update/patch/delete only the member Leases ``<name>-0 .. <name>-(member_count-1)``
      (their own, and peers' for reading; delete releases the lease on a clean shutdown);
      no list/watch.
    """
    members = names.members(spec.name, max(member_count, 1))
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(spec, names.runtime_account(spec.name), owner),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [names.shardmap_configmap(spec.name)],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": members,
                "verbs": ["get", "update", "patch", "delete"],
            },
        ],
    }


def role_binding(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    account = names.runtime_account(spec.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(spec, account, owner),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": spec.namespace}],
    }


# -- Services -------------------------------------------------------------------------------


def headless_service(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    """Pod DNS ``<pod>.<name>-headless.<ns>.svc`` for forwarding between members (on the
    ``internal`` port); lists pods before they are Ready (a member must be reachable while it
    takes over its shards)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, names.headless_service(spec.name), owner),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": names.selector_labels(spec.name),
            "ports": [
                {"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "internal",
                    "port": spec.network.internal_port,
                    "targetPort": "internal",
                    "protocol": "TCP",
                },
            ],
        },
    }


def client_service(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(spec, names.client_service(spec.name), owner),
        "spec": {
            "type": spec.service_type,
            "selector": names.selector_labels(spec.name),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


# -- the runtime ----------------------------------------------------------------------------


def _read_model_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    env = [
        {"name": "THREADWEAVER_READ_MODEL", "value": spec.read_model_url()},
        {"name": "THREADWEAVER_LOG_FORMAT", "value": "json"},
        {"name": "THREADWEAVER_DATA_DIR", "value": DATA_DIR},
    ]
    if spec.mysql.password_secret:
        env.append({"name": "THREADWEAVER_READ_MODEL_PASSWORD_FILE", "value": PASSWORD_FILE})
    return env


def runtime_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    """The runtime's environment (every ``threadweaver serve`` flag has a THREADWEAVER_* variable)."""
    env: list[dict[str, Any]] = [
        {
            "name": "THREADWEAVER_NAMESPACE",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        },
        {
            "name": "THREADWEAVER_MEMBER_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {"name": "THREADWEAVER_HOST", "value": "0.0.0.0"},
        {"name": "THREADWEAVER_PORT", "value": str(spec.port)},
        {"name": "THREADWEAVER_CLUSTER", "value": spec.name},
        # member-to-member forwarding on a port of its own (a NetworkPolicy opens it to the
        # cluster's members only, see network_policies.py)
        {"name": "THREADWEAVER_INTERNAL_PORT", "value": str(spec.network.internal_port)},
        {
            "name": "THREADWEAVER_PEER_ADDRESS",
            "value": f"$(THREADWEAVER_MEMBER_NAME).{names.headless_service(spec.name)}."
            f"$(THREADWEAVER_NAMESPACE).svc:{spec.network.internal_port}",
        },
        {
            "name": "THREADWEAVER_PEER_ADDRESS_TEMPLATE",
            "value": f"{{member}}.{names.headless_service(spec.name)}."
            f"$(THREADWEAVER_NAMESPACE).svc:{spec.network.internal_port}",
        },
        {"name": "THREADWEAVER_SHARDS", "value": str(spec.shards)},
        {"name": "THREADWEAVER_PASSIVATE_AFTER", "value": str(spec.passivation_timeout_seconds)},
        {"name": "THREADWEAVER_JOURNAL", "value": spec.journal_url()},
        {"name": "THREADWEAVER_AUTO_MIGRATE", "value": "false"},
        {"name": "THREADWEAVER_PEER_TOKEN_FILE", "value": PEER_TOKEN_FILE},
    ]
    env += _read_model_env(spec)
    env += _aws_env(spec)
    env += _auth_env(spec)
    env += _tracing_env(spec)
    return env


def _tracing_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    """spec.tracing as the runtime's --otel-endpoint / --otel-sample-ratio (none: off)."""
    if not spec.tracing.endpoint:
        return []
    return [
        {"name": "THREADWEAVER_OTEL_ENDPOINT", "value": spec.tracing.endpoint},
        {"name": "THREADWEAVER_OTEL_SAMPLE_RATIO", "value": repr(spec.tracing.sample_ratio)},
    ]


def _auth_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    """``--auth jwt`` and its key file (mounted by :func:`_auth_volume`); nothing with mode
    none, so that clusters without ``spec.auth`` keep their pod template."""
    a = spec.auth
    if not a.enabled:
        return []
    env: list[dict[str, Any]] = [{"name": "THREADWEAVER_AUTH", "value": "jwt"}]
    if a.hs256_secret:
        env.append({"name": "THREADWEAVER_JWT_HS256_SECRET_FILE", "value": JWT_HS256_FILE})
    else:
        env.append({"name": "THREADWEAVER_JWT_JWKS_FILE", "value": JWT_JWKS_FILE})
    if a.issuer:
        env.append({"name": "THREADWEAVER_JWT_ISSUER", "value": a.issuer})
    if a.audience:
        env.append({"name": "THREADWEAVER_JWT_AUDIENCE", "value": a.audience})
    return env


def _auth_volume(spec: ClusterSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The one referenced Secret key as a read-only file under :data:`JWT_MOUNT` (a missing
    Secret or key keeps the pods from starting: the operator checks both before a rollout)."""
    a = spec.auth
    ref = a.secret_ref
    if not a.enabled or ref is None:
        return [], []
    path = (JWT_HS256_FILE if a.hs256_secret else JWT_JWKS_FILE).rsplit("/", 1)[1]
    volume = {
        "name": "jwt",
        "secret": {
            "secretName": ref.name,
            "items": [{"key": ref.key, "path": path}],
            "defaultMode": 0o440,
        },
    }
    return [volume], [{"name": "jwt", "mountPath": JWT_MOUNT, "readOnly": True}]


def _aws_env(spec: ClusterSpec) -> list[dict[str, Any]]:
    d = spec.dynamodb
    env: list[dict[str, Any]] = [
        {"name": "AWS_REGION", "value": d.region},
        {"name": "AWS_DEFAULT_REGION", "value": d.region},
    ]
    if d.credentials_secret:
        env += [
            {
                "name": "AWS_ACCESS_KEY_ID",
                "valueFrom": {
                    "secretKeyRef": {"name": d.credentials_secret, "key": d.access_key_id_key}
                },
            },
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {
                    "secretKeyRef": {"name": d.credentials_secret, "key": d.secret_access_key_key}
                },
            },
        ]
    return env


def _container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _volumes(spec: ClusterSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if spec.mysql.password_secret:
        volumes.append(
            {
                "name": "read-model-password",
                "secret": {
                    "secretName": spec.mysql.password_secret,
                    "items": [{"key": spec.mysql.password_key, "path": "password"}],
                    "defaultMode": 0o440,
                },
            }
        )
        mounts.append(
            {"name": "read-model-password", "mountPath": PASSWORD_MOUNT, "readOnly": True}
        )
    return volumes, mounts


def _container(
    spec: ClusterSpec,
    name: str,
    command: list[str],
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": spec.image,
        "command": command,
        "env": env,
        "volumeMounts": mounts,
        "securityContext": _container_security(),
    }
    if spec.image_pull_policy:
        container["imagePullPolicy"] = spec.image_pull_policy
    if spec.resources:
        container["resources"] = dict(spec.resources)
    return container


def _pod_common(spec: ClusterSpec) -> dict[str, Any]:
    pod: dict[str, Any] = {"securityContext": _pod_security()}
    if spec.node_selector:
        pod["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod["tolerations"] = [dict(t) for t in spec.tolerations]
    return pod


def statefulset(spec: ClusterSpec, replicas: int, owner: Owner = None) -> dict[str, Any]:
    """The runtime members. ``replicas`` comes from the rebalancing decision (during a
    scale-down it stays above ``spec.replicas`` until the leaving members are drained)."""
    volumes, mounts = _volumes(spec)
    volumes.append(
        {
            "name": "peer-token",
            "secret": {
                "secretName": names.peer_token_secret(spec.name),
                "items": [{"key": "token", "path": "token"}],
                "defaultMode": 0o440,
            },
        }
    )
    mounts.append({"name": "peer-token", "mountPath": PEER_TOKEN_MOUNT, "readOnly": True})
    auth_volumes, auth_mounts = _auth_volume(spec)
    volumes += auth_volumes
    mounts += auth_mounts
    container = _container(spec, "runtime", ["threadweaver", "serve"], runtime_env(spec), mounts)
    container["ports"] = [
        {"name": "http", "containerPort": spec.port, "protocol": "TCP"},
        {"name": "internal", "containerPort": spec.network.internal_port, "protocol": "TCP"},
    ]
    container["livenessProbe"] = {
        "httpGet": {"path": "/live", "port": "http"},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 6,
    }
    container["readinessProbe"] = {
        "httpGet": {"path": "/ready", "port": "http"},
        "periodSeconds": 5,
        "timeoutSeconds": 3,
        "failureThreshold": 3,
    }
    container["startupProbe"] = {
        "httpGet": {"path": "/live", "port": "http"},
        "periodSeconds": 2,
        "failureThreshold": 60,
    }
    selector = names.selector_labels(spec.name)
    pod_spec: dict[str, Any] = {
        **_pod_common(spec),
        "serviceAccountName": names.runtime_account(spec.name),
        "automountServiceAccountToken": True,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "containers": [container],
        "volumes": volumes,
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": selector},
                        },
                    }
                ]
            }
        },
    }
    template_meta: dict[str, Any] = {"labels": names.labels(spec.name)}
    if spec.pod_annotations:
        template_meta["annotations"] = dict(spec.pod_annotations)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _meta(spec, names.statefulset(spec.name), owner),
        "spec": {
            "replicas": replicas,
            "serviceName": names.headless_service(spec.name),
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }


def pod_disruption_budget(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, names.pdb(spec.name), owner),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.selector_labels(spec.name)},
        },
    }


MIGRATION_REVISION_LABEL = "threadweaver.io/migration-revision"


def migration_job(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    """``threadweaver migrate`` against the read model, named after :meth:`migration_revision`
    (a Job's template is immutable: a new image or read model gets a new Job)."""
    revision = spec.migration_revision()
    volumes, mounts = _volumes(spec)
    container = _container(
        spec, "migrate", ["threadweaver", "migrate"], _read_model_env(spec), mounts
    )
    name = names.migration_job(spec.name, revision)
    return _job(spec, name, "migration", revision, container, volumes, owner, JOB_DEADLINE_SECONDS)


def _job(
    spec: ClusterSpec,
    name: str,
    component: str,
    revision: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    owner: Owner,
    deadline: int | None,
) -> dict[str, Any]:
    extra = {MIGRATION_REVISION_LABEL: revision}
    job_spec: dict[str, Any] = {
        "backoffLimit": JOB_BACKOFF_LIMIT,
        "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
    }
    if deadline is not None:
        job_spec["activeDeadlineSeconds"] = deadline
    job_spec["template"] = {
        "metadata": {"labels": {**names.labels(spec.name, component), **extra}},
        "spec": {
            **_pod_common(spec),
            "restartPolicy": "Never",
            "serviceAccountName": names.runtime_account(spec.name),
            "automountServiceAccountToken": False,
            "containers": [container],
            "volumes": volumes,
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(spec, name, owner, component, extra),
        "spec": job_spec,
    }


PROJECT_UNTIL_LAG_SECONDS = 1  # the project Job stops once at most this far behind the journal


def project_job(spec: ClusterSpec, owner: Owner = None) -> dict[str, Any]:
    """``threadweaver project`` filling the read model of ``spec`` (a rebuild's target database,
    :meth:`ClusterSpec.with_database`) from the journal, until within a second of its head.
    Named after the target's :meth:`migration_revision`; resumable (its checkpoints are in the
    database), so a retried pod goes on where the last one stopped."""
    revision = spec.migration_revision()
    volumes, mounts = _volumes(spec)
    command = [
        "threadweaver",
        "project",
        "--journal",
        spec.journal_url(),
        "--read-model",
        spec.read_model_url(),
        "--shard-count",
        str(spec.shards),
        "--until-lag",
        str(PROJECT_UNTIL_LAG_SECONDS),
    ]
    container = _container(spec, "project", command, _read_model_env(spec) + _aws_env(spec), mounts)
    name = names.project_job(spec.name, revision)
    return _job(spec, name, "rebuild", revision, container, volumes, owner, None)


def peer_token_secret(spec: ClusterSpec, token: str, owner: Owner = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _meta(spec, names.peer_token_secret(spec.name), owner),
        "stringData": {"token": token},
    }


def shardmap_configmap(
    spec: ClusterSpec,
    shard_map: ShardMap,
    owner: Owner = None,
    read_model: ReadModelDirective | None = None,
) -> dict[str, Any]:
    """The shard map, and beside it the read-model directive of a rebuild (once there is one:
    a cluster that never rebuilt keeps a ConfigMap older members read as before)."""
    data = {SHARDMAP_KEY: shard_map.dumps()}
    if read_model is not None:
        data[READ_MODEL_KEY] = read_model.dumps()
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(spec, names.shardmap_configmap(spec.name), owner, "shardmap"),
        "data": data,
    }


def runtime_objects(
    spec: ClusterSpec, member_count: int, owner: Owner = None
) -> list[dict[str, Any]]:
    """Everything but the StatefulSet, the Job and the shard map, in apply order."""
    return [
        service_account(spec, owner),
        role(spec, member_count, owner),
        role_binding(spec, owner),
        headless_service(spec, owner),
        client_service(spec, owner),
        pod_disruption_budget(spec, owner),
    ]


def env_dict(container: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: value or valueFrom}`` of a container (for tests and debugging)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
