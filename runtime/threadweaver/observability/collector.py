"""The runtime's prometheus_client collector: builds the catalogue's families at scrape time.

It reads what the runtime keeps anyway (the command gateway's and the entities' stats objects,
application/stats.py: commands, forwards, journal appends; entity statistics, the entity
count, the applied shard map, each read-model updater's state, the SQLite journal's commit
counters, the DynamoDB journal's retry counter, the Lease) and what the instrumentation
recorded (:mod:`.recorders`). Nothing here runs per command.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric

from .. import __version__
from ..application.streams import StreamStats
from .histogram import BATCH_BUCKETS, Histogram, buckets_of_counts
from .lag import ProjectionLag
from .metrics import (
    APPEND_OUTCOMES,
    COMMAND_OUTCOMES,
    DYNAMODB_OUTCOMES,
    FORWARD_OUTCOMES,
    QUERY_OUTCOMES,
    RUNTIME_METRICS,
    STREAM_KINDS,
    family,
)
from .recorders import Counts, Recorders

if TYPE_CHECKING:
    from ..server import Runtime

#: the families adapters/http/metrics.py builds itself
HTTP_FAMILIES = frozenset(
    {
        "threadweaver_http_requests_total",
        "threadweaver_http_request_duration_seconds",
        "threadweaver_http_requests_in_flight",
    }
)


class RuntimeCollector:
    """The families of one runtime (the latest one :func:`~.install` was given)."""

    def __init__(self, runtime: Runtime, recorders: Recorders, lag: ProjectionLag) -> None:
        self.runtime = runtime
        self.recorders = recorders
        self.lag = lag

    def describe(self) -> list[Metric]:
        return [family(m.name) for m in RUNTIME_METRICS if m.name not in HTTP_FAMILIES]

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Any] = {
            m.name: family(m.name) for m in RUNTIME_METRICS if m.name not in HTTP_FAMILIES
        }
        self._commands(families)
        self._journal(families)
        self._entities(families)
        self._sharding(families)
        self._projections(families)
        self._read_model(families)
        self._streams(families)
        families["threadweaver_build_info"].add_metric([__version__], 1)
        yield from families.values()

    # -- the groups -------------------------------------------------------------------------

    def _commands(self, f: dict[str, Any]) -> None:
        commands = self.runtime.member.command_stats
        forwards = self.runtime.member.forward_stats
        _counts(f["threadweaver_commands_total"], commands.commands, COMMAND_OUTCOMES)
        _histograms(f["threadweaver_command_duration_seconds"], commands.duration)
        _counts(
            f["threadweaver_forwarded_commands_received_total"],
            commands.received,
            COMMAND_OUTCOMES,
            by_outcome_only=True,
        )
        _counts(
            f["threadweaver_forwarded_commands_total"],
            forwards.outcomes,
            FORWARD_OUTCOMES,
            by_outcome_only=True,
        )
        _histogram(f["threadweaver_forward_duration_seconds"], [], forwards.duration)

    def _journal(self, f: dict[str, Any]) -> None:
        rec = self.recorders
        appends = self.runtime.entities.append_stats
        _counts(
            f["threadweaver_journal_appends_total"],
            appends.appends,
            APPEND_OUTCOMES,
            by_outcome_only=True,
        )
        f["threadweaver_journal_appended_events_total"].add_metric([], appends.events)
        _histogram(f["threadweaver_journal_append_duration_seconds"], [], appends.duration)
        journal = self.runtime.journal
        commits = getattr(journal, "commits", None)
        if commits is not None:  # the SQLite journal's group commits
            sizes = getattr(journal, "batch_sizes", None)
            buckets = (
                buckets_of_counts(sizes, BATCH_BUCKETS) if sizes else [("+Inf", float(commits))]
            )
            f["threadweaver_journal_group_commit_appends"].add_metric(
                [], buckets, float(getattr(journal, "appends", 0))
            )
        retries = getattr(journal, "retries", None)
        if retries is not None:  # the DynamoDB journal's retried requests
            f["threadweaver_journal_retries_total"].add_metric([], retries)
        _counts(f["threadweaver_dynamodb_requests_total"], rec.dynamodb.requests, DYNAMODB_OUTCOMES)
        _histograms(f["threadweaver_dynamodb_request_duration_seconds"], rec.dynamodb.duration)

    def _entities(self, f: dict[str, Any]) -> None:
        entities = self.runtime.entities
        stats = entities.stats
        f["threadweaver_entities_active"].add_metric([], len(entities))
        f["threadweaver_entities_max"].add_metric([], entities.settings.max_entities)
        f["threadweaver_entity_loads_total"].add_metric([], stats.loads)
        load_seconds = getattr(stats, "load_seconds", None)
        if load_seconds is not None:
            f["threadweaver_entity_load_duration_seconds"].add_metric([], stats.loads, load_seconds)
        f["threadweaver_entity_events_replayed_total"].add_metric([], stats.events_replayed)
        f["threadweaver_entity_passivations_total"].add_metric([], stats.passivated)
        f["threadweaver_entity_conflicts_total"].add_metric([], stats.conflicts)
        f["threadweaver_entity_snapshots_saved_total"].add_metric([], stats.snapshots_saved)
        f["threadweaver_entity_idempotent_replays_total"].add_metric([], stats.idempotent_replays)

    def _sharding(self, f: dict[str, Any]) -> None:
        member = self.runtime.member
        shard_map = member.map
        if shard_map is not None:
            f["threadweaver_shard_map_epoch"].add_metric([], shard_map.epoch)
            f["threadweaver_shard_map_in_handoff"].add_metric([], int(shard_map.in_handoff))
        f["threadweaver_shards_served"].add_metric([], member.serving.count())
        rec = self.recorders.handoffs
        handoffs = f["threadweaver_handoffs_total"]
        for role in ("losing", "gaining"):
            handoffs.add_metric([role], rec.handoffs.get((role,), 0))
        _histogram(f["threadweaver_handoff_drain_duration_seconds"], [], rec.drain)
        _histogram(f["threadweaver_handoff_duration_seconds"], [], rec.duration)
        lease = self.runtime.lease
        if lease is not None:
            f["threadweaver_member_lease_held"].add_metric([], int(lease.is_held()))

    def _projections(self, f: dict[str, Any]) -> None:
        now = time.time()
        for rng, projector in sorted(self.runtime.member.projectors.items()):
            label = [str(rng)]
            state = projector.state
            f["threadweaver_rmu_running"].add_metric(
                label, int(projector.is_alive and state.running)
            )
            f["threadweaver_rmu_restarts_total"].add_metric(label, state.restarts)
            f["threadweaver_rmu_events_applied_total"].add_metric(label, state.applied)
            f["threadweaver_rmu_events_skipped_total"].add_metric(label, state.skipped)
            seconds, events = self.lag.of(rng, state, now)
            f["threadweaver_projection_lag_seconds"].add_metric(label, seconds)
            f["threadweaver_projection_lag_events"].add_metric(label, events)

    def _read_model(self, f: dict[str, Any]) -> None:
        rec = self.recorders.queries
        _counts(f["threadweaver_readmodel_queries_total"], rec.queries, QUERY_OUTCOMES)
        _histograms(f["threadweaver_readmodel_query_duration_seconds"], rec.duration)
        _histogram(f["threadweaver_readmodel_apply_duration_seconds"], [], rec.apply)

    def _streams(self, f: dict[str, Any]) -> None:
        hub = getattr(self.runtime, "streams", None)  # None: a runtime without live streams
        stats = hub.stats if hub is not None else StreamStats()
        for kind in STREAM_KINDS:
            f["threadweaver_stream_subscribers"].add_metric([kind], stats.subscribers[kind])
            f["threadweaver_stream_events_delivered_total"].add_metric(
                [kind], stats.delivered[kind]
            )
            f["threadweaver_stream_events_dropped_total"].add_metric([kind], stats.dropped[kind])
        f["threadweaver_stream_tails"].add_metric([], len(hub) if hub is not None else 0)
        f["threadweaver_streams_refused_total"].add_metric([], stats.refused)
        f["threadweaver_stream_journal_reads_total"].add_metric([], stats.journal_reads)


def _counts(
    fam: Any, counts: Counts, outcomes: tuple[str, ...], by_outcome_only: bool = False
) -> None:
    """The counts, with every outcome (the last label) of each key seen, 0 if never counted: a
    query for one outcome finds a series before the first such event. A family labelled by
    outcome only has all of them from the start."""
    prefixes = {labels[:-1] for labels in counts}
    if by_outcome_only:
        prefixes.add(())
    for prefix in sorted(prefixes):
        for outcome in outcomes:
            fam.add_metric([*prefix, outcome], counts.get((*prefix, outcome), 0))
    for labels, value in list(counts.items()):
        if labels[-1] not in outcomes:
            fam.add_metric(list(labels), value)


def _histogram(fam: Any, labels: list[str], h: Histogram) -> None:
    fam.add_metric(labels, h.buckets(), h.total)


def _histograms(fam: Any, histograms: dict[str, Histogram]) -> None:
    for label, h in list(histograms.items()):
        _histogram(fam, [label], h)
