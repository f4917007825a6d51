"""Shard math and the shard-map protocol shared by the runtime and the operator.

Pure: standard library only, no I/O, no asyncio, no Kubernetes client. The runtime's kube
adapter and the operator's handlers do the reading and writing; this package decides.
"""

from .assignment import Move, assign, limit_moves, plan_moves, target_counts
from .hashing import DEFAULT_SHARDS, shard_of
from .membership import (
    ANNOTATION_ACKED_EPOCH,
    ANNOTATION_ADDRESS,
    ANNOTATION_OWNED_RANGES,
    ANNOTATION_RMUS,
    MembershipError,
    MemberStatus,
    RmuState,
    is_lease_expired,
    lease_name,
    shardmap_configmap_name,
)
from .ranges import RangeSet, ShardRange
from .readmodel import (
    ANNOTATION_READ_MODEL,
    READ_MODEL_KEY,
    ReadModelDirective,
    ReadModelError,
    ReadModelReport,
    database_problem,
)
from .shardmap import SHARDMAP_KEY, Handoff, ShardMap, ShardMapError

__all__ = [
    "ANNOTATION_ACKED_EPOCH",
    "ANNOTATION_ADDRESS",
    "ANNOTATION_OWNED_RANGES",
    "ANNOTATION_READ_MODEL",
    "ANNOTATION_RMUS",
    "DEFAULT_SHARDS",
    "READ_MODEL_KEY",
    "SHARDMAP_KEY",
    "Handoff",
    "MemberStatus",
    "MembershipError",
    "Move",
    "RangeSet",
    "ReadModelDirective",
    "ReadModelError",
    "ReadModelReport",
    "RmuState",
    "ShardMap",
    "ShardMapError",
    "ShardRange",
    "assign",
    "database_problem",
    "is_lease_expired",
    "lease_name",
    "limit_moves",
    "plan_moves",
    "shard_of",
    "shardmap_configmap_name",
    "target_counts",
]
