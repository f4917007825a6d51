"""The pure parts of the runtime's observability: histograms, outcome labels, the DynamoDB
hooks' classification and the projection-lag tracker's bookkeeping."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from threadweaver.adapters.http.metrics import BUCKETS as HTTP_BUCKETS
from threadweaver.adapters.journal.dynamodb.client import (
    ClientStats,
    ConnectionFailure,
    RetryingClient,
    RetryPolicy,
    ServiceError,
    outcome_of,
)
from threadweaver.adapters.journal.dynamodb.settings import DynamoDBSettings
from threadweaver.application.gateway import ForwardRefused, NotOwner, ShardUnavailable
from threadweaver.application.ports import (
    ConcurrencyConflict,
    JournalError,
    JournalUnavailable,
    StoredEvent,
)
from threadweaver.domain import DomainError, ErrorKind
from threadweaver.observability import lag as lag_module
from threadweaver.observability.histogram import LATENCY_BUCKETS, Histogram, buckets_of_counts
from threadweaver.observability.lag import ProjectionLag
from threadweaver.observability.metrics import (
    APPEND_OUTCOMES,
    COMMAND_OUTCOMES,
    FORWARD_OUTCOMES,
    RUNTIME_METRICS,
)
from threadweaver.observability.recorders import (
    DynamoDBRecorder,
    HandoffRecorder,
    append_outcome,
    command_outcome,
    forward_outcome,
)
from threadweaver.shards import RangeSet, ShardRange


def test_histogram_buckets_are_cumulative_with_le_inclusive():
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 7.0):
        h.observe(v)
    assert h.buckets() == [("0.1", 2), ("1.0", 3), ("+Inf", 4)]
    assert h.count == 4 and h.total == 7.65
    assert buckets_of_counts({1: 3, 2: 1, 9: 2}, (1, 4)) == [("1.0", 3), ("4.0", 4), ("+Inf", 6)]


def test_runtime_latencies_use_the_http_api_buckets():
    # one declaration, in application/stats.py (adapters import the application, not back)
    assert LATENCY_BUCKETS is HTTP_BUCKETS


def test_catalogue_names_follow_the_prometheus_conventions():
    names = [m.name for m in RUNTIME_METRICS]
    assert len(names) == len(set(names))
    for m in RUNTIME_METRICS:
        assert m.name.startswith("threadweaver_"), m.name
        assert (m.type == "counter") == m.name.endswith("_total"), m.name
        assert not m.name.endswith(("_ms", "_milliseconds")), m.name
        assert m.help.endswith("."), m.name
        if "duration" in m.name:
            assert m.name.endswith("_seconds") and m.type in ("histogram", "summary"), m.name


def test_outcome_labels():
    assert command_outcome(DomainError(ErrorKind.CONFLICT, "no")) == "rejected"
    assert command_outcome(ShardUnavailable("moving")) == "unavailable"
    assert command_outcome(NotOwner("b", None)) == "unavailable"
    assert command_outcome(JournalUnavailable("down")) == "journal_error"
    assert command_outcome(asyncio.CancelledError()) == "timeout"
    assert command_outcome(RuntimeError()) == "error"
    assert forward_outcome(ForwardRefused("x")) == "refused"
    assert forward_outcome(ShardUnavailable("x")) == "unavailable"
    assert forward_outcome(DomainError(ErrorKind.FORBIDDEN, "x")) == "rejected"
    assert forward_outcome(JournalError("x")) == "error"
    assert append_outcome(None) == "ok"
    assert append_outcome(ConcurrencyConflict("p", 3)) == "conflict"
    assert append_outcome(JournalUnavailable("x")) == "unavailable"
    assert append_outcome(asyncio.CancelledError()) == "abandoned"
    assert append_outcome(OSError()) == "error"
    outcomes = {command_outcome(e) for e in (DomainError(ErrorKind.CONFLICT, ""), OSError())}
    assert outcomes <= set(COMMAND_OUTCOMES)
    assert {"refused", "ok"} <= set(FORWARD_OUTCOMES) and "conflict" in APPEND_OUTCOMES


def test_dynamodb_answers_are_classified():
    assert outcome_of(ServiceError("ProvisionedThroughputExceededException", "", 400)) == (
        "throttled"
    )
    assert outcome_of(ServiceError("ThrottlingException", "", 400)) == "throttled"
    assert outcome_of(ServiceError("ConditionalCheckFailedException", "", 400)) == (
        "conditional_check_failed"
    )
    cancelled = ServiceError(
        "TransactionCanceledException", "", 400, ["None", "ConditionalCheckFailed"]
    )
    assert outcome_of(cancelled) == "conditional_check_failed"
    throttled = ServiceError("TransactionCanceledException", "", 400, ["ThrottlingError"])
    assert outcome_of(throttled) == "throttled"
    assert outcome_of(ServiceError("InternalServerError", "", 500)) == "error"
    assert outcome_of(ConnectionFailure("reset")) == "error"


async def test_the_dynamodb_client_reports_each_try_by_operation_and_outcome():
    class Transport:  # a throttled PutItem, then an ok one; a Query that loses its connection
        def __init__(self) -> None:
            self.answers = [ServiceError("ThrottlingException", "slow down", 400), {}]

        async def send(self, operation: str, params: dict) -> dict:
            if operation == "Query":
                raise ConnectionFailure("reset")
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

    rec = DynamoDBRecorder()
    stats = ClientStats(observer=rec.done)
    client = RetryingClient(
        Transport(), DynamoDBSettings(), RetryPolicy(max_attempts=2, base_delay=0.0), stats
    )
    assert await client.call("PutItem", {"TableName": "t"}) == {}
    with pytest.raises(JournalUnavailable):
        await client.call("Query", {"TableName": "t"})
    assert rec.requests == {
        ("PutItem", "throttled"): 1,
        ("PutItem", "ok"): 1,
        ("Query", "error"): 2,
    }
    assert rec.duration["PutItem"].count == 2 and rec.duration["Query"].count == 2


def test_a_handoff_is_timed_from_its_first_map_to_its_completion(monkeypatch):
    rec = HandoffRecorder()
    clock = iter([90.0, 100.0, 130.0])
    monkeypatch.setattr("threadweaver.observability.recorders.time.monotonic", lambda: next(clock))
    rec.map_applied(first=True, lost=False, gained=True, in_handoff=False, seconds=0.0)
    rec.map_applied(first=False, lost=True, gained=False, in_handoff=True, seconds=2.0)
    rec.map_applied(first=False, lost=False, gained=False, in_handoff=False, seconds=0.0)
    assert rec.handoffs == {("losing",): 1}
    assert rec.drain.count == 1 and rec.drain.total == 2.0
    assert rec.duration.count == 1 and rec.duration.total == 32.0  # 130 - (100 - 2)


@dataclass
class FakeProjector:
    state: SimpleNamespace = field(
        default_factory=lambda: SimpleNamespace(offset=0, applied_offset=0)
    )


def event(shard: int, offset: int, ts_s: float) -> StoredEvent:
    return StoredEvent("p", 1, shard, "T", {}, int(ts_s * 1e6), offset, "")


def tracker(ranges: list[ShardRange]):
    member = SimpleNamespace(
        serving=RangeSet(tuple(ranges)), projectors={r: FakeProjector() for r in ranges}
    )
    return member, ProjectionLag(member)  # type: ignore[arg-type]


def test_lag_is_the_age_of_the_oldest_unapplied_append_per_range():
    low, high = ShardRange(0, 8), ShardRange(9, 16)
    member, lag = tracker([low, high])
    lag.on_append([event(1, 1, 100.0), event(9, 2, 100.5)])
    lag.on_append([event(2, 3, 101.0)])
    assert lag.lag(low, 0, now=110.0) == (10.0, 2)
    assert lag.lag(high, 0, now=110.0) == (9.5, 1)
    assert lag.lag(low, 1, now=110.0) == (9.0, 1)  # offset 1 applied
    assert lag.lag(low, 3, now=110.0) == (0.0, 0)
    # applied entries are also dropped on the next append (no scrape needed)
    member.projectors[high].state.applied_offset = 2
    lag.on_append([event(10, 4, 120.0)])
    assert len(lag._pending[high].entries) == 1


def test_lag_behind_a_stalled_read_model_is_kept_in_bounded_memory(monkeypatch):
    monkeypatch.setattr(lag_module, "MAX_ENTRIES", 8)
    (rng,) = ranges = [ShardRange(0, 4)]
    _member, lag = tracker(ranges)
    for i in range(1, 101):
        lag.on_append([event(0, i, 1000.0 + i)])
    assert len(lag._pending[rng].entries) <= 8
    seconds, events = lag.lag(rng, 0, now=2000.0)
    assert (seconds, events) == (999.0, 100)  # the oldest write time is kept exactly
    seconds, events = lag.lag(rng, 100, now=2000.0)
    assert (seconds, events) == (0.0, 0)


def test_lag_forgets_ranges_no_longer_served():
    a, b = ShardRange(0, 8), ShardRange(9, 16)
    member, lag = tracker([a, b])
    lag.on_append([event(9, 1, 1.0)])
    member.serving = RangeSet((a,))
    lag.on_append([event(9, 2, 2.0), event(3, 3, 3.0)])
    assert b not in lag._pending and lag.lag(a, 0, now=4.0) == (1.0, 1)
