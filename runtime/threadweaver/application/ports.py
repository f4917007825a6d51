"""Ports: what the application needs from storage. Adapters (SQLite, DynamoDB, SQLAlchemy)
implement them; the contract suites in tests/ hold every adapter to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .row_operations import ProjectedEvent

# ---------------------------------------------------------------------------------------------
# Journal
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type name and JSON-able payload (the domain event), and the
    envelope's JSON-able metadata (what the request adds, application/event_mapper.py)."""

    type: str
    payload: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the journal keeps it.

    `offset` is the journal's position of the event within its shard's stream, increasing with
    commit order as far as the store allows: SQLite's global ordering column; DynamoDB's write
    time in microseconds (`ts`), which may be out of order by up to `Journal.offset_slack`.
    `payload` is the domain event's, `metadata` the envelope's (empty when the request added
    nothing); journals read both through `event_mapper.from_storage`.
    """

    pid: str
    seq: int
    shard: int
    type: str
    payload: dict[str, Any]
    ts: int  # write time, epoch microseconds
    offset: int
    writer: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    pid: str
    seq: int
    state: dict[str, Any]
    ts: int = 0


class JournalError(Exception):
    """The journal could not serve a request (unreachable, throttled past retries, misconfigured)."""


class JournalUnavailable(JournalError):
    """Transient: the caller may retry later (HTTP 503)."""


class ConcurrencyConflict(JournalError):
    """An append lost the conditional write: sequence `seq` of `pid` already exists."""

    def __init__(self, pid: str, seq: int) -> None:
        super().__init__(f"sequence {seq} of {pid} already exists")
        self.pid = pid
        self.seq = seq


AppendListener = Callable[[Sequence[StoredEvent]], None]


@dataclass(frozen=True, slots=True)
class Changes:
    """What `Journal.changes` reports: shards in which events may have appeared that this
    instance did not hand to its subscribers, each with the offset to read it after."""

    cursor: int  # pass it to the next call
    shards: dict[int, int] = field(default_factory=dict)
    #: False: some changes since `cursor` are not known any more (the caller was away too long,
    #: a writer published more than could be kept): read everything after the checkpoints.
    complete: bool = True


@runtime_checkable
class Journal(Protocol):
    """An append-only, per-persistence-id event log with a per-shard stream for projections."""

    shards: int
    #: how far (in offset units) an event may appear behind a later-offset event in
    #: `read_shards` (0 where offsets are assigned in commit order).
    offset_slack: int

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def append(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> list[StoredEvent]:
        """Append `events` as seq expected_seq+1.., all or none. Raises ConcurrencyConflict if
        any of those sequence numbers exists. Returns once durable per the journal's mode."""
        ...

    def append_nowait(
        self, pid: str, expected_seq: int, events: Sequence[NewEvent], *, writer: str = ""
    ) -> Awaitable[list[StoredEvent]]:
        """`append`, started now: the returned awaitable gives its result, and cancelling it
        (or its awaiter, e.g. a caller's time-out) does not withdraw the append, which goes on
        to its outcome (the caller must then treat that outcome as unknown). `close` waits for
        appends in flight."""
        ...

    async def read(self, pid: str, from_seq: int = 1) -> list[StoredEvent]:
        """Events of `pid` with seq >= from_seq, in order (paginated internally)."""
        ...

    async def highest_seq(self, pid: str) -> int: ...

    async def save_snapshot(self, snapshot: Snapshot) -> None: ...
    async def load_snapshot(self, pid: str) -> Snapshot | None: ...

    async def read_shards(
        self, start: int, end: int, after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        """Up to `limit` events of shards [start, end) whose offset is greater than
        `after.get(shard, 0)`, ordered by (offset, pid, seq). No table scans."""
        ...

    async def read_shard_set(
        self, shards: Sequence[int], after: Mapping[int, int], limit: int
    ) -> list[StoredEvent]:
        """`read_shards` for any set of shards (not a range), in one call: what a projector
        reads for the shards its pushed appends touched (they are scattered over the range)."""
        ...

    def subscribe(self, listener: AppendListener) -> Callable[[], None]:
        """Call `listener` with the events of each append made through this journal instance,
        after they are durable, as stored (offsets included): the in-process feed a projector
        applies without reading them back. Returns an unsubscribe function."""
        ...

    async def changes(self, cursor: int | None) -> Changes:
        """The shards in which events may have appeared since `cursor` (the previous answer's;
        None the first time: what is known of the recent past) that this instance did not hand
        to its subscribers: other writers' appends (another process, a previous owner of the
        shards still finishing its appends), and appends of this instance whose outcome is
        unknown. Exact or conservative, never missing one: an RMU polls it instead of reading
        its whole range. Cheap: at most one request to the store per call (DynamoDB: one Query
        of the writers' change notes, shared by the instance's callers), whatever the number of
        shards."""
        ...

    def in_flight_floor(self, shard: int) -> int | None:
        """The lowest offset that an append of this instance to `shard`, started and not yet
        finished, can be stored at; None when there is none (or when every such append is
        stored above every offset already visible, SQLite). A projector keeps its checkpoint
        below it, so that a restart re-reads an append that took effect while its process died
        before reporting it."""
        ...


# ---------------------------------------------------------------------------------------------
# Read model
# ---------------------------------------------------------------------------------------------


class ReadModelUnavailable(Exception):
    """The read model cannot be reached right now (queries answer 503; the RMU backs off)."""


@dataclass(frozen=True, slots=True)
class ThreadView:
    id: str
    creator_id: str
    parent_thread_id: str | None
    title: str
    remarks: str | None
    created_at: int
    updated_at: int
    #: live messages after the querying account's read marker that others sent
    unread_count: int = 0


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    thread_id: str
    sender_id: str
    type: str
    body: str
    reply_message_id: str | None
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a thread's live messages in posting order; `last_position` is the position
    of its last message when more may follow (the next page starts after it), else None."""

    messages: list[MessageView]
    last_position: int | None


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: int  # events applied to the rows
    skipped: int  # already applied before (seq <= the stored one)
    offsets: dict[int, int]  # new offset per shard that advanced
    stalled: dict[int, int]  # shard -> offset it must re-read from (a gap in a pid)
    #: thread id -> the seq its row has, for the thread whose gap stalled a shard: its events
    #: from that seq + 1 on are what the projector must find (application/projection.py)
    gaps: dict[str, int] = field(default_factory=dict)


class ReadModel(Protocol):
    """The SQL read model: the projection's writer side and the queries' reader side."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def migrate(self) -> None:
        """Create or upgrade the schema to the latest revision."""
        ...

    # Projection side --------------------------------------------------------------------
    async def load_offsets(self, projection: str, start: int, end: int) -> dict[int, int]: ...

    async def apply(self, projection: str, events: Sequence[ProjectedEvent]) -> ApplyResult:
        """Execute the row operations of `events` (ordered by offset) exactly once in effect:
        rows and offsets commit in one transaction; an event whose seq is not above its thread's
        stored sequence_nr is skipped; an event after a gap in its thread stops its shard (see
        ApplyResult.stalled; planned by application/projection.py)."""
        ...

    # Query side ---------------------------------------------------------------------------
    async def get_thread(self, thread_id: str, account_id: str) -> ThreadView | None:
        """The live thread if `account_id` is an administrator or member of it."""
        ...

    async def list_threads(self, account_id: str, offset: int, limit: int) -> list[ThreadView]: ...

    async def list_administrator_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None:
        """None when the thread is not visible to `account_id` (missing, destroyed, not a member)."""
        ...

    async def list_member_ids(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[str] | None: ...

    async def list_messages(
        self, thread_id: str, account_id: str, offset: int, limit: int
    ) -> list[MessageView] | None: ...

    async def list_messages_page(
        self, thread_id: str, account_id: str, after: int | None, offset: int, limit: int
    ) -> MessagePage | None:
        """Up to `limit` live messages whose position is above `after` (None: from the start),
        skipping `offset` of them; keyset pages, stable while messages are posted and removed.
        None when the thread is not visible to `account_id`."""
        ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached (readiness)."""
        ...
