"""Command routes: happy paths with upstream's exact field names, through the real domain."""

from __future__ import annotations

from threadweaver.adapters.http import HttpSettings
from threadweaver.domain.commands import (
    AddMessages,
    CreateThread,
    LeaveAdministratorIds,
    LeaveMemberIds,
)


async def test_create_thread_answers_thread_id(api, fakes, gateway):
    admin, member, parent = fakes.ulid(), fakes.ulid(), fakes.ulid()
    data = await api.post(
        "/v1/threads/create",
        {
            "accountId": admin,
            "parentThreadId": parent,
            "title": "hello",
            "remarks": "r",
            "administratorIds": [admin],
            "memberIds": [member],
            "createAt": 1234,
            "unknownField": {"ignored": True},
        },
    )
    assert set(data) == {"thread_id", "error_messages"}
    assert data["error_messages"] == []
    thread_id = data["thread_id"]
    (command,) = gateway.commands
    assert command == CreateThread(
        thread_id=thread_id,
        account_id=admin,
        title="hello",
        administrator_ids=(admin,),
        member_ids=(member,),
        parent_thread_id=parent,
        remarks="r",
        at=1234,
    )
    state = gateway.states[thread_id]
    assert state.parent_thread_id == parent  # kept (upstream dropped it)
    assert state.created_at == 1234


async def test_create_with_optional_fields_omitted(api, fakes, gateway):
    admin = fakes.ulid()
    data = await api.post(
        "/v1/threads/create",
        {
            "accountId": admin,
            "title": "",
            "administratorIds": [admin],
            "memberIds": [],
            "createAt": 0,
        },
    )
    state = gateway.states[data["thread_id"]]
    assert state.parent_thread_id is None and state.remarks is None and state.title == ""


async def test_ids_are_canonicalised_to_upper_case(api, fakes, gateway):
    admin = fakes.ulid()
    data = await api.post(
        "/v1/threads/create",
        {
            "accountId": admin.lower(),
            "title": "t",
            "administratorIds": [admin.lower()],
            "memberIds": [],
            "createAt": 1,
        },
    )
    thread_id = data["thread_id"]
    assert list(gateway.states[thread_id].administrator_ids) == [admin]
    data = await api.post(
        f"/v1/threads/{thread_id.lower()}/destroy", {"accountId": admin.lower(), "createAt": 2}
    )
    assert data == {"threadId": thread_id, "error_messages": []}


async def test_create_uses_the_id_generator(make_client, fakes, gateway, queries, registry):
    client = await make_client(
        settings=HttpSettings(id_generator=lambda: "01" + "A" * 24, metrics_registry=registry)
    )
    api = fakes.Api(client, gateway, queries)
    admin = fakes.ulid()
    assert await api.create(admin) == "01" + "A" * 24


async def test_destroy(api, fakes, gateway):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(f"/v1/threads/{thread_id}/destroy", {"accountId": admin, "createAt": 9})
    assert data == {"threadId": thread_id, "error_messages": []}
    assert gateway.states[thread_id].removed_at == 9


async def test_join_and_leave_administrator_ids(api, fakes, gateway):
    admin, a2, a3 = fakes.ulid(), fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(
        f"/v1/threads/{thread_id}/administrator-ids/join",
        {"accountId": admin, "accountIds": [a2, a3], "createAt": 5},
    )
    assert data == {"threadId": thread_id, "error_messages": []}
    assert list(gateway.states[thread_id].administrator_ids) == [admin, a2, a3]
    data = await api.post(
        f"/v1/threads/{thread_id}/administrator-ids/leave",
        {"accountId": admin, "accountIds": [a2], "createAt": 6},
    )
    assert data == {"threadId": thread_id, "error_messages": []}
    assert list(gateway.states[thread_id].administrator_ids) == [admin, a3]


