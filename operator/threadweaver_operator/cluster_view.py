"""What the rebalancing decision sees of a cluster, from an :class:`~.observation.Observation`:
the published shard map, a view of every member (its Lease and Pod), the dead members, and
the decision under the spec's rebalance policy (:func:`review_cluster`).

Pure. The operator's pass (:mod:`.planning`) and ``kubectl threadweaver rebalance --dry-run``
(which builds the Observation from what the user may read) both call these functions, so the
dry-run shows exactly the moves the operator makes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from threadweaver.shards import SHARDMAP_KEY, ShardMap, ShardMapError

from . import names
from .observation import Observation
from .rebalancing import rolling_update_in_progress
from .review import APPROVE_ANNOTATION, Review, review
from .spec import ClusterSpec
from .supervision import MemberView, dead_members, member_views

__all__ = ["ClusterView", "cluster_view", "members_from_map", "published_map", "review_cluster"]


@dataclass(frozen=True)
class ClusterView:
    current: ShardMap | None  # the published map (None: none yet, or unreadable)
    map_error: str | None  # why the published map is unreadable
    member_count: int  # members the runtime RBAC must cover (pods, the map, spec.replicas)
    statefulset_replicas: int | None
    views: Mapping[str, MemberView]
    dead: frozenset[str]


def published_map(o: Observation) -> tuple[ShardMap | None, str | None]:
    """The shard map in the ConfigMap (None if absent) or why it is unreadable."""
    if o.shardmap_configmap is None:
        return None, None
    try:
        data = o.shardmap_configmap.get("data") or {}
        return ShardMap.from_json(data.get(SHARDMAP_KEY) or ""), None
    except ShardMapError as exc:
        configmap = names.shardmap_configmap(o.name)
        return None, f"ConfigMap {configmap} holds an invalid shard map: {exc}"


def members_from_map(shard_map: ShardMap | None) -> set[str]:
    """Members assigned in the map, and the losing members of its incomplete handoff."""
    if shard_map is None:
        return set()
    out = set(shard_map.assignments)
    if shard_map.in_handoff and shard_map.handoff is not None:
        out |= {m.source for m in shard_map.handoff.moves if m.source}
    return out


def cluster_view(o: Observation, spec: ClusterSpec) -> ClusterView:
    current, map_error = published_map(o)
    sts = o.statefulset
    sts_replicas = (sts.get("spec") or {}).get("replicas") if sts else None
    member_count = max(
        [spec.replicas, sts_replicas or 0]
        + [(names.ordinal(o.name, m) or 0) + 1 for m in members_from_map(current)]
    )
    views = _member_views(o, current, member_count)
    dead = dead_members(views, sts_replicas) if current else frozenset()
    return ClusterView(current, map_error, member_count, sts_replicas, views, dead)


def _member_views(
    o: Observation, current: ShardMap | None, member_count: int
) -> dict[str, MemberView]:
    """Every member the pass must judge: pods, Leases of this cluster, those in the map."""
    mapped = members_from_map(current)
    leases = {
        lease["metadata"]["name"]: lease
        for lease in o.leases
        if names.ordinal(o.name, lease["metadata"]["name"]) is not None
        or lease["metadata"]["name"] in mapped
    }
    pods = {pod["metadata"]["name"]: pod for pod in o.pods}
    candidates = set(names.members(o.name, member_count)) | mapped | set(leases) | set(pods)
    return member_views(o.name, candidates, leases, pods, o.now)


def review_cluster(o: Observation, spec: ClusterSpec, view: ClusterView) -> Review:
    """The rebalancing step of this pass (map readable) under ``spec.rebalance``."""
    previous_plan = o.previous.get("proposedPlan")
    return review(
        o.name,
        spec.shards,
        spec.replicas,
        view.current,
        view.views,
        view.dead,
        rolling_update_in_progress(o.statefulset),
        spec.max_ranges_per_round,
        spec.rebalance_policy,
        o.annotations.get(APPROVE_ANNOTATION),
        previous_plan if isinstance(previous_plan, Mapping) else None,
        o.now,
    )
