"""Which read-model database a cluster serves and which it should serve (pure, no I/O).

* The **target** is the spec's: ``spec.readModel.mysql.database``, ``_<token>`` appended with
  ``spec.readModel.rebuild`` (:meth:`ClusterSpec.target_database`).
* The **serving** database is the one the members serve now: the read-model directive's in the
  shard-map ConfigMap once the operator published one (threadweaver.shards.readmodel), else
  the database of the StatefulSet's pod template (a cluster that never rebuilt), else, before
  there is a StatefulSet, the target (nothing serves yet, so nothing to rebuild).

A target other than the serving database is a rebuild (:mod:`.rebuild`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from threadweaver.shards import READ_MODEL_KEY, ReadModelDirective, ReadModelError

from . import names
from .spec import ClusterSpec

__all__ = ["published_directive", "serving_database", "template_database"]


def published_directive(
    configmap: Mapping[str, Any] | None,
) -> tuple[ReadModelDirective | None, str | None]:
    """The directive in the shard-map ConfigMap (None: none yet) or why it is unreadable."""
    raw = ((configmap or {}).get("data") or {}).get(READ_MODEL_KEY)
    if not raw:
        return None, None
    try:
        return ReadModelDirective.from_json(raw), None
    except ReadModelError as exc:
        cm = (configmap or {}).get("metadata", {}).get("name", "the shard-map ConfigMap")
        return None, f"ConfigMap {cm} holds an invalid read-model directive: {exc}"


def template_database(statefulset: Mapping[str, Any] | None) -> str | None:
    """The database of ``THREADWEAVER_READ_MODEL`` in the StatefulSet's pod template."""
    if statefulset is None:
        return None
    pod = ((statefulset.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == "THREADWEAVER_READ_MODEL" and env.get("value"):
                return urlsplit(env["value"]).path.lstrip("/") or None
    return None


def serving_database(
    spec: ClusterSpec,
    directive: ReadModelDirective | None,
    statefulset: Mapping[str, Any] | None,
) -> str:
    """The database the members serve now (see the module docstring)."""
    if directive is not None:
        return directive.serving
    return template_database(statefulset) or spec.target_database()


def rebuild_jobs(spec: ClusterSpec, target: str) -> tuple[str, str]:
    """The names of a rebuild's migration Job and project Job for database ``target``."""
    revision = spec.with_database(target).migration_revision()
    return names.migration_job(spec.name, revision), names.project_job(spec.name, revision)
