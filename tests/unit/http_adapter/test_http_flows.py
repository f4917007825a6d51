"""The six flows of upstream's ThreadControllerImplSpec, against /v1, end to end through the
real domain (the read side derives from the same states, so "eventually" is immediate here;
the helper still polls, as a conformance suite against a live server must)."""

from __future__ import annotations

import asyncio


async def eventually(check, attempts: int = 50, delay: float = 0.01):
    for _ in range(attempts - 1):
        try:
            return await check()
        except AssertionError:
            await asyncio.sleep(delay)
    return await check()


def create_body(api, admin, members=()):
    return {
        "accountId": admin,
        "parentThreadId": None,
        "title": "test",
        "remarks": None,
        "administratorIds": [admin],
        "memberIds": list(members),
        "createAt": api.at(),
    }


async def test_create(api, fakes):
    admin = fakes.ulid()
    resp = await api.client.post("/v1/threads/create", json=create_body(api, admin))
    assert resp.status == 200
    data = await resp.json()
    assert data["error_messages"] == [] and data["thread_id"]

    async def get():
        got = await api.get(f"/v1/threads/{data['thread_id']}", account_id=admin)
        assert got["error_messages"] == [] and got["result"]["id"] == data["thread_id"]

    await eventually(get)


async def test_destroy(api, fakes):
    admin = fakes.ulid()
    thread_id = await api.create(admin)
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/destroy", json={"accountId": admin, "createAt": api.at()}
    )
    assert resp.status == 200
    assert (await resp.json()) == {"threadId": thread_id, "error_messages": []}


async def test_join_administrator_ids(api, fakes):
    admin, other = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(
        f"/v1/threads/{thread_id}/administrator-ids/join",
        {"accountId": admin, "accountIds": [other], "createAt": api.at()},
    )
    assert data["error_messages"] == []

    async def get():
        got = await api.get(f"/v1/threads/{thread_id}/administrator-ids", account_id=admin)
        assert got["error_messages"] == [] and got["results"] == [admin, other]

    await eventually(get)


async def test_join_member_ids(api, fakes):
    admin, member = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin)
    data = await api.post(
        f"/v1/threads/{thread_id}/member-ids/join",
        {"accountId": admin, "accountIds": [member], "createAt": api.at()},
    )
    assert data["error_messages"] == []

    async def get():
        got = await api.get(f"/v1/threads/{thread_id}/member-ids", account_id=admin)
        assert got["error_messages"] == [] and got["results"] == [member]

    await eventually(get)


async def test_add_messages(api, fakes):
    admin, member = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin, [member])
    data = await api.post(
        f"/v1/threads/{thread_id}/messages/add",
        {
            "accountId": member,
            "createAt": api.at(),
            "messages": [{"replyMessageId": None, "toAccountIds": [], "text": "ABC"}],
        },
    )
    assert data["error_messages"] == [] and len(data["messageIds"]) == 1

    async def get():
        got = await api.get(f"/v1/threads/{thread_id}/messages", account_id=admin)
        assert got["error_messages"] == []
        assert [(m["id"], m["body"], m["senderId"]) for m in got["result"]] == [
            (data["messageIds"][0], "ABC", member)
        ]

    await eventually(get)


async def test_remove_messages(api, fakes):
    admin, member = fakes.ulid(), fakes.ulid()
    thread_id = await api.create(admin, [member])
    ids = await api.add(thread_id, member, "ABC")
    resp = await api.client.post(
        f"/v1/threads/{thread_id}/messages/remove",
        json={"accountId": member, "messageIds": ids, "createAt": api.at()},
    )
    assert resp.status == 200
    assert (await resp.json()) == {"messageIds": ids, "error_messages": []}
    got = await api.get(f"/v1/threads/{thread_id}/messages", account_id=admin)
    assert got["result"] == []  # removed messages are not returned
