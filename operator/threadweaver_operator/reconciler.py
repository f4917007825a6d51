"""One reconcile pass of a ThreadWeaverCluster: observe -> plan -> act.

The pass is level-based and idempotent: it derives everything from observed state and the
status, so it is correct after an operator restart from any state.

1. Read the spec and the user Secrets it references (each Secret once).
2. If :func:`~.planning.tables_needed`: create the DynamoDB tables (up to two minutes),
   outside the cluster's lock; a concurrent pass that needs them too waits for the same run
   (:class:`~.state.TableProvisioning`).
3. Under the cluster's lock (passes of one cluster never interleave their decisions and
   writes): :func:`~.observation.observe` the managed objects, Leases and Pods once,
   :func:`~.planning.plan` (pure), :func:`~.acting.act`.

The pass is timed and its failures counted by :mod:`.metrics`, which also records, once
``act`` succeeded, what the pass observed and did.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from . import provisioning
from .acting import act
from .kube import Kube
from .metrics import metrics
from .observation import observe, previous_status, read_spec
from .planning import plan, tables_needed
from .secret_refs import read_secrets
from .state import cluster_state
from .status import Condition

__all__ = ["reconcile"]


async def reconcile(kube: Kube, body: Mapping[str, Any], memo: MutableMapping[str, Any]) -> None:
    """One pass; ``memo`` is the cluster's Kopf memo (its :class:`~.state.ClusterState`)."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    with metrics().reconcile(meta["namespace"], meta["name"]):
        state = cluster_state(memo)
        spec, problems = read_spec(body)
        secrets: dict[str, Any] = {}
        tables: Condition | None = None
        if spec is not None and not problems:
            secrets = await read_secrets(kube, spec.namespace, spec.secret_names())
            generation = meta.get("generation", 0)
            if tables_needed(spec, secrets, previous_status(body, state), generation):
                tables = await state.tables.run(
                    generation, lambda: provisioning.provision_tables(spec, secrets)
                )
        async with state.lock:
            observation = await observe(kube, body, state, spec, problems, secrets, tables)
            steps = plan(observation)
            await act(kube, body, state, steps)
        metrics().pass_done(observation, steps)
