"""The catalogue: every metric family a runtime member exposes on ``GET /metrics``.

One entry per family: its name as a PromQL query names it (counters end in ``_total``), its
type, its labels and its help text. The collectors build their families from these entries
(:func:`family`), so nothing reaches ``/metrics`` that is not listed here; docs/operations.md
("Monitoring") and the drift guard of the dashboard and the alert rules are checked against it.

Conventions (Prometheus): base units (seconds, not milliseconds), ``_total`` for counters,
``_seconds`` for durations, label values from small fixed sets. ``range`` is a served shard
range in its text form ``start-end`` (half-open, as in the shard map); ``type`` is a domain
command class (``CreateThread``, ``AddMessages``, ...); ``operation`` a DynamoDB API name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

MetricType = Literal["counter", "gauge", "histogram", "summary"]

#: ``outcome`` of a command received from a client (``threadweaver_commands_total``).
COMMAND_OUTCOMES = ("ok", "rejected", "unavailable", "journal_error", "timeout", "error")
#: ``outcome`` of a command forwarded to its owner, as the sender saw it.
FORWARD_OUTCOMES = ("ok", "rejected", "refused", "unavailable", "error")
#: ``outcome`` of a journal append.
APPEND_OUTCOMES = ("ok", "conflict", "unavailable", "error", "abandoned")
#: ``outcome`` of one DynamoDB request (one attempt: the journal retries on its own).
DYNAMODB_OUTCOMES = ("ok", "throttled", "conditional_check_failed", "error")
#: ``outcome`` of a read-model query.
QUERY_OUTCOMES = ("ok", "unavailable", "error")
#: ``kind`` of a live event stream: one thread's, or an account's (application/streams.py).
STREAM_KINDS = ("thread", "account")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as queried: counters with _total; histograms/summaries without their suffixes
    type: MetricType
    labels: tuple[str, ...]
    help: str

    @property
    def samples(self) -> tuple[str, ...]:
        """The sample names this family puts in the exposition."""
        if self.type == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        if self.type == "summary":
            return (f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


def _m(name: str, type_: MetricType, labels: tuple[str, ...], help_: str) -> MetricSpec:
    return MetricSpec(name, type_, labels, help_)


RUNTIME_METRICS: tuple[MetricSpec, ...] = (
    # -- HTTP (adapters/http/metrics.py) ---------------------------------------------------
    _m(
        "threadweaver_http_requests_total",
        "counter",
        ("route", "method", "status"),
        "HTTP requests answered, by route template, method and status.",
    ),
    _m(
        "threadweaver_http_request_duration_seconds",
        "histogram",
        ("route",),
        "HTTP request latency by route template.",
    ),
    _m("threadweaver_http_requests_in_flight", "gauge", (), "HTTP requests being handled."),
    # -- commands --------------------------------------------------------------------------
    _m(
        "threadweaver_commands_total",
        "counter",
        ("type", "outcome"),
        "Commands received from clients by this member, by command type and outcome "
        "(ok, rejected, unavailable, journal_error, timeout, error).",
    ),
    _m(
        "threadweaver_command_duration_seconds",
        "histogram",
        ("type",),
        "Time from a client's command reaching the command gateway to its answer, "
        "forwarding included.",
    ),
    # -- forwarding ------------------------------------------------------------------------
    _m(
        "threadweaver_forwarded_commands_total",
        "counter",
        ("outcome",),
        "Commands this member forwarded to the owner of their shard, by outcome (ok, rejected, "
        "refused: the owner did not serve the shard, unavailable: unreachable, error).",
    ),
    _m(
        "threadweaver_forward_duration_seconds",
        "histogram",
        (),
        "Round trip of a forwarded command to its owner.",
    ),
    _m(
        "threadweaver_forwarded_commands_received_total",
        "counter",
        ("outcome",),
        "Commands other members forwarded to this one, by outcome (ok, rejected, "
        "unavailable: refused unrun, journal_error, timeout, error).",
    ),
    # -- journal ---------------------------------------------------------------------------
    _m(
        "threadweaver_journal_appends_total",
        "counter",
        ("outcome",),
        "Journal appends of the entities, by outcome (ok, conflict: another writer had the "
        "sequence number, unavailable, error, abandoned: its caller gave up).",
    ),
    _m(
        "threadweaver_journal_appended_events_total",
        "counter",
        (),
        "Events written by successful journal appends.",
    ),
    _m(
        "threadweaver_journal_append_duration_seconds",
        "histogram",
        (),
        "Time from an append being handed to the journal to it being durable (SQLite: the "
        "wait for its group commit included).",
    ),
    _m(
        "threadweaver_journal_group_commit_appends",
        "histogram",
        (),
        "Appends written per group commit of the SQLite journal (one transaction, one fsync).",
    ),
    _m(
        "threadweaver_journal_retries_total",
        "counter",
        (),
        "DynamoDB requests of the journal retried after throttling, a server error or a lost "
        "connection.",
    ),
    # -- DynamoDB --------------------------------------------------------------------------
    _m(
        "threadweaver_dynamodb_requests_total",
        "counter",
        ("operation", "outcome"),
        "DynamoDB requests (each attempt), by API operation and outcome (ok, throttled, "
        "conditional_check_failed, error).",
    ),
    _m(
        "threadweaver_dynamodb_request_duration_seconds",
        "histogram",
        ("operation",),
        "DynamoDB request latency (each attempt) by API operation.",
    ),
    # -- entities --------------------------------------------------------------------------
    _m("threadweaver_entities_active", "gauge", (), "Entities (threads) in memory."),
    _m(
        "threadweaver_entities_max",
        "gauge",
        (),
        "Entities kept in memory at most (--max-entities); the least recently used go first.",
    ),
    _m(
        "threadweaver_entity_loads_total",
        "counter",
        (),
        "Entities loaded from the journal (snapshot plus replay).",
    ),
    _m(
        "threadweaver_entity_load_duration_seconds",
        "summary",
        (),
        "Time to load an entity: read its snapshot and replay the events after it.",
    ),
    _m(
        "threadweaver_entity_events_replayed_total",
        "counter",
        (),
        "Events replayed while loading entities.",
    ),
    _m(
        "threadweaver_entity_passivations_total",
        "counter",
        (),
        "Entities stopped because they were idle or over --max-entities.",
    ),
    _m(
        "threadweaver_entity_conflicts_total",
        "counter",
        (),
        "Appends that found their sequence number taken (another writer), after which the "
        "entity reloaded and decided again.",
    ),
    _m(
        "threadweaver_entity_snapshots_saved_total",
        "counter",
        (),
        "Entity snapshots written.",
    ),
    _m(
        "threadweaver_entity_idempotent_replays_total",
        "counter",
        (),
        "Retried commands with a known Idempotency-Key answered from the journal.",
    ),
    # -- sharding and handoffs -------------------------------------------------------------
    _m("threadweaver_shard_map_epoch", "gauge", (), "Epoch of the shard map this member applied."),
    _m(
        "threadweaver_shard_map_in_handoff",
        "gauge",
        (),
        "1 while the applied shard map has an incomplete handoff, else 0.",
    ),
    _m("threadweaver_shards_served", "gauge", (), "Shards this member serves."),
    _m(
        "threadweaver_handoffs_total",
        "counter",
        ("role",),
        "Shard maps that took shards from this member (role losing) or gave it shards "
        "(role gaining); the first map is not counted.",
    ),
    _m(
        "threadweaver_handoff_drain_duration_seconds",
        "histogram",
        (),
        "Time a losing member took to give up its ranges: in-flight commands finished, "
        "entities and read-model updaters stopped, epoch acknowledged.",
    ),
    _m(
        "threadweaver_handoff_duration_seconds",
        "histogram",
        (),
        "Time from the first shard map of a handoff to the map completing it, as seen by "
        "this member.",
    ),
    _m(
        "threadweaver_member_lease_held",
        "gauge",
        (),
        "1 while this member holds its Lease (cluster mode only); 0 means it stopped serving "
        "until it renews.",
    ),
    # -- read-model updaters and projection lag -------------------------------------------
    _m(
        "threadweaver_rmu_running",
        "gauge",
        ("range",),
        "1 while the read-model updater of the served range runs, 0 while it is down "
        "(failed, waiting for its restart back-off).",
    ),
    _m(
        "threadweaver_rmu_restarts_total",
        "counter",
        ("range",),
        "Restarts of the read-model updater of the range (after errors, or requested by the "
        "operator).",
    ),
    _m(
        "threadweaver_rmu_events_applied_total",
        "counter",
        ("range",),
        "Events the read-model updater of the range applied to the read model.",
    ),
    _m(
        "threadweaver_rmu_events_skipped_total",
        "counter",
        ("range",),
        "Events the read-model updater of the range read again and skipped (applied before).",
    ),
    _m(
        "threadweaver_projection_lag_seconds",
        "gauge",
        ("range",),
        "Age of the oldest event of the range that is in the journal but not yet in the read "
        "model (0 when caught up); grows while the read model is stalled.",
    ),
    _m(
        "threadweaver_projection_lag_events",
        "gauge",
        ("range",),
        "Events of the range in the journal but not yet in the read model.",
    ),
    # -- read model ------------------------------------------------------------------------
    _m(
        "threadweaver_readmodel_queries_total",
        "counter",
        ("query", "outcome"),
        "Read-model queries by query and outcome (ok, unavailable, error).",
    ),
    _m(
        "threadweaver_readmodel_query_duration_seconds",
        "histogram",
        ("query",),
        "Read-model query latency by query.",
    ),
    _m(
        "threadweaver_readmodel_apply_duration_seconds",
        "histogram",
        (),
        "Time of one read-model transaction applying a batch of projected events.",
    ),
    # -- live streams (application/streams.py) -------------------------------------------
    _m(
        "threadweaver_stream_subscribers",
        "gauge",
        ("kind",),
        "Open event streams on this member, by kind (thread, account).",
    ),
    _m(
        "threadweaver_stream_tails",
        "gauge",
        (),
        "Threads this member keeps a live tail of (one per thread followed, shared by its "
        "subscribers).",
    ),
    _m(
        "threadweaver_stream_events_delivered_total",
        "counter",
        ("kind",),
        "Events written to the event streams of this member, by kind.",
    ),
    _m(
        "threadweaver_stream_events_dropped_total",
        "counter",
        ("kind",),
        "Events a slow consumer's stream ended without (the client resumes from its last "
        "id), by kind.",
    ),
    _m(
        "threadweaver_streams_refused_total",
        "counter",
        (),
        "Streams refused because the account had the most streams allowed open (429).",
    ),
    _m(
        "threadweaver_stream_journal_reads_total",
        "counter",
        (),
        "Journal reads of the live streams (tails opened or filled, catch-ups of resuming "
        "streams); this member's own appends reach its tails without one.",
    ),
    # -- process ---------------------------------------------------------------------------
    _m(
        "threadweaver_build_info",
        "gauge",
        ("version",),
        "Always 1; the runtime's version in the label.",
    ),
)

#: families of prometheus_client's default collectors (process, GC, platform) that the
#: dashboard uses; they are not built from this catalogue.
PROCESS_METRICS: tuple[MetricSpec, ...] = (
    _m("process_cpu_seconds_total", "counter", (), "CPU time of the process."),
    _m("process_resident_memory_bytes", "gauge", (), "Resident memory of the process."),
)

_BY_NAME = {m.name: m for m in RUNTIME_METRICS}


def spec(name: str) -> MetricSpec:
    """The catalogue entry of ``name`` (KeyError for a family not in the catalogue)."""
    return _BY_NAME[name]


def family(name: str) -> Metric:
    """An empty prometheus_client family for the catalogue entry ``name``."""
    m = _BY_NAME[name]
    labels = list(m.labels)
    if m.type == "counter":
        return CounterMetricFamily(m.name, m.help, labels=labels)
    if m.type == "gauge":
        return GaugeMetricFamily(m.name, m.help, labels=labels)
    if m.type == "histogram":
        return HistogramMetricFamily(m.name, m.help, labels=labels)
    return SummaryMetricFamily(m.name, m.help, labels=labels)


def sample_names(metrics: tuple[MetricSpec, ...] = RUNTIME_METRICS) -> Iterator[str]:
    for m in metrics:
        yield from m.samples
