"""Lease annotations: round trip, tolerance of missing keys, clear errors; names; expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadweaver.shards import (
    ANNOTATION_ACKED_EPOCH,
    ANNOTATION_ADDRESS,
    ANNOTATION_OWNED_RANGES,
    ANNOTATION_READ_MODEL,
    ANNOTATION_RMUS,
    MembershipError,
    MemberStatus,
    RangeSet,
    RmuState,
    ShardRange,
    is_lease_expired,
    lease_name,
    shardmap_configmap_name,
)
from threadweaver.shards.membership import MAX_ERROR_CHARS


def test_annotation_keys_and_names() -> None:
    assert ANNOTATION_ACKED_EPOCH == "threadweaver.io/acked-epoch"
    assert ANNOTATION_OWNED_RANGES == "threadweaver.io/owned-ranges"
    assert ANNOTATION_RMUS == "threadweaver.io/rmus"
    assert ANNOTATION_ADDRESS == "threadweaver.io/address"
    assert lease_name("chat", "chat-runtime-0") == "chat-runtime-0"
    assert shardmap_configmap_name("chat") == "chat-shardmap"


def test_round_trip_example() -> None:
    status = MemberStatus(
        member="pod-0",
        acked_epoch=7,
        owned=RangeSet.parse("0-341,700-800"),
        rmus=(
            RmuState(ShardRange(700, 800), False, 10, 3, 1.5, 2, "boom"),
            RmuState(ShardRange(0, 341), True, offset=123456),
        ),
        address="10.1.2.3:8080",
    )
    annotations = status.to_annotations()
    assert annotations[ANNOTATION_ACKED_EPOCH] == "7"
    assert annotations[ANNOTATION_OWNED_RANGES] == "0-341,700-800"
    assert annotations[ANNOTATION_RMUS].startswith('[{"range":"0-341","running":true')
    assert MemberStatus.from_annotations("pod-0", annotations) == status
    assert [s.range for s in status.stopped_rmus()] == [ShardRange(700, 800)]


def test_missing_annotations_give_defaults() -> None:
    for stored in (None, {}, {ANNOTATION_ADDRESS: ""}):
        status = MemberStatus.from_annotations("pod-1", stored)
        assert (
            status == MemberStatus("pod-1") and status.acked_epoch == 0 and status.address is None
        )
    # Every key is always written so that a merge patch clears stale values.
    assert set(MemberStatus("pod-1").to_annotations()) == {
        ANNOTATION_ACKED_EPOCH,
        ANNOTATION_OWNED_RANGES,
        ANNOTATION_RMUS,
        ANNOTATION_ADDRESS,
        ANNOTATION_READ_MODEL,
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (ANNOTATION_ACKED_EPOCH, "three"),
        (ANNOTATION_ACKED_EPOCH, "-1"),
        (ANNOTATION_OWNED_RANGES, "0-10,x"),
        (ANNOTATION_RMUS, "[{"),
        (ANNOTATION_RMUS, '{"range":"0-1"}'),
        (ANNOTATION_RMUS, '[{"running":true}]'),
        (ANNOTATION_RMUS, '[{"range":"0-1","running":"yes"}]'),
        (ANNOTATION_RMUS, '[{"range":"0-1","running":true,"offset":-5}]'),
        (ANNOTATION_RMUS, '[{"range":"0-1","running":true,"lagSeconds":NaN}]'),
        (ANNOTATION_RMUS, '[{"range":"0-1","running":true,"lastError":42}]'),
    ],
)
def test_malformed_annotations_raise_clear_errors(key: str, value: str) -> None:
    with pytest.raises(MembershipError, match=rf"pod-2.*{key}"):
        MemberStatus.from_annotations("pod-2", {key: value})


def test_long_errors_are_truncated_on_write() -> None:
    status = MemberStatus("p", rmus=(RmuState(ShardRange(0, 1), False, last_error="x" * 10_000),))
    back = MemberStatus.from_annotations("p", status.to_annotations())
    assert back.rmus[0].last_error is not None and len(back.rmus[0].last_error) == MAX_ERROR_CHARS


def test_invalid_status_values() -> None:
    with pytest.raises(ValueError):
        MemberStatus("")
    with pytest.raises(ValueError):
        MemberStatus("p", acked_epoch=-1)
    with pytest.raises(ValueError):
        RmuState(ShardRange(0, 1), True, lag_seconds=-1.0)


def test_lease_expiry() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert not is_lease_expired(now - timedelta(seconds=14), 15, now)
    assert is_lease_expired(now - timedelta(seconds=15), 15, now)
    assert is_lease_expired(None, 15, now)
    # Naive timestamps are UTC, so they compare with aware ones.
    assert not is_lease_expired(datetime(2026, 1, 1, 11, 59, 50), 15, now)
    assert is_lease_expired(
        now.astimezone(timezone(timedelta(hours=9))) - timedelta(seconds=20), 15, now
    )


rmu_states = st.builds(
    RmuState,
    range=st.tuples(st.integers(0, 65535), st.integers(1, 500)).map(
        lambda t: ShardRange(t[0], t[0] + t[1])
    ),
    running=st.booleans(),
    offset=st.integers(0, 2**53),
    lag_events=st.integers(0, 10**9),
    lag_seconds=st.floats(0, 1e6).map(lambda f: round(f, 3)),
    restarts=st.integers(0, 1000),
    last_error=st.none() | st.text(max_size=MAX_ERROR_CHARS),
)


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**31),
    st.lists(st.tuples(st.integers(0, 65535), st.integers(1, 100)), max_size=10),
    st.lists(rmu_states, max_size=8),
    st.none() | st.just("pod-3.chat-runtime.ns.svc:8080"),
)
def test_annotations_round_trip(
    epoch: int, pairs: list[tuple[int, int]], rmus: list[RmuState], address: str | None
) -> None:
    owned = RangeSet.from_ranges((s, s + n) for s, n in pairs)
    status = MemberStatus("pod-3", epoch, owned, tuple(rmus), address)
    annotations = status.to_annotations()
    assert all(isinstance(v, str) for v in annotations.values())
    assert MemberStatus.from_annotations("pod-3", annotations) == status
