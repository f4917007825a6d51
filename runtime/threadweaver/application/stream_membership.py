"""Which accounts an event brings into a thread or may take out of it: what a live stream needs
to follow an account's threads (application/stream_accounts.py) and to stop a stream whose
account may no longer read the thread (application/streams.py). Pure.

Only the membership events matter; any other event type (messages, edits, read markers, types
added later) changes nobody's membership, so new event types need no change here.
"""

from __future__ import annotations

from ..domain.events import (
    AdministratorIdsJoined,
    AdministratorIdsLeft,
    Event,
    MemberIdsJoined,
    MemberIdsLeft,
    ThreadCreated,
    ThreadDestroyed,
)

#: the stored type names of the events `joined` can name accounts in
JOIN_EVENT_TYPES = frozenset(
    {ThreadCreated.TYPE, AdministratorIdsJoined.TYPE, MemberIdsJoined.TYPE}
)


def joined(event: Event) -> frozenset[str]:
    """The accounts the event makes administrators or members."""
    if isinstance(event, ThreadCreated):
        return frozenset(event.administrator_ids) | frozenset(event.member_ids)
    if isinstance(event, AdministratorIdsJoined):
        return frozenset(event.administrator_ids)
    if isinstance(event, MemberIdsJoined):
        return frozenset(event.member_ids)
    return frozenset()


def may_remove(event: Event, account_id: str) -> bool:
    """True when, after `event`, `account_id` may have lost the right to read the thread: the
    thread is destroyed, or the account left one of its roles (it may hold the other one, so
    the caller checks the read model)."""
    if isinstance(event, ThreadDestroyed):
        return True
    if isinstance(event, AdministratorIdsLeft):
        return account_id in event.administrator_ids
    if isinstance(event, MemberIdsLeft):
        return account_id in event.member_ids
    return False


#: `removed_by`'s answer for an event that may remove every account (the thread is destroyed)
EVERYONE: frozenset[str] = frozenset({"*"})


def removed_by(event: Event) -> frozenset[str] | None:
    """The accounts `event` may remove (`may_remove` for all accounts at once, computed once
    per event instead of once per subscriber): None for nobody, `EVERYONE` for a destroy."""
    if isinstance(event, ThreadDestroyed):
        return EVERYONE
    if isinstance(event, AdministratorIdsLeft):
        return frozenset(event.administrator_ids)
    if isinstance(event, MemberIdsLeft):
        return frozenset(event.member_ids)
    return None


def removes(accounts: frozenset[str] | None, account_id: str) -> bool:
    """Whether `removed_by`'s answer `accounts` may remove `account_id`."""
    return accounts is not None and (accounts is EVERYONE or account_id in accounts)


def join_seq(events: list[tuple[int, Event]], account_id: str) -> int | None:
    """The seq of the event from which `account_id` has belonged to the thread without a break
    (the last join after which no event removed it), or None when it does not belong at the
    end. Roles are tracked exactly: an account that leaves one role and keeps the other stays."""
    admin = member = False
    since: int | None = None
    for seq, event in events:
        if isinstance(event, ThreadCreated):
            admin = account_id in event.administrator_ids
            member = account_id in event.member_ids
        elif isinstance(event, AdministratorIdsJoined) and account_id in event.administrator_ids:
            admin = True
        elif isinstance(event, MemberIdsJoined) and account_id in event.member_ids:
            member = True
        elif isinstance(event, AdministratorIdsLeft) and account_id in event.administrator_ids:
            admin = False
        elif isinstance(event, MemberIdsLeft) and account_id in event.member_ids:
            member = False
        elif isinstance(event, ThreadDestroyed):
            admin = member = False
        belongs = admin or member
        if belongs and since is None:
            since = seq
        elif not belongs:
            since = None
    return since
