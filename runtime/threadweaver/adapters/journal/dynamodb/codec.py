"""Journal and snapshot items <-> events and snapshots (DynamoDB's attribute-value JSON).

Item shapes (see :mod:`.journal` for why there are two):

- single event: ``pid`` (S), ``seq`` (N), ``shard`` (N), ``ts`` (N), ``type`` (S), ``payload``
  (S, JSON), ``writer`` (S, omitted when empty), ``metadata`` (S, JSON: the envelope's, omitted
  when empty);
- batch item (servers without transactions): the same key and ``shard``/``ts``/``writer``, with
  ``last_seq`` (N) and ``batch`` (S, a JSON list of ``[type, payload]``) instead of
  ``type``/``payload``, and ``batch_metadata`` (S, a JSON list of the events' metadata, ``{}``
  for none; omitted when all are empty); its events are seq ``seq`` .. ``last_seq``;
- snapshot: ``pid`` (S), ``seq`` (N), ``ts`` (N), ``state`` (S, JSON), ``boundary_ts`` (N,
  when the writer knew ``seq`` to end a journal item: that item's ``ts``);
- the meta item ``pid = META_PID, seq = 0``: the table's shard count and format version.

Items written before the envelope's metadata existed kept it inside the payload; they are read
through ``event_mapper.from_storage`` like new ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ....application.event_mapper import from_storage
from ....application.ports import NewEvent, Snapshot, StoredEvent

META_PID = "__threadweaver_meta__"
FORMAT_VERSION = 1

# What identifies one write: equal in the stored item and the one a lost response may have put.
_WRITE_ATTRIBUTES = (
    "ts",
    "writer",
    "type",
    "payload",
    "metadata",
    "batch",
    "batch_metadata",
    "last_seq",
)


def number(value: int) -> dict[str, str]:
    return {"N": str(value)}


def string(value: str) -> dict[str, str]:
    return {"S": value}


def event_item(
    pid: str, first: int, shard: int, ts: int, writer: str, events: Sequence[NewEvent]
) -> dict[str, Any]:
    """The item of `events` appended at seq `first`: a single-event item, or a batch item."""
    item: dict[str, Any] = {
        "pid": string(pid),
        "seq": number(first),
        "shard": number(shard),
        "ts": number(ts),
    }
    if len(events) == 1:
        item["type"] = string(events[0].type)
        item["payload"] = string(orjson.dumps(events[0].payload).decode())
        if events[0].metadata:
            item["metadata"] = string(orjson.dumps(events[0].metadata).decode())
    else:
        item["last_seq"] = number(first + len(events) - 1)
        item["batch"] = string(orjson.dumps([[e.type, e.payload] for e in events]).decode())
        if any(e.metadata for e in events):
            item["batch_metadata"] = string(orjson.dumps([e.metadata for e in events]).decode())
    if writer:
        item["writer"] = string(writer)
    return item


def item_events(item: Mapping[str, Any]) -> list[StoredEvent]:
    """The events stored in one journal item (a single event or a batch item)."""
    pid = item["pid"]["S"]
    seq = int(item["seq"]["N"])
    shard = int(item["shard"]["N"])
    ts = int(item["ts"]["N"])
    writer = item.get("writer", {}).get("S", "")
    if "batch" in item:
        batch = orjson.loads(item["batch"]["S"])
        metadata = (
            orjson.loads(item["batch_metadata"]["S"])
            if "batch_metadata" in item
            else [None] * len(batch)
        )
        events = []
        for i, ((kind, raw_payload), raw_metadata) in enumerate(zip(batch, metadata)):
            payload, meta = from_storage(raw_payload, raw_metadata)
            events.append(StoredEvent(pid, seq + i, shard, kind, payload, ts, ts, writer, meta))
        return events
    payload, meta = from_storage(
        orjson.loads(item["payload"]["S"]),
        orjson.loads(item["metadata"]["S"]) if "metadata" in item else None,
    )
    return [StoredEvent(pid, seq, shard, item["type"]["S"], payload, ts, ts, writer, meta)]


def item_last_seq(item: Mapping[str, Any]) -> int:
    if "last_seq" in item:
        return int(item["last_seq"]["N"])
    return int(item["seq"]["N"])


def item_ts(item: Mapping[str, Any]) -> int:
    return int(item["ts"]["N"])


def same_write(stored: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    """Is `stored` (read at `item`'s key) the item we tried to write?"""
    return all(stored.get(k) == item.get(k) for k in _WRITE_ATTRIBUTES)


def event_sort_key(ev: StoredEvent) -> tuple[int, str, int]:
    return ev.offset, ev.pid, ev.seq


def meta_item(shards: int, created: int) -> dict[str, Any]:
    return {
        "pid": string(META_PID),
        "seq": number(0),
        "shards": number(shards),
        "format": number(FORMAT_VERSION),
        "created": number(created),
    }


def meta_key() -> dict[str, Any]:
    return {"pid": string(META_PID), "seq": number(0)}


def meta_shards(item: Mapping[str, Any] | None) -> int | None:
    """The shard count recorded in the meta item (None: no meta item)."""
    if not item or "shards" not in item:
        return None
    return int(item["shards"]["N"])


def snapshot_item(snapshot: Snapshot, ts: int, boundary_ts: int | None = None) -> dict[str, Any]:
    """The snapshot's item; `boundary_ts`: the ts of the journal item ending at its seq, when
    the writer knew its seq to be a boundary (:mod:`.journal`)."""
    item = {
        "pid": string(snapshot.pid),
        "seq": number(snapshot.seq),
        "ts": number(ts),
        "state": string(orjson.dumps(snapshot.state).decode()),
    }
    if boundary_ts is not None:
        item["boundary_ts"] = number(boundary_ts)
    return item


def snapshot_boundary_ts(item: Mapping[str, Any]) -> int | None:
    value = item.get("boundary_ts")
    return int(value["N"]) if value else None


def item_snapshot(item: Mapping[str, Any]) -> Snapshot:
    return Snapshot(
        pid=item["pid"]["S"],
        seq=int(item["seq"]["N"]),
        state=orjson.loads(item["state"]["S"]),
        ts=int(item["ts"]["N"]),
    )
