"""Act: carry out a :class:`~.steps.Plan` against the API, in order, and post its Events.

Nothing here decides: a failing write raises (the handler retries the whole pass) and leaves the
later steps undone; what the earlier steps did is observed by the next pass.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from . import builders, events, steps
from .kube import Kube, KubeError
from .state import ClusterState

__all__ = ["act"]


async def act(kube: Kube, body: Mapping[str, Any], state: ClusterState, plan: steps.Plan) -> None:
    for step in plan.steps:
        await _act(kube, body, state, step)


async def _act(kube: Kube, body: Mapping[str, Any], state: ClusterState, step: steps.Step) -> None:
    meta = body["metadata"]
    namespace = meta["namespace"]
    done = True
    match step:
        case steps.Apply(obj=obj):
            await kube.apply(obj)
        case steps.Create(obj=obj):
            done = await _create(kube, obj)
        case steps.CreatePeerToken(spec=spec, owner=owner):
            done = await _create(
                kube, builders.peer_token_secret(spec, secrets.token_urlsafe(32), owner)
            )
        case steps.Delete(kind=kind, name=name):
            done = await kube.delete(kind, namespace, name)
        case steps.ScaleStatefulSet(name=name, replicas=replicas):
            await kube.merge_patch("StatefulSet", namespace, name, {"spec": {"replicas": replicas}})
        case steps.Post(event=event, warning_key=key):
            if key is not None:
                state.warned.add(key)
            events.emit(body, event)
        case steps.ForgetWarnings(reason=reason):
            state.warned = {w for w in state.warned if not w.startswith(reason + ":")}
        case steps.RememberRestarts(times=times):
            state.restart_times = dict(times)
        case steps.WriteStatus(status=status, patch=patch):
            if patch is not None:
                await kube.merge_patch(
                    "ThreadWeaverCluster", namespace, meta["name"], {"status": patch}, "status"
                )
            state.status = dict(status)
    if done:
        for event in getattr(step, "events", ()):
            events.emit(body, event)


async def _create(kube: Kube, obj: Mapping[str, Any]) -> bool:
    """Create ``obj``; False if it exists already (created meanwhile by someone else)."""
    try:
        await kube.create(obj)
    except KubeError as exc:
        if exc.status != 409:
            raise
        return False
    return True
