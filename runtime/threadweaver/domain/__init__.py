"""The thread-weaver domain: the Thread aggregate, its commands, events and rules.

Pure Python: no I/O, no clocks, no HTTP, SQL or Kubernetes. Time and identifiers come in
with the commands, so `decide` and `evolve` are deterministic and replayable.
"""

from . import limits
from .commands import (
    AddMessages,
    Command,
    CreateThread,
    DestroyThread,
    EditMessage,
    JoinAdministratorIds,
    JoinMemberIds,
    LeaveAdministratorIds,
    LeaveMemberIds,
    MoveReadMarker,
    NewMessage,
    RemoveMessages,
)
from .errors import DomainError, ErrorKind, FieldError, ValidationError
from .events import (
    EVENT_TYPES,
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    Event,
    MemberIdsJoined,
    MemberIdsLeft,
    MessageEdited,
    MessagesAdded,
    MessagesRemoved,
    ReadMarkerMoved,
    ThreadCreated,
    ThreadDestroyed,
    event_from_payload,
    event_to_payload,
)
from .ids import is_ulid, new_ulid, parse_ulid, thread_id_of, thread_persistence_id
from .thread import Message, Thread, decide, evolve, replay

__all__ = [
    "EVENT_TYPES",
    "AddMessages",
    "AdministratorIdsJoined",
    "AdministratorIdsLeft",
    "Command",
    "CreateThread",
    "DestroyThread",
    "DomainError",
    "EditMessage",
    "ErrorKind",
    "Event",
    "FieldError",
    "JoinAdministratorIds",
    "JoinMemberIds",
    "LeaveAdministratorIds",
    "LeaveMemberIds",
    "MemberIdsJoined",
    "MemberIdsLeft",
    "Message",
    "MessageEdited",
    "MessagesAdded",
    "MessagesRemoved",
    "MoveReadMarker",
    "NewMessage",
    "ReadMarkerMoved",
    "RemoveMessages",
    "Thread",
    "ThreadCreated",
    "ThreadDestroyed",
    "ValidationError",
    "decide",
    "event_from_payload",
    "event_to_payload",
    "evolve",
    "is_ulid",
    "limits",
    "new_ulid",
    "parse_ulid",
    "replay",
    "thread_id_of",
    "thread_persistence_id",
]
