"""Every rule of the Thread aggregate, allowed and refused, as one table.

Each row gives the history (events), one command, and either the exact events `decide` returns
plus the state after `evolve`, or the exact refusal (DomainError kind and message, or the
ValidationError's fields). The table runner also checks that `decide` never mutates the state.

Accounts of the standard thread: ADMIN, ADMIN2 administrators; MEMBER, MEMBER2 members;
CREATOR created it but is neither administrator nor member; OUTSIDER has no role.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from threadweaver.domain import limits
from threadweaver.domain.commands import (
    AddMessages,
    CreateThread,
    DestroyThread,
    JoinAdministratorIds,
    JoinMemberIds,
    LeaveAdministratorIds,
    LeaveMemberIds,
    NewMessage,
    RemoveMessages,
)
from threadweaver.domain.errors import DomainError, ErrorKind, FieldError, ValidationError
from threadweaver.domain.events import (
    AddedMessage,
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    MemberIdsJoined,
    MemberIdsLeft,
    MessagesAdded,
    MessagesRemoved,
    ThreadCreated,
    ThreadDestroyed,
)
from threadweaver.domain.thread import (
    ADMINISTRATORS_EMPTY,
    ALREADY_CREATED,
    ALREADY_REMOVED,
    MESSAGES_LIMIT_OVER,
    NOT_ADMINISTRATOR,
    NOT_FOUND,
    NOT_MEMBER,
    REMOVER_NOT_MEMBER,
    REMOVER_NOT_SENDER,
    Message,
    Thread,
    decide,
    evolve,
    replay,
)

NOT_FOUND_KIND, FORBIDDEN, CONFLICT = ErrorKind.NOT_FOUND, ErrorKind.FORBIDDEN, ErrorKind.CONFLICT

TID = "thread-1"
PARENT = "parent-thread"
ADMIN, ADMIN2 = "admin", "admin2"
MEMBER, MEMBER2 = "member", "member2"
CREATOR, OUTSIDER = "creator", "outsider"
T0, T1, T2, T = 1_000, 2_000, 3_000, 9_000  # created, messages posted, destroyed, command time

NON_ADMINS = [("member", MEMBER), ("outsider", OUTSIDER), ("creator", CREATOR)]
NON_MEMBERS = [("outsider", OUTSIDER), ("creator", CREATOR)]
READERS = [("admin", ADMIN), ("member", MEMBER)]

# ---------------------------------------------------------------- histories (given events)
CREATED = ThreadCreated(
    TID, CREATOR, T0, "title", (ADMIN, ADMIN2), (MEMBER, MEMBER2), PARENT, "remarks"
)
M_ADMIN = AddedMessage("m-admin", "from admin", None, ())
M_MEMBER = AddedMessage("m-member", "from member", "m-admin", (ADMIN,))
ABSENT: tuple = ()
LIVE = (
    CREATED,
    MessagesAdded(TID, ADMIN, T1, (M_ADMIN,)),
    MessagesAdded(TID, MEMBER, T1, (M_MEMBER,)),
)
DESTROYED = LIVE + (ThreadDestroyed(TID, ADMIN, T2),)
SOLE_ADMIN = (ThreadCreated(TID, CREATOR, T0, "title", (ADMIN,), (MEMBER,)),)
MEMBER_LEFT = LIVE + (MemberIdsLeft(TID, ADMIN, T2, (MEMBER,)),)
ADMIN2_LEFT = LIVE + (AdministratorIdsLeft(TID, ADMIN, T2, (ADMIN2,)),)

ROW_ADMIN = ["m-admin", ADMIN, "from admin", None, [], T1]
ROW_MEMBER = ["m-member", MEMBER, "from member", "m-admin", [ADMIN], T1]


def with_admins(n: int) -> tuple:
    return (ThreadCreated(TID, CREATOR, T0, "title", tuple(f"admin-{i}" for i in range(n)), ()),)


def with_members(n: int) -> tuple:
    return (
        ThreadCreated(TID, CREATOR, T0, "title", (ADMIN,), tuple(f"member-{i}" for i in range(n))),
    )


def with_messages(n: int) -> tuple:
    return (
        ThreadCreated(TID, CREATOR, T0, "title", (ADMIN,), (MEMBER,)),
        MessagesAdded(
            TID, MEMBER, T1, tuple(AddedMessage(f"bulk-{i}", "x", None, ()) for i in range(n))
        ),
    )


def row(
    mid: str, sender: str, text: str, reply: str | None = None, to: tuple = (), at: int = T
) -> list:
    return [mid, sender, text, reply, list(to), at]


def created_snapshot(**overrides: Any) -> dict:
    snap = {
        "schema": 2,
        "id": TID,
        "creatorId": CREATOR,
        "title": "title",
        "parentThreadId": PARENT,
        "remarks": "remarks",
        "administratorIds": [ADMIN],
        "memberIds": [MEMBER],
        "messages": [],
        "createdAt": T,
        "updatedAt": T,
        "removedAt": None,
        "readMarkers": [],
    }
    snap.update(overrides)
    return snap


# ---------------------------------------------------------------- command builders (time T)
def create(
    actor=CREATOR,
    admins=(ADMIN,),
    members=(MEMBER,),
    title="title",
    remarks="remarks",
    parent=PARENT,
) -> CreateThread:
    return CreateThread(TID, actor, title, tuple(admins), tuple(members), parent, remarks, T)


def destroy(actor) -> DestroyThread:
    return DestroyThread(TID, actor, T)


def join_admins(actor, *ids) -> JoinAdministratorIds:
    return JoinAdministratorIds(TID, actor, ids, T)


def leave_admins(actor, *ids) -> LeaveAdministratorIds:
    return LeaveAdministratorIds(TID, actor, ids, T)


def join_members(actor, *ids) -> JoinMemberIds:
    return JoinMemberIds(TID, actor, ids, T)


def leave_members(actor, *ids) -> LeaveMemberIds:
    return LeaveMemberIds(TID, actor, ids, T)


def add(actor, *texts) -> AddMessages:
    return AddMessages(TID, actor, tuple(NewMessage(f"new-{i}", t) for i, t in enumerate(texts)), T)


def added(actor, *texts) -> MessagesAdded:
    return MessagesAdded(
        TID, actor, T, tuple(AddedMessage(f"new-{i}", t, None, ()) for i, t in enumerate(texts))
    )


def remove(actor, *ids) -> RemoveMessages:
    return RemoveMessages(TID, actor, ids, T)


# ---------------------------------------------------------------- the table
@dataclass(frozen=True)
class Case:
    given: tuple
    command: Any
    events: list | None = None  # expected events (success)
    state: dict | None = None  # snapshot overrides after evolve (value or f(old))
    snapshot: dict | None = None  # full expected snapshot (create from nothing)
    error: tuple[ErrorKind, str] | None = None
    invalid: list[tuple[str, str]] | None = None


CASES: list = []
_STATE_KEYS = {
    "admins": "administratorIds",
    "members": "memberIds",
    "messages": "messages",
    "removed_at": "removedAt",
}


def ok(name, given, command, events, snapshot=None, **state):
    CASES.append(
        pytest.param(
            Case(
                given,
                command,
                events=events,
                snapshot=snapshot,
                state={_STATE_KEYS[k]: v for k, v in state.items()},
            ),
            id=name,
        )
    )


def refused(name, given, command, kind, message):
    CASES.append(pytest.param(Case(given, command, error=(kind, message)), id=name))


def invalid(name, given, command, *fields):
    CASES.append(pytest.param(Case(given, command, invalid=list(fields)), id=name))


def plus(*items):
    return lambda old: old + list(items)


def minus(*items):
    return lambda old: [x for x in old if x not in items]


# ----- CreateThread: anyone may create; the creator need not be an administrator
ok(
    "create/by-non-admin-creator",
    ABSENT,
    create(),
    [ThreadCreated(TID, CREATOR, T, "title", (ADMIN,), (MEMBER,), PARENT, "remarks")],
    snapshot=created_snapshot(),
)
ok(
    "create/by-creator-who-is-admin",
    ABSENT,
    create(actor=ADMIN, admins=(ADMIN, ADMIN2)),
    [ThreadCreated(TID, ADMIN, T, "title", (ADMIN, ADMIN2), (MEMBER,), PARENT, "remarks")],
    snapshot=created_snapshot(creatorId=ADMIN, administratorIds=[ADMIN, ADMIN2]),
)
ok(
    "create/by-outsider-naming-others",
    ABSENT,
    create(actor=OUTSIDER, members=()),
    [ThreadCreated(TID, OUTSIDER, T, "title", (ADMIN,), (), PARENT, "remarks")],
    snapshot=created_snapshot(creatorId=OUTSIDER, memberIds=[]),
)
ok(
    "create/parent-and-remarks-optional",
    ABSENT,
    create(parent=None, remarks=None),
    [ThreadCreated(TID, CREATOR, T, "title", (ADMIN,), (MEMBER,), None, None)],
    snapshot=created_snapshot(parentThreadId=None, remarks=None),
)
ok(
    "create/duplicate-ids-collapsed-in-order",
    ABSENT,
    create(admins=(ADMIN2, ADMIN, ADMIN2), members=(MEMBER, MEMBER2, MEMBER)),
    [
        ThreadCreated(
            TID, CREATOR, T, "title", (ADMIN2, ADMIN), (MEMBER, MEMBER2), PARENT, "remarks"
        )
    ],
    snapshot=created_snapshot(administratorIds=[ADMIN2, ADMIN], memberIds=[MEMBER, MEMBER2]),
)
ok(
    "create/title-and-remarks-255",
    ABSENT,
    create(title="t" * 255, remarks="r" * 255),
    [ThreadCreated(TID, CREATOR, T, "t" * 255, (ADMIN,), (MEMBER,), PARENT, "r" * 255)],
    snapshot=created_snapshot(title="t" * 255, remarks="r" * 255),
)
ok(
    "create/empty-title-allowed",
    ABSENT,
    create(title=""),
    [ThreadCreated(TID, CREATOR, T, "", (ADMIN,), (MEMBER,), PARENT, "remarks")],
    snapshot=created_snapshot(title=""),
)
invalid("create/title-256", ABSENT, create(title="t" * 256), ("title", "title is too long"))
invalid("create/remarks-256", ABSENT, create(remarks="r" * 256), ("remarks", "remarks is too long"))
invalid(
    "create/administrators-empty",
    ABSENT,
    create(admins=()),
    ("administratorIds", "administrator-ids is empty"),
)
invalid(
    "create/all-field-errors-at-once",
    ABSENT,
    create(title="t" * 256, remarks="r" * 256, admins=()),
    ("title", "title is too long"),
    ("remarks", "remarks is too long"),
    ("administratorIds", "administrator-ids is empty"),
)
refused("create/on-live-thread", LIVE, create(), CONFLICT, ALREADY_CREATED)
refused("create/on-live-thread-by-its-admin", LIVE, create(actor=ADMIN), CONFLICT, ALREADY_CREATED)
refused(
    "create/existence-checked-before-validation",
    LIVE,
    create(title="t" * 256),
    CONFLICT,
    ALREADY_CREATED,
)
# The id of a destroyed thread stays taken: create is refused as a conflict, not NOT_FOUND.
refused("create/on-destroyed-thread", DESTROYED, create(), CONFLICT, ALREADY_CREATED)

_A_MAX = tuple(f"a{i}" for i in range(limits.ADMINISTRATORS_LIMIT))
_M_MAX = tuple(f"m{i}" for i in range(limits.MEMBERS_LIMIT))
ok(
    "create/administrators-at-limit",
    ABSENT,
    create(admins=_A_MAX, members=()),
    [ThreadCreated(TID, CREATOR, T, "title", _A_MAX, (), PARENT, "remarks")],
    snapshot=created_snapshot(administratorIds=list(_A_MAX), memberIds=[]),
)
ok(
    "create/administrators-at-limit-after-dedup",
    ABSENT,
    create(admins=_A_MAX + _A_MAX[:5], members=()),
    [ThreadCreated(TID, CREATOR, T, "title", _A_MAX, (), PARENT, "remarks")],
    snapshot=created_snapshot(administratorIds=list(_A_MAX), memberIds=[]),
)
refused(
    "create/administrators-over-limit",
    ABSENT,
    create(admins=_A_MAX + ("one-more",)),
    CONFLICT,
    "too many administrators or members",
)
ok(
    "create/members-at-limit",
    ABSENT,
    create(members=_M_MAX),
    [ThreadCreated(TID, CREATOR, T, "title", (ADMIN,), _M_MAX, PARENT, "remarks")],
    snapshot=created_snapshot(memberIds=list(_M_MAX)),
)
refused(
    "create/members-over-limit",
    ABSENT,
    create(members=_M_MAX + ("one-more",)),
    CONFLICT,
    "too many administrators or members",
)

# ----- DestroyThread: administrators only
ok("destroy/by-admin", LIVE, destroy(ADMIN), [ThreadDestroyed(TID, ADMIN, T)], removed_at=T)
ok(
    "destroy/by-second-admin",
    LIVE,
    destroy(ADMIN2),
    [ThreadDestroyed(TID, ADMIN2, T)],
    removed_at=T,
)
for who, actor in NON_ADMINS:
    refused(f"destroy/by-{who}", LIVE, destroy(actor), FORBIDDEN, NOT_ADMINISTRATOR)
refused("destroy/by-admin-who-left", ADMIN2_LEFT, destroy(ADMIN2), FORBIDDEN, NOT_ADMINISTRATOR)
refused("destroy/never-created", ABSENT, destroy(ADMIN), NOT_FOUND_KIND, NOT_FOUND)
refused("destroy/already-destroyed", DESTROYED, destroy(ADMIN), NOT_FOUND_KIND, ALREADY_REMOVED)

# ----- JoinAdministratorIds: administrators only; joining present ids is a no-op
ok(
    "join-admins/outsider",
    LIVE,
    join_admins(ADMIN, OUTSIDER),
    [AdministratorIdsJoined(TID, ADMIN, T, (OUTSIDER,))],
    admins=plus(OUTSIDER),
)
ok(
    "join-admins/member-keeps-membership",
    LIVE,
    join_admins(ADMIN2, MEMBER),
    [AdministratorIdsJoined(TID, ADMIN2, T, (MEMBER,))],
    admins=plus(MEMBER),
)
ok(
    "join-admins/only-new-ids-deduplicated-in-order",
    LIVE,
    join_admins(ADMIN, OUTSIDER, ADMIN2, CREATOR, OUTSIDER),
    [AdministratorIdsJoined(TID, ADMIN, T, (OUTSIDER, CREATOR))],
    admins=plus(OUTSIDER, CREATOR),
)
ok("join-admins/present-ids-no-event", LIVE, join_admins(ADMIN, ADMIN, ADMIN2), [])
ok("join-admins/empty-no-event", LIVE, join_admins(ADMIN), [])
for who, actor in NON_ADMINS:
    refused(
        f"join-admins/by-{who}", LIVE, join_admins(actor, OUTSIDER), FORBIDDEN, NOT_ADMINISTRATOR
    )
refused(
    "join-admins/by-member-for-self",
    LIVE,
    join_admins(MEMBER, MEMBER),
    FORBIDDEN,
    NOT_ADMINISTRATOR,
)
refused(
    "join-admins/never-created", ABSENT, join_admins(ADMIN, OUTSIDER), NOT_FOUND_KIND, NOT_FOUND
)
refused(
    "join-admins/destroyed",
    DESTROYED,
    join_admins(ADMIN, OUTSIDER),
    NOT_FOUND_KIND,
    ALREADY_REMOVED,
)
_A = limits.ADMINISTRATORS_LIMIT
ok(
    "join-admins/up-to-limit",
    with_admins(_A - 1),
    join_admins("admin-0", "new-admin"),
    [AdministratorIdsJoined(TID, "admin-0", T, ("new-admin",))],
    admins=plus("new-admin"),
)
refused(
    "join-admins/over-limit",
    with_admins(_A - 1),
    join_admins("admin-0", "x", "y"),
    CONFLICT,
    "The limit of administrators is over",
)
ok(
    "join-admins/present-id-at-limit-no-event",
    with_admins(_A),
    join_admins("admin-0", "admin-1"),
    [],
)

# ----- LeaveAdministratorIds: administrators only; the last administrator cannot leave
ok(
    "leave-admins/other-admin",
    LIVE,
    leave_admins(ADMIN, ADMIN2),
    [AdministratorIdsLeft(TID, ADMIN, T, (ADMIN2,))],
    admins=[ADMIN],
)
ok(
    "leave-admins/self-while-another-remains",
    LIVE,
    leave_admins(ADMIN, ADMIN),
    [AdministratorIdsLeft(TID, ADMIN, T, (ADMIN,))],
    admins=[ADMIN2],
)
ok(
    "leave-admins/absent-ids-ignored-deduplicated",
    LIVE,
    leave_admins(ADMIN, OUTSIDER, ADMIN2, MEMBER, ADMIN2),
    [AdministratorIdsLeft(TID, ADMIN, T, (ADMIN2,))],
    admins=[ADMIN],
)
ok("leave-admins/absent-ids-only-no-event", LIVE, leave_admins(ADMIN, OUTSIDER, MEMBER), [])
ok("leave-admins/empty-no-event", LIVE, leave_admins(ADMIN), [])
refused(
    "leave-admins/all-admins",
    LIVE,
    leave_admins(ADMIN, ADMIN, ADMIN2),
    CONFLICT,
    ADMINISTRATORS_EMPTY,
)
refused(
    "leave-admins/all-admins-plus-others",
    LIVE,
    leave_admins(ADMIN2, OUTSIDER, ADMIN2, ADMIN),
    CONFLICT,
    ADMINISTRATORS_EMPTY,
)
refused(
    "leave-admins/sole-admin-self",
    SOLE_ADMIN,
    leave_admins(ADMIN, ADMIN),
    CONFLICT,
    ADMINISTRATORS_EMPTY,
)
ok("leave-admins/sole-admin-absent-id-no-event", SOLE_ADMIN, leave_admins(ADMIN, MEMBER), [])
for who, actor in NON_ADMINS:
    refused(
        f"leave-admins/by-{who}", LIVE, leave_admins(actor, ADMIN2), FORBIDDEN, NOT_ADMINISTRATOR
    )
refused(
    "leave-admins/never-created", ABSENT, leave_admins(ADMIN, ADMIN2), NOT_FOUND_KIND, NOT_FOUND
)
refused(
    "leave-admins/destroyed",
    DESTROYED,
    leave_admins(ADMIN, ADMIN2),
    NOT_FOUND_KIND,
    ALREADY_REMOVED,
)

# ----- JoinMemberIds: administrators only; joining present ids is a no-op
ok(
    "join-members/outsider",
    LIVE,
    join_members(ADMIN, OUTSIDER),
    [MemberIdsJoined(TID, ADMIN, T, (OUTSIDER,))],
    members=plus(OUTSIDER),
)
ok(
    "join-members/only-new-ids-deduplicated-in-order",
    LIVE,
    join_members(ADMIN2, CREATOR, MEMBER, OUTSIDER, CREATOR),
    [MemberIdsJoined(TID, ADMIN2, T, (CREATOR, OUTSIDER))],
    members=plus(CREATOR, OUTSIDER),
)
ok(
    "join-members/admin-id-lists-are-separate",
    LIVE,
    join_members(ADMIN, ADMIN2),
    [MemberIdsJoined(TID, ADMIN, T, (ADMIN2,))],
    members=plus(ADMIN2),
)
ok("join-members/present-ids-no-event", LIVE, join_members(ADMIN, MEMBER, MEMBER2, MEMBER), [])
ok("join-members/empty-no-event", LIVE, join_members(ADMIN), [])
for who, actor in NON_ADMINS:
    refused(
        f"join-members/by-{who}", LIVE, join_members(actor, OUTSIDER), FORBIDDEN, NOT_ADMINISTRATOR
    )
refused(
    "join-members/never-created", ABSENT, join_members(ADMIN, OUTSIDER), NOT_FOUND_KIND, NOT_FOUND
)
refused(
    "join-members/destroyed",
    DESTROYED,
    join_members(ADMIN, OUTSIDER),
    NOT_FOUND_KIND,
    ALREADY_REMOVED,
)
_M = limits.MEMBERS_LIMIT
ok(
    "join-members/up-to-limit",
    with_members(_M - 1),
    join_members(ADMIN, "new-member"),
    [MemberIdsJoined(TID, ADMIN, T, ("new-member",))],
    members=plus("new-member"),
)
refused(
    "join-members/over-limit",
    with_members(_M - 1),
    join_members(ADMIN, "x", "y"),
    CONFLICT,
    "The limit of members is over",
)
ok(
    "join-members/present-id-at-limit-no-event",
    with_members(_M),
    join_members(ADMIN, "member-0"),
    [],
)

# ----- LeaveMemberIds: administrators only; removes ids (upstream added them)
ok(
    "leave-members/one",
    LIVE,
    leave_members(ADMIN, MEMBER),
    [MemberIdsLeft(TID, ADMIN, T, (MEMBER,))],
    members=[MEMBER2],
)
ok(
    "leave-members/all-members-may-go",
    LIVE,
    leave_members(ADMIN2, MEMBER2, MEMBER),
    [MemberIdsLeft(TID, ADMIN2, T, (MEMBER2, MEMBER))],
    members=[],
)
ok(
    "leave-members/absent-ids-ignored-deduplicated",
    LIVE,
    leave_members(ADMIN, OUTSIDER, MEMBER2, ADMIN, MEMBER2),
    [MemberIdsLeft(TID, ADMIN, T, (MEMBER2,))],
    members=[MEMBER],
)
ok("leave-members/absent-ids-only-no-event", LIVE, leave_members(ADMIN, OUTSIDER, ADMIN2), [])
ok("leave-members/empty-no-event", LIVE, leave_members(ADMIN), [])
for who, actor in NON_ADMINS:
    refused(
        f"leave-members/by-{who}", LIVE, leave_members(actor, MEMBER2), FORBIDDEN, NOT_ADMINISTRATOR
    )
refused(
    "leave-members/member-for-self",
    LIVE,
    leave_members(MEMBER, MEMBER),
    FORBIDDEN,
    NOT_ADMINISTRATOR,
)
refused(
    "leave-members/never-created", ABSENT, leave_members(ADMIN, MEMBER), NOT_FOUND_KIND, NOT_FOUND
)
refused(
    "leave-members/destroyed",
    DESTROYED,
    leave_members(ADMIN, MEMBER),
    NOT_FOUND_KIND,
    ALREADY_REMOVED,
)

# ----- AddMessages: members and administrators; 255-character text; 5000 live messages
ok(
    "add/by-admin",
    LIVE,
    add(ADMIN, "hello"),
    [added(ADMIN, "hello")],
    messages=plus(row("new-0", ADMIN, "hello")),
)
ok(
    "add/by-member",
    LIVE,
    add(MEMBER2, "a", "b"),
    [added(MEMBER2, "a", "b")],
    messages=plus(row("new-0", MEMBER2, "a"), row("new-1", MEMBER2, "b")),
)
ok(
    "add/reply-and-recipients-kept",
    LIVE,
    AddMessages(TID, MEMBER, (NewMessage("r1", "re", "m-admin", (ADMIN, MEMBER2)),), T),
    [MessagesAdded(TID, MEMBER, T, (AddedMessage("r1", "re", "m-admin", (ADMIN, MEMBER2)),))],
    messages=plus(row("r1", MEMBER, "re", "m-admin", (ADMIN, MEMBER2))),
)
ok(
    "add/text-255",
    LIVE,
    add(MEMBER, "x" * 255),
    [added(MEMBER, "x" * 255)],
    messages=plus(row("new-0", MEMBER, "x" * 255)),
)
ok(
    "add/empty-text",
    LIVE,
    add(MEMBER, ""),
    [added(MEMBER, "")],
    messages=plus(row("new-0", MEMBER, "")),
)
invalid(
    "add/text-256-names-the-message",
    LIVE,
    add(MEMBER, "ok", "x" * 256),
    ("messages[1].text", "too long text"),
)
invalid(
    "add/every-long-text-named",
    LIVE,
    add(MEMBER, "x" * 256, "ok", "y" * 300),
    ("messages[0].text", "too long text"),
    ("messages[2].text", "too long text"),
)
ok("add/empty-list-no-event", LIVE, add(MEMBER), [])
# Upstream: with no messages there is no sender to check, so an outsider's empty add is a no-op.
ok("add/empty-list-by-outsider-no-event", LIVE, add(OUTSIDER), [])
for who, actor in NON_MEMBERS:
    refused(f"add/by-{who}", LIVE, add(actor, "hi"), FORBIDDEN, NOT_MEMBER)
refused("add/by-member-who-left", MEMBER_LEFT, add(MEMBER, "hi"), FORBIDDEN, NOT_MEMBER)
refused("add/never-created", ABSENT, add(ADMIN, "hi"), NOT_FOUND_KIND, NOT_FOUND)
refused("add/never-created-empty-list", ABSENT, add(ADMIN), NOT_FOUND_KIND, NOT_FOUND)
refused("add/destroyed", DESTROYED, add(ADMIN, "hi"), NOT_FOUND_KIND, ALREADY_REMOVED)
refused("add/destroyed-empty-list", DESTROYED, add(ADMIN), NOT_FOUND_KIND, ALREADY_REMOVED)
_N = limits.MESSAGES_LIMIT
ok(
    "add/reaching-exactly-the-limit",
    with_messages(_N - 1),
    add(MEMBER, "last"),
    [added(MEMBER, "last")],
    messages=plus(row("new-0", MEMBER, "last")),
)
ok(
    "add/limit-in-one-command",
    with_messages(0),
    add(MEMBER, *["x"] * _N),
    [added(MEMBER, *["x"] * _N)],
    messages=[row(f"new-{i}", MEMBER, "x") for i in range(_N)],
)
refused(
    "add/one-over-the-limit",
    with_messages(_N),
    add(MEMBER, "one more"),
    CONFLICT,
    MESSAGES_LIMIT_OVER,
)
refused(
    "add/batch-crossing-the-limit",
    with_messages(_N - 1),
    add(ADMIN, "a", "b"),
    CONFLICT,
    MESSAGES_LIMIT_OVER,
)
ok(
    "add/after-removal-below-the-limit",
    with_messages(_N) + (MessagesRemoved(TID, MEMBER, T1, ("bulk-7",)),),
    add(MEMBER, "again"),
    [added(MEMBER, "again")],
    messages=lambda old: old + [row("new-0", MEMBER, "again")],
)

# ----- RemoveMessages: members and administrators, own messages only; unknown ids ignored
ok(
    "remove/own-by-member",
    LIVE,
    remove(MEMBER, "m-member"),
    [MessagesRemoved(TID, MEMBER, T, ("m-member",))],
    messages=[ROW_ADMIN],
)
ok(
    "remove/own-by-admin",
    LIVE,
    remove(ADMIN, "m-admin"),
    [MessagesRemoved(TID, ADMIN, T, ("m-admin",))],
    messages=[ROW_MEMBER],
)
ok(
    "remove/unknown-ids-ignored-deduplicated",
    LIVE,
    remove(MEMBER, "nope", "m-member", "m-member", "gone"),
    [MessagesRemoved(TID, MEMBER, T, ("m-member",))],
    messages=[ROW_ADMIN],
)
ok("remove/unknown-ids-only-no-event", LIVE, remove(MEMBER, "nope", "gone"), [])
ok("remove/empty-no-event", LIVE, remove(MEMBER), [])
ok(
    "remove/already-removed-id-no-event",
    LIVE + (MessagesRemoved(TID, MEMBER, T2, ("m-member",)),),
    remove(MEMBER, "m-member"),
    [],
)
refused(
    "remove/others-message-by-member",
    LIVE,
    remove(MEMBER, "m-admin"),
    FORBIDDEN,
    REMOVER_NOT_SENDER,
)
refused(
    "remove/others-message-by-admin", LIVE, remove(ADMIN, "m-member"), FORBIDDEN, REMOVER_NOT_SENDER
)
refused(
    "remove/own-and-others-all-or-nothing",
    LIVE,
    remove(MEMBER, "m-member", "m-admin"),
    FORBIDDEN,
    REMOVER_NOT_SENDER,
)
for who, actor in NON_MEMBERS:
    refused(f"remove/by-{who}", LIVE, remove(actor, "m-member"), FORBIDDEN, REMOVER_NOT_MEMBER)
    refused(f"remove/empty-by-{who}", LIVE, remove(actor), FORBIDDEN, REMOVER_NOT_MEMBER)
refused(
    "remove/own-after-leaving",
    MEMBER_LEFT,
    remove(MEMBER, "m-member"),
    FORBIDDEN,
    REMOVER_NOT_MEMBER,
)
refused("remove/never-created", ABSENT, remove(MEMBER, "m-member"), NOT_FOUND_KIND, NOT_FOUND)
refused("remove/destroyed", DESTROYED, remove(MEMBER, "m-member"), NOT_FOUND_KIND, ALREADY_REMOVED)


def snap(thread: Thread | None) -> dict | None:
    return None if thread is None else thread.to_snapshot()


@pytest.mark.parametrize("case", CASES)
def test_rule(case: Case) -> None:
    thread = replay(case.given)
    before = snap(thread)

    if case.error is not None:
        kind, message = case.error
        with pytest.raises(DomainError) as refused_:
            decide(thread, case.command)
        assert (refused_.value.kind, refused_.value.message, str(refused_.value)) == (
            kind,
            message,
            message,
        )
        assert snap(thread) == before, "a refused command must leave the state alone"
        return
    if case.invalid is not None:
        with pytest.raises(ValidationError) as invalid_:
            decide(thread, case.command)
        assert [(e.field, e.message) for e in invalid_.value.errors] == case.invalid
        assert invalid_.value.messages == [f"{f}: {m}" for f, m in case.invalid]
        for field_name, _ in case.invalid:
            assert field_name in str(invalid_.value)
        assert snap(thread) == before
        return

    events = decide(thread, case.command)
    assert snap(thread) == before, "decide must not mutate the state"
    assert events == case.events
    assert [type(e) for e in events] == [type(e) for e in case.events]
    after = replay(events, thread)
    if case.snapshot is not None:
        assert before is None
        assert snap(after) == case.snapshot
    elif not events:
        assert snap(after) == before
    else:
        expected = dict(before)
        for key, value in case.state.items():
            expected[key] = value(before[key]) if callable(value) else value
        expected["updatedAt"] = case.command.at
        assert snap(after) == expected


# ---------------------------------------------------------------- queries
QUERY_CASES = []
_QUERY_RESULTS = {
    "get_administrator_ids": [ADMIN, ADMIN2],
    "get_member_ids": [MEMBER, MEMBER2],
    "get_messages": [
        Message("m-admin", ADMIN, "from admin", None, (), T1),
        Message("m-member", MEMBER, "from member", "m-admin", (ADMIN,), T1),
    ],
}
for query, result in _QUERY_RESULTS.items():
    for who, actor in READERS + [("second-admin", ADMIN2), ("second-member", MEMBER2)]:
        QUERY_CASES.append(pytest.param(LIVE, query, actor, result, None, id=f"{query}/by-{who}"))
    for who, actor in NON_MEMBERS:
        QUERY_CASES.append(
            pytest.param(LIVE, query, actor, None, (FORBIDDEN, NOT_MEMBER), id=f"{query}/by-{who}")
        )
    QUERY_CASES.append(
        pytest.param(
            MEMBER_LEFT,
            query,
            MEMBER,
            None,
            (FORBIDDEN, NOT_MEMBER),
            id=f"{query}/by-member-who-left",
        )
    )
    QUERY_CASES.append(
        pytest.param(
            DESTROYED,
            query,
            ADMIN,
            None,
            (NOT_FOUND_KIND, ALREADY_REMOVED),
            id=f"{query}/destroyed",
        )
    )


@pytest.mark.parametrize("given, query, actor, result, error", QUERY_CASES)
def test_query(given, query, actor, result, error) -> None:
    thread = replay(given)
    before = thread.to_snapshot()
    if error is None:
        assert getattr(thread, query)(actor) == result
    else:
        with pytest.raises(DomainError) as refused_:
            getattr(thread, query)(actor)
        assert (refused_.value.kind, refused_.value.message) == error
    assert thread.to_snapshot() == before


def test_query_results_are_copies() -> None:
    thread = replay(LIVE)
    thread.get_administrator_ids(ADMIN).append(OUTSIDER)
    thread.get_member_ids(ADMIN).clear()
    thread.get_messages(ADMIN).clear()
    assert thread.get_administrator_ids(ADMIN) == [ADMIN, ADMIN2]
    assert thread.get_member_ids(ADMIN) == [MEMBER, MEMBER2]
    assert len(thread.get_messages(ADMIN)) == 2


def test_query_results_follow_later_events() -> None:
    thread = replay(
        LIVE
        + (
            AdministratorIdsJoined(TID, ADMIN, T, (MEMBER,)),
            MemberIdsLeft(TID, ADMIN, T, (MEMBER2,)),
            MessagesRemoved(TID, ADMIN, T, ("m-admin",)),
        )
    )
    assert thread.get_administrator_ids(MEMBER) == [ADMIN, ADMIN2, MEMBER]
    assert thread.get_member_ids(MEMBER) == [MEMBER]
    assert [m.id for m in thread.get_messages(MEMBER)] == ["m-member"]
    with pytest.raises(DomainError) as refused_:
        thread.get_messages(MEMBER2)
    assert (refused_.value.kind, refused_.value.message) == (FORBIDDEN, NOT_MEMBER)


# ---------------------------------------------------------------- wording, limits, misc
def test_failure_messages_keep_upstream_wording() -> None:
    assert NOT_FOUND == "thread is not found"
    assert ALREADY_CREATED == "Already created"
    assert ALREADY_REMOVED == "already removed the thread"
    assert NOT_ADMINISTRATOR == "The senderId is not the administrator"
    assert NOT_MEMBER == "The senderId is not the member"
    assert REMOVER_NOT_MEMBER == "The removerId is not the member"
    assert REMOVER_NOT_SENDER == "The removerId is not the senderId"
    assert ADMINISTRATORS_EMPTY == "Administrators can not be empty."
    assert MESSAGES_LIMIT_OVER == "The limit of messages size is over"


def test_limits() -> None:
    assert limits.TITLE_MAX_LENGTH == limits.REMARKS_MAX_LENGTH == limits.TEXT_MAX_LENGTH == 255
    assert limits.MESSAGES_LIMIT == 5000
    assert limits.ADMINISTRATORS_LIMIT == 1000
    assert limits.MEMBERS_LIMIT == 10000


def test_message_limit_flow_fill_refuse_remove_add_again() -> None:
    """5000 messages through decide: the 5001st is refused until one is removed."""
    thread = replay(decide(None, create(members=(MEMBER,))))
    for batch in range(5):
        cmd = AddMessages(
            TID, MEMBER, tuple(NewMessage(f"b{batch}-{i}", "x") for i in range(1000)), T
        )
        thread = replay(decide(thread, cmd), thread)
    assert len(thread.messages) == limits.MESSAGES_LIMIT
    with pytest.raises(DomainError) as refused_:
        decide(thread, add(ADMIN, "over"))
    assert (refused_.value.kind, refused_.value.message) == (CONFLICT, MESSAGES_LIMIT_OVER)
    thread = replay(decide(thread, remove(MEMBER, "b0-0", "b4-999")), thread)
    assert len(thread.messages) == limits.MESSAGES_LIMIT - 2
    thread = replay(decide(thread, add(ADMIN, "one", "two")), thread)
    assert len(thread.messages) == limits.MESSAGES_LIMIT
    assert list(thread.messages)[-2:] == ["new-0", "new-1"]
    with pytest.raises(DomainError):
        decide(thread, add(ADMIN, "over"))


def test_roles_follow_membership_events() -> None:
    """A promoted member may administer; a demoted administrator may not."""
    thread = replay(LIVE)
    thread = replay(decide(thread, join_admins(ADMIN, MEMBER)), thread)
    thread = replay(decide(thread, leave_admins(MEMBER, ADMIN)), thread)
    assert list(thread.administrator_ids) == [ADMIN2, MEMBER]
    with pytest.raises(DomainError) as refused_:
        decide(thread, join_members(ADMIN, OUTSIDER))
    assert (refused_.value.kind, refused_.value.message) == (FORBIDDEN, NOT_ADMINISTRATOR)
    # ADMIN is neither administrator nor member now, so may not post either.
    with pytest.raises(DomainError) as refused_:
        decide(thread, add(ADMIN, "hi"))
    assert (refused_.value.kind, refused_.value.message) == (FORBIDDEN, NOT_MEMBER)
    assert decide(thread, destroy(MEMBER)) == [ThreadDestroyed(TID, MEMBER, T)]


def test_leaving_members_keeps_their_messages() -> None:
    thread = replay(MEMBER_LEFT)
    assert list(thread.member_ids) == [MEMBER2]
    assert list(thread.messages) == ["m-admin", "m-member"]
    assert thread.messages["m-member"].sender_id == MEMBER


def test_destroyed_thread_refuses_every_command_of_everyone() -> None:
    thread = replay(DESTROYED)
    for actor in (ADMIN, ADMIN2, MEMBER, CREATOR, OUTSIDER):
        for command in (
            destroy(actor),
            join_admins(actor, OUTSIDER),
            leave_admins(actor, ADMIN2),
            join_members(actor, OUTSIDER),
            leave_members(actor, MEMBER),
            add(actor, "hi"),
            add(actor),
            remove(actor, "m-member"),
            remove(actor),
        ):
            with pytest.raises(DomainError) as refused_:
                decide(thread, command)
            assert (refused_.value.kind, refused_.value.message) == (
                NOT_FOUND_KIND,
                ALREADY_REMOVED,
            ), command


def test_never_created_thread_refuses_every_command_but_create() -> None:
    for actor in (ADMIN, OUTSIDER):
        for command in (
            destroy(actor),
            join_admins(actor, OUTSIDER),
            leave_admins(actor, ADMIN),
            join_members(actor, OUTSIDER),
            leave_members(actor, MEMBER),
            add(actor, "hi"),
            add(actor),
            remove(actor, "x"),
            remove(actor),
        ):
            with pytest.raises(DomainError) as refused_:
                decide(None, command)
            assert (refused_.value.kind, refused_.value.message) == (NOT_FOUND_KIND, NOT_FOUND), (
                command
            )


def test_evolve_stamps_times() -> None:
    thread = replay(LIVE)
    assert (thread.created_at, thread.updated_at, thread.removed_at) == (T0, T1, None)
    assert not thread.is_removed
    thread = evolve(thread, ThreadDestroyed(TID, ADMIN, T2))
    assert (thread.created_at, thread.updated_at, thread.removed_at) == (T0, T2, T2)
    assert thread.is_removed


def test_roles() -> None:
    thread = replay(LIVE)
    assert [thread.is_administrator(a) for a in (ADMIN, ADMIN2, MEMBER, CREATOR, OUTSIDER)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert [thread.is_member(a) for a in (ADMIN, ADMIN2, MEMBER, MEMBER2, CREATOR, OUTSIDER)] == [
        True,
        True,
        True,
        True,
        False,
        False,
    ]


def test_evolve_refuses_events_before_creation() -> None:
    with pytest.raises(ValueError):
        evolve(None, ThreadDestroyed(TID, ADMIN, T))
    assert replay([]) is None


def test_decide_refuses_unknown_commands() -> None:
    @dataclass(frozen=True)
    class ExistsThread:  # upstream's query command, not one of ours
        thread_id: str
        account_id: str
        at: int = 0

    with pytest.raises(TypeError):
        decide(replay(LIVE), ExistsThread(TID, ADMIN))  # type: ignore[arg-type]


def test_domain_error_and_field_error_text() -> None:
    err = DomainError(CONFLICT, ADMINISTRATORS_EMPTY)
    assert str(err) == ADMINISTRATORS_EMPTY
    assert repr(err) == "DomainError(CONFLICT, 'Administrators can not be empty.')"
    assert str(FieldError("title", "title is too long")) == "title: title is too long"
    assert {k.value for k in ErrorKind} == {"not_found", "forbidden", "conflict"}


def test_a_message_id_cannot_be_reused():
    """Ids are generated by the server; a repeated one would overwrite another message and
    break the read model's primary key, so the aggregate refuses it."""
    from threadweaver.domain import (
        AddMessages,
        CreateThread,
        DomainError,
        ErrorKind,
        NewMessage,
        decide,
        evolve,
        new_ulid,
        replay,
    )

    admin, tid, mid = new_ulid(), new_ulid(), new_ulid()
    thread = replay(decide(None, CreateThread(tid, admin, "t", (admin,), (), None, None, 1)))
    for event in decide(thread, AddMessages(tid, admin, (NewMessage(mid, "a"),), 2)):
        evolve(thread, event)
    for messages in ((NewMessage(mid, "again"),), (NewMessage(new_ulid(), "x"),) * 2):
        try:
            decide(thread, AddMessages(tid, admin, messages, 3))
        except DomainError as err:
            assert err.kind is ErrorKind.CONFLICT and err.message == "message id already exists"
        else:
            raise AssertionError("a repeated message id was accepted")
