"""The thread-weaver domain: the Thread aggregate, its commands, events and rules.

Pure Python: no I/O, no clocks, no HTTP, SQL or Kubernetes. Time and identifiers come in
with the commands, so `decide` and `evolve` are deterministic and replayable.
"""
from .errors import DomainError, ErrorKind, ValidationError, FieldError
from .ids import is_ulid, new_ulid, parse_ulid, thread_persistence_id, thread_id_of
from .commands import (
    Command, CreateThread, DestroyThread, JoinAdministratorIds, LeaveAdministratorIds,
    JoinMemberIds, LeaveMemberIds, AddMessages, RemoveMessages, NewMessage,
)
from .events import (
    Event, ThreadCreated, ThreadDestroyed, AdministratorIdsJoined, AdministratorIdsLeft,
    MemberIdsJoined, MemberIdsLeft, MessagesAdded, MessagesRemoved, EVENT_TYPES,
    event_from_payload, event_to_payload,
)
from .thread import Thread, Message, decide, evolve, replay
from . import limits

__all__ = [
    "DomainError", "ErrorKind", "ValidationError", "FieldError",
    "is_ulid", "new_ulid", "parse_ulid", "thread_persistence_id", "thread_id_of",
    "Command", "CreateThread", "DestroyThread", "JoinAdministratorIds", "LeaveAdministratorIds",
    "JoinMemberIds", "LeaveMemberIds", "AddMessages", "RemoveMessages", "NewMessage",
    "Event", "ThreadCreated", "ThreadDestroyed", "AdministratorIdsJoined", "AdministratorIdsLeft",
    "MemberIdsJoined", "MemberIdsLeft", "MessagesAdded", "MessagesRemoved", "EVENT_TYPES",
    "event_from_payload", "event_to_payload",
    "Thread", "Message", "decide", "evolve", "replay", "limits",
]
