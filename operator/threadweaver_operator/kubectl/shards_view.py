"""``kubectl threadweaver shards CLUSTER [--thread ID]``: the published shard map, and which
member owns a thread (the shard math of :mod:`threadweaver.shards`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from threadweaver.shards import ShardMap, shard_of

from .tables import table

__all__ = ["THREAD_PID_PREFIX", "render_shards", "shard_table", "thread_owner"]

THREAD_PID_PREFIX = "thread-"
"""The persistence id of a thread is this prefix and its id (threadweaver.domain.ids, which the
operator may not import: tests/unit/operator/test_operator_kubectl.py keeps the two equal)."""


def shard_table(shard_map: ShardMap) -> dict[str, Any]:
    """The map as a JSON-ready dict (``-o json``)."""
    h = shard_map.handoff
    return {
        "epoch": shard_map.epoch,
        "shards": shard_map.shards,
        "handoff": None
        if h is None
        else {
            "epoch": h.epoch,
            "complete": h.complete,
            "moves": [
                {"range": str(m.range), "from": m.source, "to": m.target, "shards": len(m.range)}
                for m in h.moves
            ],
        },
        "members": [
            {
                "member": member,
                "shards": ranges.count(),
                "ranges": str(ranges),
                "serving": str(shard_map.serving_ranges(member)),
                "address": shard_map.address_of(member),
            }
            for member, ranges in shard_map.assignments.items()
        ],
    }


def thread_owner(shard_map: ShardMap, thread_id: str) -> dict[str, Any]:
    """The shard of a thread, its owner, and whether it is moving (nobody serves it then)."""
    shard = shard_of(THREAD_PID_PREFIX + thread_id, shard_map.shards)
    move = shard_map.moving(shard)
    owner = shard_map.owner_of(shard)
    return {
        "thread": thread_id,
        "persistenceId": THREAD_PID_PREFIX + thread_id,
        "shard": shard,
        "owner": owner,
        "servedBy": None if move is not None else owner,
        "moving": None if move is None else {"range": str(move.range), "from": move.source},
        "address": shard_map.address_of(owner) if owner else None,
    }


def render_shards(t: Mapping[str, Any], owner: Mapping[str, Any] | None = None) -> str:
    lines = [f"Epoch: {t['epoch']}   Shards: {t['shards']}"]
    h = t.get("handoff")
    if h:
        state = "complete" if h["complete"] else "in progress: the moving ranges are not served"
        lines.append(f"Handoff of epoch {h['epoch']}: {state}")
    lines.append("")
    lines.append(
        table(
            ["member", "shards", "ranges", "serving", "address"],
            [
                (m["member"], m["shards"], m["ranges"], m["serving"], m["address"])
                for m in t["members"]
            ],
        )
    )
    if h and not h["complete"]:
        lines += ["", "Moving:"]
        lines.append(
            table(
                ["range", "shards", "from", "to"],
                [(m["range"], m["shards"], m["from"], m["to"]) for m in h["moves"]],
            )
        )
    if owner is not None:
        lines.append("")
        if owner["moving"]:
            lines.append(
                f"Thread {owner['thread']}: shard {owner['shard']}, moving from "
                f"{owner['moving']['from'] or 'nobody'} to {owner['owner']} "
                "(not served until the handoff completes)"
            )
        else:
            lines.append(
                f"Thread {owner['thread']}: shard {owner['shard']}, owned by {owner['owner']}"
                + (f" at {owner['address']}" if owner["address"] else "")
            )
    return "\n".join(lines)
