"""Which shard a persistence id lives in.

The function is part of the on-disk contract (the journal stores the shard of every event and
projections read by shard), so it must never change for an existing cluster: CRC-32 of the UTF-8
bytes modulo the cluster's fixed shard count.
"""

from __future__ import annotations

import zlib

__all__ = ["DEFAULT_SHARDS", "shard_of"]

DEFAULT_SHARDS = 1024
"""Shard count of a cluster that does not choose one; fixed at cluster creation."""


def shard_of(persistence_id: str, shards: int) -> int:
    """Return the shard of ``persistence_id`` in a cluster of ``shards`` shards.

    ``shards`` is required (no default) so that a caller cannot silently hash with the wrong
    count for a cluster created with a non-default one.
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return zlib.crc32(persistence_id.encode("utf-8")) % shards
