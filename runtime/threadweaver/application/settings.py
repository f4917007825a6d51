"""Settings of the application's subsystems (entities, read-model updaters), and `setting`, the
declaration every settings dataclass of the runtime uses for a field that can be configured.

A configurable field is declared once, in its subsystem's frozen dataclass: its default, its
help text and, when it differs from the field's name, the name it is configured by. The runtime's
configuration (threadweaver.config) collects these dataclasses into one `Settings`, and the
command line derives each field's flag (`--NAME`), environment variable (`THREADWEAVER_NAME`)
and help from the declaration. Fields declared without `setting` are not configurable from
outside (code that builds the dataclass sets them, e.g. tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from typing import Any

#: key of a field's `Setting` in its `dataclasses.Field.metadata`
SETTING = "threadweaver.setting"


@dataclass(frozen=True, slots=True)
class Setting:
    """How a field is configured (see `setting`)."""

    help: str
    name: str = ""  # the option's name, e.g. "log-level"; empty: the field's name, dashed
    value_type: type | None = None  # what a value is parsed as; None: the default's type
    choices: tuple[str, ...] | None = None
    # The default depends on other settings (config.Settings.resolved fills it in; the help
    # text says how): the command line does not show the declared default, a placeholder.
    derived: bool = False
    commands: tuple[str, ...] = ()  # the only commands that take it; empty: all of its group's


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    default_factory: Callable[[], Any] | Any = MISSING,
    name: str = "",
    value_type: type | None = None,
    choices: tuple[str, ...] | None = None,
    derived: bool = False,
    commands: tuple[str, ...] = (),
) -> Any:
    """A dataclass field that can be configured: `dataclasses.field` plus its `Setting`."""
    metadata = {SETTING: Setting(help, name, value_type, choices, derived, commands)}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True)
class EntitySettings:
    """The entities (thread aggregates in memory) of application/entities.py."""

    # A snapshot costs O(size) on the event loop, so a big thread's stays O(1) per event
    # amortised while its replay stays bounded (at most size/10 events after the snapshot).
    snapshot_every: int = setting(
        100, "events between snapshots of an aggregate, at least a tenth of its size (0: never)"
    )
    passivate_after: float = setting(120.0, "seconds an idle aggregate stays in memory")
    # beyond it the least recently used entity is passivated
    max_entities: int = setting(100_000, "aggregates kept in memory at most")
    max_conflict_retries: int = 3
    idempotency_keys: int = setting(
        1000,
        "Idempotency-Keys remembered per thread, most recent first (0: the header is ignored)",
    )
    # measured on the journal's write time of the key's events
    idempotency_window: float = setting(86_400.0, "seconds an Idempotency-Key is remembered")

    def snapshot_due(self, events_since: int, state_size: int) -> bool:
        every = self.snapshot_every
        return every > 0 and events_since >= max(every, state_size // 10)


@dataclass(frozen=True, slots=True)
class ProjectorSettings:
    """The read-model updaters of application/projector.py."""

    batch_size: int = setting(
        500, "events per read-model transaction", name="projection-batch-size"
    )
    # The runtime's configuration chooses the interval from the journal when it is not set
    # (config.Settings.resolved). A poll is one query whatever the number of shards (DynamoDB:
    # of the writers' change notes), plus reads of the shards other writers appended to.
    poll_interval: float = setting(
        1.0,
        "seconds between a read-model updater's polls for other writers' appends (default: 1)",
        name="projection-poll-interval",
        derived=True,
    )
    sweep_chunk: int = 64  # shards per read of a catch-up; the process's own appends go between
    # Every shard is read once per period after its checkpoint minus the slack, one at a time:
    # the last resort for a writer that announces nothing (1024 shards: 1.1 queries a second).
    backstop_period: float = 900.0
    # After a push wakes the RMU, it waits this long for more appends before reading: under load
    # one read and one transaction then carry many group commits instead of a few events each.
    coalesce: float = 0.005
    min_backoff: float = 0.2
    max_backoff: float = 5.0  # bounds the catch-up delay after an outage
    # A thread's event after a gap is held this long for the missing one to arrive by itself
    # before the RMU reads the thread's missing events from the journal (then backing off).
    repair_after: float = 0.1
    repairs_per_round: int = 16  # thread reads at most per round of the loop
    known_threads: int = 65_536  # threads whose applied seq an RMU remembers (LRU)
    # Appends of this process an RMU queues at most (a read-model outage): beyond, the queue is
    # dropped and its shards are read from the journal instead.
    max_queued: int = 20_000
    # Where an index is eventually consistent (a journal with offset_slack), what an RMU reads
    # because it was told of it (a dropped queue, another writer's append) is read again this
    # much later, once the index shows it.
    settle: float = 1.0


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """Live event streams (application/streams.py) and read-your-writes waits
    (application/read_your_writes.py)."""

    # Events a thread's tail keeps in memory, shared by its subscribers: a subscriber further
    # behind than this is a slow consumer whose stream ends (it resumes from its last id).
    stream_buffer: int = setting(
        256, "events of a thread kept in memory for its live subscribers (the slow-consumer bound)"
    )
    stream_heartbeat: float = setting(
        15.0, "seconds between the comment lines that keep an idle stream open through proxies"
    )
    streams_per_account: int = setting(
        16, "open event streams per account on one member at most (429 beyond)"
    )
    # 0: unbounded. A bounded lifetime lets a load balancer spread long-lived connections again.
    stream_max_duration: float = setting(
        0.0, "seconds after which a stream ends (the client resumes); 0: never"
    )
    # 16 characters of resume id a thread: 400 keep the Last-Event-ID header under 8 KB
    stream_account_threads: int = setting(
        400, "threads an account stream follows at most (its resume id grows with them)"
    )
    # Joins made on other members reach an account stream through its read-model refresh.
    stream_account_refresh: float = setting(
        5.0, "seconds between an account stream's reads of the account's threads"
    )
    # A tail is woken by this process's appends and by the journal's change notes; the
    # backstop reads each tail's thread once per period in case a writer announces nothing.
    stream_backstop: float = 900.0
    stream_write_timeout: float = 30.0  # a write blocked this long ends the stream
    stream_catch_up_rounds: int = 8  # journal reads a resuming stream may make to reach the tail
    read_your_writes_timeout: float = setting(
        2.0, "seconds a query with min_seq waits for the read model to apply it (503 beyond)"
    )
