"""The finalizer: honour ``spec.deletionPolicy`` before the cluster object goes away.

The children go with the owner (ownerReferences); only the DynamoDB tables need the operator:
with ``Delete`` (and tables the operator created) they are deleted, otherwise kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from . import provisioning
from .events import Event, emit, warn_once
from .kube import Kube, KubeError
from .secret_refs import SecretProblem, read_secrets
from .spec import ClusterSpec, SpecError
from .state import ClusterState

__all__ = ["DELETE_RETRY_SECONDS", "finalize"]

DELETE_RETRY_SECONDS = 15


async def finalize(kube: Kube, body: Mapping[str, Any], state: ClusterState) -> None:
    """Raises :class:`kopf.TemporaryError` while the tables cannot be deleted (Kopf retries)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    state.tables.cancel()  # a table creation still running must not race the deletion
    try:
        await kube.merge_patch(
            "ThreadWeaverCluster", namespace, name, {"status": {"phase": "Deleting"}}, "status"
        )
    except KubeError:
        pass
    try:
        spec = ClusterSpec.from_resource(name, namespace, body.get("spec"))
    except SpecError as exc:
        emit(body, Event("Normal", "Deleted", f"spec unreadable ({exc}): nothing to clean up"))
        return
    tables = ", ".join(provisioning.table_names(spec))
    if spec.deletion_policy != "Delete":
        message = f"deletionPolicy Retain: kept DynamoDB tables {tables} and the read model"
        emit(body, Event("Normal", "TablesRetained", message))
        return
    if not spec.dynamodb.create_tables:
        message = f"createTables is false: the operator does not delete external tables {tables}"
        emit(body, Event("Normal", "TablesRetained", message))
        return
    credentials = [spec.dynamodb.credentials_secret] if spec.dynamodb.credentials_secret else []
    try:
        secrets = await read_secrets(kube, namespace, credentials)
        deleted = await provisioning.delete_tables(spec, secrets)
    except SecretProblem as exc:
        warn_once(body, state.warned, "DeleteTablesFailed", str(exc))
        raise _retry(exc) from exc
    except Exception as exc:
        warn_once(body, state.warned, "DeleteTablesFailed", f"{type(exc).__name__}: {exc}")
        raise _retry(exc) from exc
    message = (
        f"deletionPolicy Delete: deleted DynamoDB tables {', '.join(deleted)}"
        if deleted
        else f"deletionPolicy Delete: tables {tables} did not exist"
    )
    emit(body, Event("Normal", "TablesDeleted", message))


def _retry(exc: Exception) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"cannot delete the tables: {exc}", delay=DELETE_RETRY_SECONDS)
