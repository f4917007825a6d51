"""Provisioning: the DynamoDB tables, the Secrets the pods need, the migration Job.

DynamoDB tables are created and deleted with the runtime's own functions
(``threadweaver.adapters.journal.dynamodb_tables.create_tables``/``delete_tables``), with the
credentials read from the cluster's Secret through the Kubernetes API (the operator never
mounts user Secrets). Each function returns a :class:`~.status.Condition`; none raises for a
problem the user must fix (missing Secret, failed Job): those become conditions and Events.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import builders, names
from .kube import Kube, KubeError
from .spec import ClusterSpec
from .status import Condition

__all__ = [
    "PEER_TOKEN_KEY",
    "MigrationResult",
    "SecretProblem",
    "check_secrets",
    "delete_tables",
    "dynamodb_settings",
    "ensure_migration",
    "ensure_peer_token",
    "provision_tables",
    "read_secret_key",
]

log = logging.getLogger(__name__)

PROVISION_TIMEOUT_SECONDS = 120.0
PEER_TOKEN_KEY = "token"


class SecretProblem(Exception):
    """A referenced Secret or key is missing: ``reason`` is SecretNotFound or SecretKeyMissing."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def read_secret_key(kube: Kube, namespace: str, name: str, key: str) -> str:
    secret = await kube.get("Secret", namespace, name)
    if secret is None:
        raise SecretProblem("SecretNotFound", f"Secret {namespace}/{name} not found")
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    raise SecretProblem("SecretKeyMissing", f"Secret {namespace}/{name} has no key {key!r}")


async def check_secrets(kube: Kube, spec: ClusterSpec) -> dict[str, SecretProblem]:
    """Problems with the referenced Secrets, keyed by purpose ``journal`` / ``readModel``."""
    out: dict[str, SecretProblem] = {}
    d, m = spec.dynamodb, spec.mysql
    checks: list[tuple[str, str, list[str]]] = []
    if d.credentials_secret:
        checks.append(
            ("journal", d.credentials_secret, [d.access_key_id_key, d.secret_access_key_key])
        )
    if m.password_secret:
        checks.append(("readModel", m.password_secret, [m.password_key]))
    for purpose, name, keys in checks:
        try:
            for key in keys:
                await read_secret_key(kube, spec.namespace, name, key)
        except SecretProblem as exc:
            out[purpose] = exc
    return out


def in_cluster_namespace(url: str, namespace: str) -> str:
    """``url`` with a one-label host (``http://dynalite:8000``, a Service of the cluster's own
    namespace, as the pods resolve it) qualified as ``<host>.<namespace>.svc``: the operator's
    pod resolves short names in its own namespace."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or "." in host or ":" in host or host == "localhost":
        return url
    netloc = parts.netloc.replace(host, f"{host}.{namespace}.svc", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def dynamodb_settings(kube: Kube, spec: ClusterSpec) -> Any:
    """The runtime's ``DynamoDBSettings`` for this cluster, credentials from the Secret."""
    from threadweaver.adapters.journal.dynamodb import DynamoDBSettings

    d = spec.dynamodb
    kwargs: dict[str, Any] = {"region": d.region, "table_prefix": spec.table_prefix}
    if d.endpoint:
        kwargs["endpoint_url"] = in_cluster_namespace(d.endpoint, spec.namespace)
    if d.credentials_secret:
        kwargs["access_key_id"] = await read_secret_key(
            kube, spec.namespace, d.credentials_secret, d.access_key_id_key
        )
        kwargs["secret_access_key"] = await read_secret_key(
            kube, spec.namespace, d.credentials_secret, d.secret_access_key_key
        )
    return DynamoDBSettings(**kwargs)


def table_names(spec: ClusterSpec) -> list[str]:
    return [f"{spec.table_prefix}-journal", f"{spec.table_prefix}-snapshot"]


async def provision_tables(kube: Kube, spec: ClusterSpec) -> Condition:
    """Create the journal tables if asked to (idempotent); a Condition of type Provisioned."""
    if not spec.dynamodb.create_tables:
        return Condition(
            "Provisioned",
            "True",
            "External",
            f"createTables is false: tables {', '.join(table_names(spec))} are managed outside",
        )
    try:
        settings = await dynamodb_settings(kube, spec)
    except SecretProblem as exc:
        return Condition("Provisioned", "False", exc.reason, str(exc))
    from threadweaver.adapters.journal.dynamodb_tables import create_tables

    d = spec.dynamodb
    try:
        created = await asyncio.wait_for(
            create_tables(
                settings,
                billing_mode=d.billing_mode,
                read_capacity=d.read_capacity,
                write_capacity=d.write_capacity,
                wait=True,
            ),
            PROVISION_TIMEOUT_SECONDS,
        )
    except TimeoutError:
        return Condition(
            "Provisioned",
            "False",
            "ProvisioningTimeout",
            f"tables not ACTIVE after {PROVISION_TIMEOUT_SECONDS:.0f}s",
        )
    except Exception as exc:  # botocore/aiohttp errors: unreachable endpoint, bad credentials, ...
        log.warning("create_tables failed for %s/%s: %s", spec.namespace, spec.name, exc)
        return Condition(
            "Provisioned", "False", "ProvisioningFailed", f"{type(exc).__name__}: {exc}"[:500]
        )
    shown = ", ".join(created) if created else ", ".join(table_names(spec))
    return Condition("Provisioned", "True", "TablesReady", f"DynamoDB tables ready: {shown}")


