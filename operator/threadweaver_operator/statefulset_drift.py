"""What of a running StatefulSet differs from the spec in a way that rolls its pods: the
runtime image, or the authentication settings (``--auth``/``--jwt-*`` variables and the JWT
key volume). Pure functions of the StatefulSet and the spec, for planning.py."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import builders
from .spec import ClusterSpec

__all__ = ["auth_differs", "image_differs"]


def image_differs(sts: Mapping[str, Any], spec: ClusterSpec) -> bool:
    """The StatefulSet's pods run another image than the spec's (or it has no container)."""
    containers = (((sts.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []
    return not containers or containers[0].get("image") != spec.image


def _auth_settings(pod: Mapping[str, Any]) -> tuple[dict[Any, Any], Any]:
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


def auth_differs(sts: Mapping[str, Any], spec: ClusterSpec) -> bool:
    """The StatefulSet's pods have other authentication settings (or key Secret) than the spec's."""
    pod = ((sts.get("spec") or {}).get("template") or {}).get("spec") or {}
    if not pod.get("containers"):
        return False
    return _auth_settings(pod) != _auth_settings(
        builders.statefulset(spec, 0)["spec"]["template"]["spec"]
    )
