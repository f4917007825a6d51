"""Observations of one ThreadWeaverCluster ("team/chat") for the operator's pure planning
step, as a pass would observe them (tests of the planning and of the operator's metrics)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from threadweaver.shards import MemberStatus, ShardMap
from threadweaver_operator import builders
from threadweaver_operator.observation import Observation, read_spec
from threadweaver_operator.status import Condition

NS, C = "team", "chat"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SPEC = {
    "image": "img:1",
    "replicas": 3,
    "shards": 64,
    "journal": {"dynamodb": {"endpoint": "http://ddb:8000", "credentialsSecret": {"name": "aws"}}},
    "readModel": {"mysql": {"host": "db", "passwordSecret": {"name": "mysql"}}},
}
TABLES_READY = Condition("Provisioned", "True", "TablesReady", "ready")


def secret(data: dict[str, str]) -> dict:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def lease(member: str, renewed_ago: float, acked: int = 0) -> dict:
    renew = (NOW - timedelta(seconds=renewed_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {
        "metadata": {
            "name": member,
            "annotations": MemberStatus(member, acked_epoch=acked).to_annotations(),
        },
        "spec": {"holderIdentity": member, "leaseDurationSeconds": 15, "renewTime": renew},
    }


def observation(
    replicas: int = 3, shard_map: ShardMap | None = None, spec: dict | None = None, **fields
) -> Observation:
    raw = {**SPEC, "replicas": replicas, **(spec or {})}
    body = {"metadata": {"name": C, "namespace": NS, "uid": "u", "generation": 1}}
    parsed, problems = read_spec({**body, "spec": raw})
    values = {
        "name": C,
        "namespace": NS,
        "generation": 1,
        "raw_spec": raw,
        "spec": parsed,
        "spec_problems": problems,
        "owner": {"uid": "u"},
        "previous": {},
        "now": NOW,
        "monotonic": 100.0,
        "secrets": {
            "aws": secret({"access-key-id": "a", "secret-access-key": "b"}),
            "mysql": secret({"password": "p"}),
        },
        "peer_token_exists": True,
        "tables": TABLES_READY,
    }
    if shard_map is not None:
        values["shardmap_configmap"] = builders.shardmap_configmap(parsed, shard_map)
    values.update(fields)
    return Observation(**values)