async def test_leave_administrator_ids_accepts_upstream_alias(api, fakes, gateway):
    admin, a2 = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin)
    await api.post(
        f"/v1/threads/{thread_id}/administrator-ids/join",
        {"accountId": admin, "accountIds": [a2], "createAt": 5},
    )
    data = await api.post(
        f"/v1/threads/{thread_id}/administrator-ids/leave",
        {"accountId": admin, "administratorIds": [a2], "createAt": 6},
    )
    assert data == {"threadId": thread_id, "error_messages": []}
    assert gateway.commands[-1] == LeaveAdministratorIds(thread_id, admin, (a2,), 6)
    assert list(gateway.states[thread_id].administrator_ids) == [admin]


async def test_join_and_leave_member_ids(api, fakes, gateway):
    admin, m1, m2 = fakes.ulid(), fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(
        f"/v1/threads/{thread_id}/member-ids/join",
        {"accountId": admin, "accountIds": [m1, m2], "createAt": 5},
    )
    assert data == {"threadId": thread_id, "error_messages": []}
    assert list(gateway.states[thread_id].member_ids) == [m1, m2]
    data = await api.post(
        f"/v1/threads/{thread_id}/member-ids/leave",
        {"accountId": admin, "accountIds": [m1], "createAt": 6},
    )
    assert data == {"threadId": thread_id, "error_messages": []}
    assert gateway.commands[-1] == LeaveMemberIds(thread_id, admin, (m1,), 6)
    assert list(gateway.states[thread_id].member_ids) == [m2]  # removed, not added (upstream bug)


async def test_join_member_ids_may_be_empty(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(
        f"/v1/threads/{thread_id}/member-ids/join",
        {"accountId": admin, "accountIds": [], "createAt": 5},
    )
    assert data == {"threadId": thread_id, "error_messages": []}


async def test_add_messages_generates_one_id_per_message(
    make_client, fakes, gateway, queries, registry
):
    ids = fakes.counter_ids()
    client = await make_client(settings=HttpSettings(id_generator=ids, metrics_registry=registry))
    api = fakes.Api(client, gateway, queries)
    admin, member, other = fakes.ulid(), fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin, [member])
    data = await api.post(
        f"/v1/threads/{thread_id}/messages/add",
        {
            "accountId": member,
            "createAt": 77,
            "messages": [
                {"replyMessageId": None, "toAccountIds": [], "text": "ABC"},
                {"replyMessageId": thread_id, "toAccountIds": [other], "text": "DEF"},
                {"toAccountIds": [], "text": ""},
            ],
        },
    )
    assert set(data) == {"messageIds", "error_messages"} and data["error_messages"] == []
    assert len(data["messageIds"]) == 3 and len(set(data["messageIds"])) == 3
    command = gateway.commands[-1]
    assert isinstance(command, AddMessages)
    assert [m.id for m in command.messages] == data["messageIds"]
    assert [(m.text, m.reply_message_id, m.to_account_ids) for m in command.messages] == [
        ("ABC", None, ()),
        ("DEF", thread_id, (other,)),
        ("", None, ()),
    ]
    stored = gateway.states[thread_id].messages
    assert list(stored) == data["messageIds"]
    assert all(m.sender_id == member and m.created_at == 77 for m in stored.values())


async def test_add_no_messages(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(
        f"/v1/threads/{thread_id}/messages/add", {"accountId": admin, "messages": [], "createAt": 1}
    )
    assert data == {"messageIds": [], "error_messages": []}


async def test_remove_messages_answers_ids_actually_removed(api, fakes, gateway):
    admin, member = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin, [member])
    ids = await api.add(thread_id, member, "a", "b")
    unknown = fakes.ulid()
    data = await api.post(
        f"/v1/threads/{thread_id}/messages/remove",
        {"accountId": member, "messageIds": [ids[0], unknown], "createAt": 9},
    )
    assert data == {"messageIds": [ids[0]], "error_messages": []}
    assert list(gateway.states[thread_id].messages) == [ids[1]]
    data = await api.post(
        f"/v1/threads/{thread_id}/messages/remove",
        {"accountId": member, "messageIds": [unknown], "createAt": 10},
    )
    assert data == {"messageIds": [], "error_messages": []}
