"""Kopf handlers of ThreadWeaverCluster objects: the wiring only.

``kopf run -m threadweaver_operator.handlers`` (or the ``threadweaver-operator`` command).

One :func:`~.reconciler.reconcile` pass does everything (see :mod:`.reconciler`). It runs on
create/update/resume (fast reaction to spec changes) and every :data:`TICK_SECONDS` from a timer
(children's progress: the migration Job, pods, member Leases). The finalizer is
:func:`~.deletion.finalize`.

The API client lives in the operator's memo (set at startup); Kopf hands every cluster a copy
of it, where the cluster's own state is kept (:mod:`.state`).
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import names
from .deletion import finalize
from .kube import Kube, KubeError
from .metrics import metrics
from .reconciler import reconcile
from .state import cluster_state, forget_cluster

__all__ = ["TICK_SECONDS"]

log = logging.getLogger("threadweaver_operator")

TICK_SECONDS = 5.0
RESOURCE = (names.GROUP, names.VERSION, names.PLURAL)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
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
    memo.kube = await Kube.connect()


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    kube: Kube | None = memo.pop("kube", None)
    if kube is not None:
        await kube.close()


@kopf.on.create(*RESOURCE, id="reconcile-on-create")
@kopf.on.update(*RESOURCE, id="reconcile-on-update")
@kopf.on.resume(*RESOURCE, id="reconcile-on-resume")
async def on_change(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    try:
        await reconcile(memo.kube, body, memo)
    except KubeError as exc:
        raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=10) from exc


@kopf.timer(*RESOURCE, id="reconcile-timer", interval=TICK_SECONDS, sharp=False)
async def tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    try:
        await reconcile(memo.kube, body, memo)
    except (TimeoutError, KubeError, OSError) as exc:
        log.warning(
            "%s/%s: reconcile failed (retrying in %ss): %s",
            body.metadata.namespace,
            body.metadata.name,
            TICK_SECONDS,
            exc,
        )


@kopf.on.delete(*RESOURCE, id="finalize")
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Finalizer: honour ``deletionPolicy``; the children go with the owner (ownerReferences)."""
    await finalize(memo.kube, body, cluster_state(memo))
    forget_cluster(memo)
    metrics().forget(body.metadata.namespace or "", body.metadata.name or "")