async def delete_tables(kube: Kube, spec: ClusterSpec) -> list[str]:
    """Delete the journal tables (deletionPolicy Delete). Raises on failure (caller retries)."""
    from threadweaver.adapters.journal.dynamodb_tables import delete_tables as _delete

    settings = await dynamodb_settings(kube, spec)
    deleted = await asyncio.wait_for(_delete(settings), PROVISION_TIMEOUT_SECONDS)
    return list(deleted)


# -- migration Job --------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationResult:
    condition: Condition
    revision: str
    job: str | None = None
    created: bool = False  # the Job was created by this call

    @property
    def done(self) -> bool:
        return self.condition.true


def job_state(job: Mapping[str, Any]) -> tuple[str, str]:
    """``("Succeeded"|"Failed"|"Running", message)`` of a Job object."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded", cond.get("message") or "completed"
        if cond.get("type") in ("Failed", "FailureTarget"):
            return "Failed", cond.get("message") or cond.get("reason") or "failed"
    if (status.get("succeeded") or 0) >= 1:
        return "Succeeded", "completed"
    return (
        "Running",
        f"active {status.get('active') or 0}, failed attempts {status.get('failed') or 0}",
    )


async def ensure_migration(
    kube: Kube, spec: ClusterSpec, owner: Mapping[str, Any] | None, migrated_revision: str | None
) -> MigrationResult:
    """Run ``threadweaver migrate`` once per migration revision; a Condition of type Migrated.

    ``migrated_revision`` is ``status.migratedRevision``: when it matches, the Job may already be
    gone (``ttlSecondsAfterFinished``) and is not recreated. A failed Job is left for inspection;
    delete it to retry (the next reconcile creates it again).
    """
    revision = spec.migration_revision()
    if not spec.mysql.migrate:
        return MigrationResult(
            Condition(
                "Migrated", "True", "Disabled", "migrate is false: the schema is managed outside"
            ),
            revision,
        )
    job_name = names.migration_job(spec.name, revision)
    if migrated_revision == revision:
        return MigrationResult(
            Condition("Migrated", "True", "JobSucceeded", f"migration Job {job_name} succeeded"),
            revision,
            job_name,
        )
    job = await kube.get("Job", spec.namespace, job_name)
    created = False
    if job is None:
        try:
            job = await kube.create(builders.migration_job(spec, owner))
            created = True
        except KubeError as exc:
            if exc.status != 409:
                raise
            job = await kube.get("Job", spec.namespace, job_name) or {}
    state, message = job_state(job)
    if state == "Succeeded":
        return MigrationResult(
            Condition("Migrated", "True", "JobSucceeded", f"migration Job {job_name} succeeded"),
            revision,
            job_name,
            created,
        )
    if state == "Failed":
        return MigrationResult(
            Condition(
                "Migrated",
                "False",
                "JobFailed",
                f"migration Job {job_name} failed: {message}; see its pods' logs, "
                "fix the read model and delete the Job to retry",
            ),
            revision,
            job_name,
            created,
        )
    return MigrationResult(
        Condition("Migrated", "False", "JobRunning", f"migration Job {job_name}: {message}"),
        revision,
        job_name,
        created,
    )


async def cleanup_migration_jobs(kube: Kube, spec: ClusterSpec, keep_revision: str) -> list[str]:
    """Delete finished migration Jobs of older revisions (after the current one succeeded)."""
    selector = ",".join(
        f"{k}={v}" for k, v in names.selector_labels(spec.name, "migration").items()
    )
    removed = []
    for job in await kube.list("Job", spec.namespace, label_selector=selector):
        labels = (job.get("metadata") or {}).get("labels") or {}
        if labels.get(builders.MIGRATION_REVISION_LABEL) == keep_revision:
            continue
        if job_state(job)[0] == "Running":
            continue
        name = job["metadata"]["name"]
        if await kube.delete("Job", spec.namespace, name):
            removed.append(name)
    return removed


async def ensure_peer_token(kube: Kube, spec: ClusterSpec, owner: Mapping[str, Any] | None) -> bool:
    """Create the Secret with the members' shared forwarding token once (never rotated by the
    operator: delete the Secret and restart the pods to rotate). True when created now."""
    name = names.peer_token_secret(spec.name)
    if await kube.get("Secret", spec.namespace, name) is not None:
        return False
    try:
        await kube.create(builders.peer_token_secret(spec, _secrets.token_urlsafe(32), owner))
    except KubeError as exc:
        if exc.status != 409:
            raise
        return False
    return True
