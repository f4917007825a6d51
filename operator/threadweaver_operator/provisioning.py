"""Provisioning: the DynamoDB journal tables of a cluster.

DynamoDB tables are created and deleted with the runtime's own functions
(``threadweaver.adapters.journal.dynamodb.tables.create_tables``/``delete_tables``), with the
credentials read from the cluster's Secret through the Kubernetes API (the operator never
mounts user Secrets): the pass reads the Secret once (:mod:`.secret_refs`) and hands it over.
Creating the tables can take up to :data:`PROVISION_TIMEOUT_SECONDS`, so a pass runs it outside
the cluster's lock (:class:`~.state.TableProvisioning`). :func:`provision_tables` returns a
:class:`~.status.Condition` and never raises for a problem the user must fix.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .secret_refs import SecretProblem, Secrets, secret_value
from .spec import ClusterSpec
from .status import Condition

__all__ = [
    "PROVISION_TIMEOUT_SECONDS",
    "delete_tables",
    "dynamodb_settings",
    "external_tables",
    "provision_tables",
    "table_names",
]

log = logging.getLogger(__name__)

PROVISION_TIMEOUT_SECONDS = 120.0


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


def dynamodb_settings(spec: ClusterSpec, secrets: Secrets) -> Any:
    """The runtime's ``DynamoDBSettings`` for this cluster, credentials from the Secret."""
    from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings

    d = spec.dynamodb
    kwargs: dict[str, Any] = {"region": d.region, "table_prefix": spec.table_prefix}
    if d.endpoint:
        kwargs["endpoint_url"] = in_cluster_namespace(d.endpoint, spec.namespace)
    if d.credentials_secret:
        kwargs["access_key_id"] = secret_value(
            secrets, spec.namespace, d.credentials_secret, d.access_key_id_key
        )
        kwargs["secret_access_key"] = secret_value(
            secrets, spec.namespace, d.credentials_secret, d.secret_access_key_key
        )
    return DynamoDBSettings(**kwargs)


def table_names(spec: ClusterSpec) -> list[str]:
    return [f"{spec.table_prefix}-journal", f"{spec.table_prefix}-snapshot"]


def external_tables(spec: ClusterSpec) -> Condition:
    """The Provisioned condition with ``createTables: false`` (nothing to do)."""
    return Condition(
        "Provisioned",
        "True",
        "External",
        f"createTables is false: tables {', '.join(table_names(spec))} are managed outside",
    )


async def provision_tables(spec: ClusterSpec, secrets: Secrets) -> Condition:
    """Create the journal tables if asked to (idempotent); a Condition of type Provisioned."""
    if not spec.dynamodb.create_tables:
        return external_tables(spec)
    try:
        settings = dynamodb_settings(spec, secrets)
    except SecretProblem as exc:
        return Condition("Provisioned", "False", exc.reason, str(exc))
    from threadweaver.adapters.journal.dynamodb.tables import create_tables

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


async def delete_tables(spec: ClusterSpec, secrets: Secrets) -> list[str]:
    """Delete the journal tables (deletionPolicy Delete). Raises on failure (caller retries)."""
    from threadweaver.adapters.journal.dynamodb.tables import delete_tables as _delete

    settings = dynamodb_settings(spec, secrets)
    deleted = await asyncio.wait_for(_delete(settings), PROVISION_TIMEOUT_SECONDS)
    return list(deleted)
