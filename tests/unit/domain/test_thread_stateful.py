"""The Thread aggregate (decide + evolve) against a plain model, driven by random commands.

The model below restates the rules with lists and dicts, independently of thread.py: for every
command it predicts the exact outcome (events, refusal, or validation errors) and the state
after. Invariants: at least one administrator while live, no duplicate ids, live messages within
the limit, a destroyed thread refuses everything, and decide never mutates the state.

Speed: with the real limit of 5000 messages, every step on a full thread pays for snapshots of
5000 messages, which made this test take 5-15 s. While the machine runs, the message limit is
scaled down to MESSAGES_LIMIT_IN_MACHINE (patched into `limits`, restored in teardown), so that
the walk reaches the limit, is refused past it and frees room again in most runs. The real
boundary (exactly 5000 accepted, 5001 refused, remove then add) is pinned in
test_thread_rules.py. Should `decide` ever stop reading `limits.MESSAGES_LIMIT` at call time,
this test fails loudly (the model predicts refusals the aggregate does not make).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

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
from threadweaver.domain.errors import DomainError, ErrorKind, ValidationError
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
from threadweaver.domain.thread import Message, Thread, decide, evolve

TID = "01HZX3J5K6M7N8P9Q0R1S2T3V4"
ACCOUNTS = ["u0", "u1", "u2", "u3", "u4"]
MAX_TEXT = 255
REAL_MESSAGES_LIMIT = 5000
MESSAGES_LIMIT_IN_MACHINE = 12
MAX_MESSAGES = MESSAGES_LIMIT_IN_MACHINE
MAX_ADMINS = 1000
MAX_MEMBERS = 10000

TEXTS = ["", "hi", "y" * MAX_TEXT]
TOO_LONG = "x" * (MAX_TEXT + 1)
Outcome = tuple  # ("events", [...]) | ("refused", kind, message) | ("invalid", [(field, msg)])


def unique(ids) -> list[str]:
    out: list[str] = []
    for i in ids:
        if i not in out:
            out.append(i)
    return out


def refused(kind: ErrorKind, message: str) -> Outcome:
    return ("refused", kind, message)


class Model:
    """The thread as plain data, and the rules written out plainly."""

    def __init__(self) -> None:
        self.exists = False
        self.destroyed = False
        self.fields: dict[str, Any] = {}
        self.admins: list[str] = []
        self.members: list[str] = []
        self.messages: dict[str, list] = {}  # id -> snapshot row

    def snapshot(self) -> dict | None:
        if not self.exists:
            return None
        return {
            "schema": 2,
            **self.fields,
            "administratorIds": list(self.admins),
            "memberIds": list(self.members),
            "messages": list(self.messages.values()),
            "readMarkers": [],
        }

    # -- each returns (expected outcome, how the model changes if the command succeeds)
    def expect(self, c) -> tuple[Outcome, Callable[[], None]]:
        nothing = lambda: None  # noqa: E731
        if isinstance(c, CreateThread):
            if self.exists:
                return refused(ErrorKind.CONFLICT, "Already created"), nothing
            errors = []
            if len(c.title) > 255:
                errors.append(("title", "title is too long"))
            if c.remarks is not None and len(c.remarks) > 255:
                errors.append(("remarks", "remarks is too long"))
            if len(c.administrator_ids) == 0:
                errors.append(("administratorIds", "administrator-ids is empty"))
            if errors:
                return ("invalid", errors), nothing
            admins, members = unique(c.administrator_ids), unique(c.member_ids)
            if len(admins) > MAX_ADMINS or len(members) > MAX_MEMBERS:
                return refused(ErrorKind.CONFLICT, "too many administrators or members"), nothing

            def created() -> None:
                self.exists = True
                self.fields = {
                    "id": c.thread_id,
                    "creatorId": c.account_id,
                    "title": c.title,
                    "parentThreadId": c.parent_thread_id,
                    "remarks": c.remarks,
                    "createdAt": c.at,
                    "updatedAt": c.at,
                    "removedAt": None,
                }
                self.admins, self.members = admins, members

            return (
                "events",
                [
                    ThreadCreated(
                        c.thread_id,
                        c.account_id,
                        c.at,
                        c.title,
                        tuple(admins),
                        tuple(members),
                        c.parent_thread_id,
                        c.remarks,
                    )
                ],
            ), created

        if not self.exists:
            return refused(ErrorKind.NOT_FOUND, "thread is not found"), nothing
        if self.destroyed:
            return refused(ErrorKind.NOT_FOUND, "already removed the thread"), nothing
        actor = c.account_id

        def touched(change: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                change()
                self.fields["updatedAt"] = c.at

            return run

        if (
            isinstance(
                c,
                (
                    DestroyThread,
                    JoinAdministratorIds,
                    LeaveAdministratorIds,
                    JoinMemberIds,
                    LeaveMemberIds,
                ),
            )
            and actor not in self.admins
        ):
            return refused(ErrorKind.FORBIDDEN, "The senderId is not the administrator"), nothing
        if isinstance(c, DestroyThread):

            def destroyed() -> None:
                self.destroyed = True
                self.fields["removedAt"] = c.at

            return ("events", [ThreadDestroyed(c.thread_id, actor, c.at)]), touched(destroyed)
        if isinstance(c, JoinAdministratorIds):
            new = [i for i in unique(c.account_ids) if i not in self.admins]
            if len(self.admins) + len(new) > MAX_ADMINS:
                return refused(ErrorKind.CONFLICT, "The limit of administrators is over"), nothing
            if not new:
                return ("events", []), nothing
            return (
                "events",
                [AdministratorIdsJoined(c.thread_id, actor, c.at, tuple(new))],
            ), touched(lambda: self.admins.extend(new))
        if isinstance(c, LeaveAdministratorIds):
            gone = [i for i in unique(c.account_ids) if i in self.admins]
            if not gone:
                return ("events", []), nothing
            rest = [i for i in self.admins if i not in gone]
            if not rest:
                return refused(ErrorKind.CONFLICT, "Administrators can not be empty."), nothing
            return (
                "events",
                [AdministratorIdsLeft(c.thread_id, actor, c.at, tuple(gone))],
            ), touched(lambda: setattr(self, "admins", rest))
        if isinstance(c, JoinMemberIds):
            new = [i for i in unique(c.account_ids) if i not in self.members]
            if len(self.members) + len(new) > MAX_MEMBERS:
                return refused(ErrorKind.CONFLICT, "The limit of members is over"), nothing
            if not new:
                return ("events", []), nothing
            return ("events", [MemberIdsJoined(c.thread_id, actor, c.at, tuple(new))]), touched(
                lambda: self.members.extend(new)
            )
        if isinstance(c, LeaveMemberIds):
            gone = [i for i in unique(c.account_ids) if i in self.members]
            if not gone:
                return ("events", []), nothing
            rest = [i for i in self.members if i not in gone]
            return ("events", [MemberIdsLeft(c.thread_id, actor, c.at, tuple(gone))]), touched(
                lambda: setattr(self, "members", rest)
            )

        is_member = actor in self.admins or actor in self.members
        if isinstance(c, AddMessages):
            if not c.messages:
                return ("events", []), nothing
            if not is_member:
                return refused(ErrorKind.FORBIDDEN, "The senderId is not the member"), nothing
            if len(self.messages) + len(c.messages) > MAX_MESSAGES:
                return refused(ErrorKind.CONFLICT, "The limit of messages size is over"), nothing
            long_ones = [
                (f"messages[{i}].text", "too long text")
                for i, m in enumerate(c.messages)
                if len(m.text) > MAX_TEXT
            ]
            if long_ones:
                return ("invalid", long_ones), nothing

            def posted() -> None:
                for m in c.messages:
                    self.messages[m.id] = [
                        m.id,
                        actor,
                        m.text,
                        m.reply_message_id,
                        list(m.to_account_ids),
                        c.at,
                    ]

            return (
                "events",
                [
                    MessagesAdded(
                        c.thread_id,
                        actor,
                        c.at,
                        tuple(
                            AddedMessage(m.id, m.text, m.reply_message_id, tuple(m.to_account_ids))
                            for m in c.messages
                        ),
                    )
                ],
            ), touched(posted)
        if isinstance(c, RemoveMessages):
            if not is_member:
                return refused(ErrorKind.FORBIDDEN, "The removerId is not the member"), nothing
            found = [i for i in unique(c.message_ids) if i in self.messages]
            if any(self.messages[i][1] != actor for i in found):
                return refused(ErrorKind.FORBIDDEN, "The removerId is not the senderId"), nothing
            if not found:
                return ("events", []), nothing

            def removed() -> None:
                for i in found:
                    del self.messages[i]

            return ("events", [MessagesRemoved(c.thread_id, actor, c.at, tuple(found))]), touched(
                removed
            )
        raise AssertionError(f"unexpected command {c!r}")

    def expect_query(self, query: str, actor: str) -> Outcome:
        if self.destroyed:
            return refused(ErrorKind.NOT_FOUND, "already removed the thread")
        if actor not in self.admins and actor not in self.members:
            return refused(ErrorKind.FORBIDDEN, "The senderId is not the member")
        if query == "get_administrator_ids":
            return ("result", list(self.admins))
        if query == "get_member_ids":
            return ("result", list(self.members))
        return (
            "result",
            [Message(r[0], r[1], r[2], r[3], tuple(r[4]), r[5]) for r in self.messages.values()],
        )


accounts = st.sampled_from(ACCOUNTS)
id_lists = st.lists(accounts, max_size=4)
# An actor is an account, or an index into the current administrators (even) or members (odd),
# so that most commands come from someone allowed to send them.
actors = st.one_of(st.integers(0, 7), accounts)


class ThreadMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.thread: Thread | None = None
        self.snapshot: dict | None = None  # the thread's snapshot after the last step
        self.clock = 1_000
        self.seq = 0
        assert limits.MESSAGES_LIMIT == REAL_MESSAGES_LIMIT
        limits.MESSAGES_LIMIT = MESSAGES_LIMIT_IN_MACHINE  # restored in teardown

    def teardown(self) -> None:
        limits.MESSAGES_LIMIT = REAL_MESSAGES_LIMIT

    def who(self, actor: int | str) -> str:
        if isinstance(actor, str):
            return actor
        people = self.model.members if actor % 2 else self.model.admins
        return people[actor // 2 % len(people)] if people else ACCOUNTS[actor % len(ACCOUNTS)]

    def tick(self) -> int:
        self.clock += 7
        return self.clock

    def send(self, command) -> None:
        expected, change = self.model.expect(command)
        try:
            actual: Outcome = ("events", decide(self.thread, command))
        except DomainError as e:
            actual = refused(e.kind, e.message)
        except ValidationError as e:
            actual = ("invalid", [(f.field, f.message) for f in e.errors])
        # self.snapshot is the state before decide (checked against the model last step).
        after_decide = None if self.thread is None else self.thread.to_snapshot()
        assert after_decide == self.snapshot, "decide mutated the state"
        assert actual == expected, command
        if actual[0] == "events" and actual[1]:
            for event in actual[1]:
                self.thread = evolve(self.thread, event)
            change()
            self.snapshot = self.thread.to_snapshot()
            assert self.snapshot == self.model.snapshot()

    # ---- rules
    @initialize(
        creator=accounts,
        admins=st.lists(accounts, min_size=1, max_size=3),
        members=id_lists,
        create=st.sampled_from([True] * 9 + [False]),
    )
    def start(self, creator, admins, members, create) -> None:
        if create:
            self.send(
                CreateThread(
                    TID, creator, "title", tuple(admins), tuple(members), None, None, self.tick()
                )
            )

    @rule(
        actor=actors,
        admins=id_lists,
        members=id_lists,
        title=st.sampled_from(["", "t", "t" * 255, "t" * 256]),
        remarks=st.sampled_from([None, "", "r" * 255, "r" * 256]),
        parent=st.sampled_from([None, "01HZX3J5K6M7N8P9Q0R1S2T3V9"]),
    )
    def create(self, actor, admins, members, title, remarks, parent) -> None:
        actor = self.who(actor)
        self.send(
            CreateThread(
                TID, actor, title, tuple(admins), tuple(members), parent, remarks, self.tick()
            )
        )

    @rule(actor=actors, really=st.integers(0, 3))
    def destroy(self, actor, really) -> None:
        actor = self.who(actor)
        if really == 0:  # destroying ends the interesting part of a run, so do it less often
            self.send(DestroyThread(TID, actor, self.tick()))

    @rule(actor=actors, ids=id_lists)
    def join_administrators(self, actor, ids) -> None:
        actor = self.who(actor)
        self.send(JoinAdministratorIds(TID, actor, tuple(ids), self.tick()))

    @rule(actor=actors, ids=id_lists)
    def leave_administrators(self, actor, ids) -> None:
        actor = self.who(actor)
        self.send(LeaveAdministratorIds(TID, actor, tuple(ids), self.tick()))

    @rule(actor=actors, ids=id_lists)
    def join_members(self, actor, ids) -> None:
        actor = self.who(actor)
        self.send(JoinMemberIds(TID, actor, tuple(ids), self.tick()))

    @rule(actor=actors, ids=id_lists)
    def leave_members(self, actor, ids) -> None:
        actor = self.who(actor)
        self.send(LeaveMemberIds(TID, actor, tuple(ids), self.tick()))

    # "fill" posts exactly as many messages as fit (reaching the limit), "over" one more.
    @rule(
        actor=actors,
        count=st.sampled_from([1, 2, 3, 0, "fill", "over"]),
        long_text=st.sampled_from([None, None, None, 0]),
        reply=st.booleans(),
        to=id_lists,
    )
    def add_messages(self, actor, count, long_text, reply, to) -> None:
        actor = self.who(actor)
        room = MAX_MESSAGES - len(self.model.messages)
        n = {"fill": room, "over": room + 1}.get(count, count)
        reply_to = next(reversed(self.model.messages), None) if reply else None
        messages = []
        for i in range(n):
            self.seq += 1
            text = TOO_LONG if long_text == i else TEXTS[i % len(TEXTS)]
            messages.append(NewMessage(f"msg-{self.seq}", text, reply_to, tuple(to)))
        self.send(AddMessages(TID, actor, tuple(messages), self.tick()))

    @rule(
        actor=actors,
        picks=st.lists(st.integers(0, 10_000), min_size=1, max_size=3),
        own=st.booleans(),
        stray=st.booleans(),
    )
    def remove_messages(self, actor, picks, own, stray) -> None:
        actor = self.who(actor)
        pool = (
            [i for i, r in self.model.messages.items() if r[1] == actor]
            if own
            else list(self.model.messages)
        )
        ids = [pool[p % len(pool)] for p in picks] if pool else []
        if stray:  # an id never issued, or the first message (maybe removed, maybe others')
            ids.append(f"msg-{self.seq + 1000}" if self.seq % 2 else "msg-1")
        self.send(RemoveMessages(TID, actor, tuple(ids), self.tick()))

    @rule(
        actor=actors,
        query=st.sampled_from(["get_administrator_ids", "get_member_ids", "get_messages"]),
    )
    def query(self, actor, query) -> None:
        actor = self.who(actor)
        if self.thread is None:
            return
        try:
            actual: Outcome = ("result", getattr(self.thread, query)(actor))
        except DomainError as e:
            actual = refused(e.kind, e.message)
        assert actual == self.model.expect_query(query, actor)
        assert self.thread.to_snapshot() == self.snapshot

    # ---- invariants
    @invariant()
    def exists_like_the_model(self) -> None:
        assert (self.thread is None) == (not self.model.exists)

    @invariant()
    def an_administrator_while_live(self) -> None:
        if self.thread is not None and not self.thread.is_removed:
            assert len(self.thread.administrator_ids) >= 1

    @invariant()
    def no_duplicate_ids(self) -> None:
        if self.snapshot is not None:
            for key in ("administratorIds", "memberIds"):
                assert len(set(self.snapshot[key])) == len(self.snapshot[key])
            ids = [m[0] for m in self.snapshot["messages"]]
            assert len(set(ids)) == len(ids)

    @invariant()
    def messages_within_limit(self) -> None:
        if self.thread is not None:
            assert len(self.thread.messages) <= limits.MESSAGES_LIMIT <= REAL_MESSAGES_LIMIT

    @invariant()
    def destroyed_refuses_everything(self) -> None:
        thread = self.thread
        if thread is None or not thread.is_removed:
            return
        at = self.clock + 1
        for actor in (ACCOUNTS[0], next(iter(thread.administrator_ids))):
            commands = [
                DestroyThread(TID, actor, at),
                JoinAdministratorIds(TID, actor, ("u9",), at),
                LeaveAdministratorIds(TID, actor, tuple(thread.administrator_ids), at),
                JoinMemberIds(TID, actor, ("u9",), at),
                LeaveMemberIds(TID, actor, tuple(thread.member_ids), at),
                AddMessages(TID, actor, (NewMessage("late", "hi"),), at),
                AddMessages(TID, actor, (), at),
                RemoveMessages(TID, actor, tuple(thread.messages)[:3], at),
                RemoveMessages(TID, actor, (), at),
            ]
            for command in commands:
                try:
                    decide(thread, command)
                except DomainError as e:
                    assert (e.kind, e.message) == (
                        ErrorKind.NOT_FOUND,
                        "already removed the thread",
                    ), command
                else:
                    raise AssertionError(f"destroyed thread accepted {command!r}")
            for query in ("get_administrator_ids", "get_member_ids", "get_messages"):
                try:
                    getattr(thread, query)(actor)
                except DomainError as e:
                    assert (e.kind, e.message) == (
                        ErrorKind.NOT_FOUND,
                        "already removed the thread",
                    )
                else:
                    raise AssertionError(f"destroyed thread answered {query}")
        try:
            decide(thread, CreateThread(TID, ACCOUNTS[0], "t", ("u0",), (), None, None, at))
        except DomainError as e:
            assert (e.kind, e.message) == (ErrorKind.CONFLICT, "Already created")
        else:
            raise AssertionError("destroyed thread was created again")


ThreadMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestThreadStateMachine = ThreadMachine.TestCase
