"""The user Secrets a cluster references: read once per pass, then checked and read without
further API calls.

They are the journal's DynamoDB credentials (``spec.journal.dynamodb.credentialsSecret``), the
read-model password (``spec.readModel.mysql.passwordSecret``) and the JWT key of ``spec.auth``.
The operator reads them through the API (it never mounts user Secrets): the credentials to
create and delete the tables, the others only to report a missing Secret or key as a condition
instead of pods stuck in ContainerCreating.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from .kube import Kube
from .spec import ClusterSpec

__all__ = [
    "SecretProblem",
    "Secrets",
    "needed_by",
    "read_secrets",
    "secret_problems",
    "secret_value",
]

Secrets = Mapping[str, Mapping[str, Any] | None]
"""Secret name -> the Secret as the API returned it (None: not found)."""


class SecretProblem(Exception):
    """A referenced Secret or key is missing: ``reason`` is SecretNotFound or SecretKeyMissing."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def read_secrets(kube: Kube, namespace: str, names: Iterable[str]) -> dict[str, Any]:
    """One GET per distinct Secret name."""
    out: dict[str, Any] = {}
    for name in names:
        if name not in out:
            out[name] = await kube.get("Secret", namespace, name)
    return out


def secret_value(secrets: Secrets, namespace: str, name: str, key: str) -> str:
    """The decoded value of ``key`` in the Secret ``name`` of ``secrets`` (raises
    :class:`SecretProblem`)."""
    secret = secrets.get(name)
    if secret is None:
        raise SecretProblem("SecretNotFound", f"Secret {namespace}/{name} not found")
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key]).decode()
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key])
    raise SecretProblem("SecretKeyMissing", f"Secret {namespace}/{name} has no key {key!r}")


def secret_problems(spec: ClusterSpec, secrets: Secrets) -> dict[str, SecretProblem]:
    """Problems with the referenced Secrets, keyed by purpose ``journal`` / ``readModel`` /
    ``auth`` (the first missing key of each)."""
    d, m = spec.dynamodb, spec.mysql
    checks: list[tuple[str, str, list[str]]] = []
    if d.credentials_secret:
        checks.append(
            ("journal", d.credentials_secret, [d.access_key_id_key, d.secret_access_key_key])
        )
    if m.password_secret:
        checks.append(("readModel", m.password_secret, [m.password_key]))
    ref = spec.auth.secret_ref if spec.auth.enabled else None
    if ref is not None:
        checks.append(("auth", ref.name, [ref.key]))
    out: dict[str, SecretProblem] = {}
    for purpose, name, keys in checks:
        try:
            for key in keys:
                secret_value(secrets, spec.namespace, name, key)
        except SecretProblem as exc:
            out[purpose] = exc
    return out


def needed_by(spec: ClusterSpec, purpose: str) -> str:
    """The spec field that references the Secret of ``purpose``, for messages."""
    if purpose == "journal":
        return "spec.journal.dynamodb.credentialsSecret"
    if purpose == "auth":
        return spec.auth.secret_ref_field
    return "spec.readModel.mysql.passwordSecret"
